"""The group commit under the SQLite store: one transaction per loop turn, failures kept apart.

What a caller of the store relies on: its write is committed when it returns, a write that
fails raises for its own caller and leaves nothing behind, and the writes made beside it in the
same loop turn commit all the same, with their mirror changes applied in commit order.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellwerk.sqlite_file import connect
from stellwerk.state import group
from stellwerk.state.group import GroupCommit


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[GroupCommit, sqlite3.Connection, list[str]]]:
    path = tmp_path / "state.db"
    inline, waiting = connect(path, busy_timeout_ms=0), connect(path)
    inline.execute("CREATE TABLE t (v INTEGER PRIMARY KEY)")
    statements: list[str] = []
    inline.set_trace_callback(statements.append)
    yield GroupCommit(inline, waiting, threading.Lock()), inline, statements
    inline.close()
    waiting.close()


def _insert(conn: sqlite3.Connection, value: int) -> int:
    conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
    return value


def _insert_then_fail(conn: sqlite3.Connection, value: int) -> int:
    conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
    raise ValueError(f"write {value} failed")


def _values(conn: sqlite3.Connection) -> list[int]:
    return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY v")]


async def test_the_writes_of_one_loop_turn_commit_in_one_transaction(db) -> None:
    commits, conn, statements = db
    applied: list[int] = []
    results = await asyncio.gather(
        *(commits.write(_insert, v, then=applied.append) for v in (1, 2, 3))
    )
    assert results == [1, 2, 3]
    assert applied == [1, 2, 3]  # the mirror changes, in commit order
    assert _values(conn) == [1, 2, 3]
    assert statements.count("COMMIT") == 1
    assert not any(s.startswith("SAVEPOINT") for s in statements)  # none needed: none failed


async def test_a_failing_write_raises_for_its_caller_alone_and_leaves_nothing(db) -> None:
    commits, conn, statements = db
    applied: list[int] = []
    results = await asyncio.gather(
        commits.write(_insert, 1, then=applied.append),
        commits.write(_insert_then_fail, 2, then=applied.append),
        commits.write(_insert, 3, then=applied.append),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], ValueError) and str(results[1]) == "write 2 failed"
    assert _values(conn) == [1, 3]  # the failed write's row is gone, the others' stand
    assert applied == [1, 3]  # and each of theirs reached the mirror once
    assert statements.count("COMMIT") == 1


async def test_a_lone_failing_write_is_rolled_back(db) -> None:
    commits, conn, _ = db
    with pytest.raises(ValueError, match="write 5 failed"):
        await commits.write(_insert_then_fail, 5)
    assert _values(conn) == []
    assert await commits.write(_insert, 6) == 6  # the connection is usable again
    assert _values(conn) == [6]


async def test_the_wal_is_checkpointed_off_the_event_loop(tmp_path: Path) -> None:
    """SQLite checkpoints inside the commit that lets the log pass 1,000 pages, a commit of
    milliseconds on the loop; the group commit's inline connection makes none, and a passive
    checkpoint runs in a worker thread every CHECKPOINT_EVERY commits instead."""
    path = tmp_path / "state.db"
    inline, waiting, checkpointer = connect(path, 0), connect(path), connect(path)
    inline.execute("CREATE TABLE t (v INTEGER PRIMARY KEY)")
    checkpoints: list[int] = []
    checkpointer.set_trace_callback(lambda sql: checkpoints.append(threading.get_ident()))
    commits = GroupCommit(inline, waiting, threading.Lock(), checkpointer)
    try:
        assert inline.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for first in (0, group.CHECKPOINT_EVERY):
            for value in range(first, first + group.CHECKPOINT_EVERY):
                await commits.write(_insert, value)
            await commits.drain()  # the checkpoint done (the next writes are all inline)
        assert len(checkpoints) == 4  # two checkpoints of two passes each
        assert threading.get_ident() not in checkpoints  # never on the loop's thread
        assert len(_values(inline)) == group.CHECKPOINT_EVERY * 2
    finally:
        for conn in (inline, waiting, checkpointer):
            conn.close()


async def test_the_wal_starts_over_while_writes_keep_coming(tmp_path: Path) -> None:
    """A checkpoint beside this process's own commits never found the log whole in the database,
    so the log never started over and grew by megabytes a second under load; a second pass
    copies what came meanwhile holding the write lock."""
    path = tmp_path / "state.db"
    inline, waiting, checkpointer = connect(path, 0), connect(path), connect(path)
    inline.execute("CREATE TABLE t (v INTEGER PRIMARY KEY, pad TEXT)")
    commits = GroupCommit(inline, waiting, threading.Lock(), checkpointer)

    def insert(conn: sqlite3.Connection, value: int) -> None:
        conn.execute("INSERT INTO t VALUES (?, ?)", (value, "x" * 3000))  # a page per row

    try:
        for batch in range(60):  # 12,000 rows of a page each: ~50 MB written through the log
            writes = (commits.write(insert, batch * 200 + i) for i in range(200))
            await asyncio.gather(*writes)
            if batch % 3 == 0:  # commits one at a time too, the checkpoints running beside them
                for i in range(group.CHECKPOINT_EVERY):
                    await commits.write(insert, 10_000_000 + batch * 1000 + i)
        await commits.drain()
        wal = path.with_name("state.db-wal").stat().st_size
        assert wal < 16 * 2**20, f"the log grew to {wal / 2**20:.0f} MiB"
    finally:
        for conn in (inline, waiting, checkpointer):
            conn.close()
