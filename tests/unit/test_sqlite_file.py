"""Several processes open a new state or ledger file at once (gateway workers starting): every
one of them gets a WAL connection and the schema, none fails with "database is locked"."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Event
from pathlib import Path

from stellwerk.sqlite_file import connect, migrate

STEPS = (("CREATE TABLE t (x INTEGER)",), ("CREATE INDEX t_x ON t (x)",))


def _open(path: str, go: Event, results: multiprocessing.Queue[str]) -> None:
    go.wait()
    try:
        conn = connect(Path(path))
        migrate(conn, STEPS, "state.path", Path(path))
        results.put(str(conn.execute("PRAGMA journal_mode").fetchone()[0]))
        conn.close()
    except Exception as exc:  # reported, not raised: the parent asserts on what each got
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_that_create_one_file_together_all_open_it(tmp_path):
    context = multiprocessing.get_context("fork")
    for round_ in range(10):
        path = str(tmp_path / f"state-{round_}.db")
        go, results = context.Event(), context.Queue()
        workers = [context.Process(target=_open, args=(path, go, results)) for _ in range(8)]
        for worker in workers:
            worker.start()
        go.set()
        got = [results.get(timeout=30) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
        assert got == ["wal"] * 8
