"""What the state database and the ledger file share: how a connection is opened, one write
transaction, and the schema steps counted in `PRAGMA user_version`.

Both are SQLite files that several processes open at once (workers, `stellwerk stats`,
`stellwerk log --follow`): WAL lets readers run beside a writer, and `busy_timeout` makes a
writer wait for another process's lock instead of failing at once.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000


def connect(path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, usable from threads."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    _wal(conn, time.monotonic() + busy_timeout_ms / 1000)
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _wal(conn: sqlite3.Connection, deadline: float) -> None:
    """Switch the file to WAL. Switching takes an exclusive lock and SQLite answers "database is
    locked" at once, without its busy handler, while another process does the same: two gateway
    workers that create a new file together. So it is tried again until `deadline`."""
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """`fn(conn, *args)` in one write transaction, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def migrate(conn: sqlite3.Connection, steps: Sequence[Sequence[str]], key: str, path: Path) -> None:
    """Apply the schema steps the file lacks, in one transaction; a file that has more steps
    than this version knows was written by a newer Stellwerk and is refused (`key` names the
    config setting that points at it), never misread."""

    def apply(conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(steps):
            raise ConfigError(key, f"{path} was written by a newer Stellwerk")
        for statements in steps[version:]:
            for sql in statements:
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {len(steps)}")

    transaction(conn, apply)
