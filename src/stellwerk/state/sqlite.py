"""Routing state in one SQLite file: the embedded default, shared by processes on one machine.

Cooldowns must survive a restart (a billing lockout lasts hours) and be seen by every gateway,
CLI and library process on the machine (`stellwerk reset` in a shell must reach a running
gateway). SQLite in WAL mode gives both with the standard library alone.

Costs, measured on a 2-core machine:
- `snapshot()` runs on every request, so it never touches the tables when nothing changed: an
  in-memory mirror of all rows is kept and re-read only when `PRAGMA data_version` moves, which
  happens when any other connection (this store's own writer included) commits. The check costs a
  few microseconds and runs synchronously on a separate reader connection; in WAL mode a reader
  never waits for a writer. Median `snapshot()`: ~6 µs (no rows) to ~18 µs (50 rows) when nothing
  changed, ~60-300 µs for the re-read after a commit.
- Writes (a strike, a reset, a mode switch) happen on failures and admin actions only. They run in
  a worker thread (`asyncio.to_thread`, ~0.13 ms instead of ~0.07 ms) so that waiting for another
  process's write lock (`busy_timeout`) never stalls the event loop. `strike` is one
  `BEGIN IMMEDIATE` transaction, so concurrent strikes on one key from several processes all count.
- `recover(key)` runs after every successful attempt; it writes only when the mirror holds a row
  for the key, so the healthy path stays read-only.

`until` is stored as a REAL; FOREVER is IEEE infinity, which SQLite stores and returns unchanged.
Rows are kept STRIKE_MEMORY seconds past their expiry so repeated failures keep counting strikes;
older rows are deleted by the next strike. The schema is versioned with `PRAGMA user_version`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError
from ..failures import FailureClass
from .base import Cooldown, Snapshot
from .cooldown import STRIKE_MEMORY, next_cooldown

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE cooldowns (
            key TEXT PRIMARY KEY, until REAL NOT NULL, reason TEXT NOT NULL,
            strikes INTEGER NOT NULL, since REAL NOT NULL, detail TEXT NOT NULL DEFAULT '')""",
        """CREATE TABLE kv (
            name TEXT PRIMARY KEY, value TEXT NOT NULL, changed_at REAL NOT NULL,
            reason TEXT NOT NULL DEFAULT '')""",
    ),
)
"""Schema steps in order; `PRAGMA user_version` counts how many a database has applied."""

_COLUMNS = "key, until, reason, strikes, since, detail"
_EMERGENCY = "emergency"


class SQLiteStore:
    """A `StateStore` in one SQLite file, safe for several processes on one machine."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(self.path)
        self._write_lock = threading.Lock()
        _migrate(self._writer, self.path)
        self._reader = _connect(self.path)
        self._read_lock = threading.Lock()
        self._version: int | None = None
        self._rows: dict[str, Cooldown] = {}
        self._emergency = False

    async def snapshot(self, now: float) -> Snapshot:
        """Active cooldowns and the mode at `now`, from the mirror (re-read only after commits)."""
        rows, emergency = self._mirror()
        active = {k: c for k, c in rows.items() if c.active(now)}
        return Snapshot(now=now, cooldowns=active, emergency=emergency)

    async def strike(
        self,
        key: str,
        reason: FailureClass,
        now: float,
        duration: Callable[[int], float],
        detail: str = "",
    ) -> Cooldown:
        """Record one failure on `key` atomically across processes; return its cooldown."""
        return await self._write(_strike, key, reason, now, duration, detail)

    async def recover(self, key: str) -> None:
        """A success on `key`: forget its strikes and any cooldown (no write if there is none)."""
        rows, _ = self._mirror()
        if key in rows:
            await self._write(_execute, "DELETE FROM cooldowns WHERE key = ?", (key,))

    async def reset(self, prefix: str = "") -> int:
        """Clear every cooldown whose key starts with `prefix` (all when empty); return how many."""
        sql = "DELETE FROM cooldowns WHERE substr(key, 1, ?) = ?"
        return await self._write(_execute, sql, (len(prefix), prefix))

    async def set_emergency(self, on: bool, now: float, reason: str = "") -> bool:
        """Switch emergency mode for every process using this file; True if it changed."""
        return await self._write(_set_emergency, on, now, reason)

    async def close(self) -> None:
        """Close both connections; the store is unusable afterwards."""
        with self._write_lock:
            self._writer.close()
        with self._read_lock:
            self._reader.close()

    def _mirror(self) -> tuple[dict[str, Cooldown], bool]:
        with self._read_lock:
            version = self._reader.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                self._rows, self._emergency = _load(self._reader)
                self._version = version
            return self._rows, self._emergency

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self._write_lock:
                return _transaction(self._writer, fn, *args)

        return await asyncio.to_thread(locked)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    def apply(conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            raise ConfigError("state.path", f"{path} was written by a newer Stellwerk")
        for statements in _MIGRATIONS[version:]:
            for sql in statements:
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {len(_MIGRATIONS)}")

    _transaction(conn, apply)


def _load(conn: sqlite3.Connection) -> tuple[dict[str, Cooldown], bool]:
    conn.execute("BEGIN")
    try:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM cooldowns").fetchall()
        flag = conn.execute("SELECT value FROM kv WHERE name = ?", (_EMERGENCY,)).fetchone()
    finally:
        conn.execute("COMMIT")
    parsed = (_cooldown(row) for row in rows)
    return {c.key: c for c in parsed if c is not None}, bool(flag and flag[0] == "1")


def _cooldown(row: Sequence[Any]) -> Cooldown | None:
    key, until, reason, strikes, since, detail = row
    try:
        failure = FailureClass(reason)
    except ValueError:  # written by a newer version: ignore rather than crash
        return None
    return Cooldown(key, float(until), failure, int(strikes), float(since), detail)


def _strike(
    conn: sqlite3.Connection,
    key: str,
    reason: FailureClass,
    now: float,
    duration: Callable[[int], float],
    detail: str,
) -> Cooldown:
    row = conn.execute(f"SELECT {_COLUMNS} FROM cooldowns WHERE key = ?", (key,)).fetchone()
    cooldown = next_cooldown(row and _cooldown(row), key, reason, now, duration, detail)
    if cooldown.until > now:
        conn.execute(
            f"INSERT OR REPLACE INTO cooldowns ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (key, cooldown.until, reason.value, cooldown.strikes, cooldown.since, detail),
        )
    conn.execute("DELETE FROM cooldowns WHERE until < ?", (now - STRIKE_MEMORY,))
    return cooldown


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    return conn.execute(sql, params).rowcount


def _set_emergency(conn: sqlite3.Connection, on: bool, now: float, reason: str) -> bool:
    row = conn.execute("SELECT value FROM kv WHERE name = ?", (_EMERGENCY,)).fetchone()
    was_on = bool(row and row[0] == "1")
    if was_on == on:
        return False
    conn.execute(
        "INSERT OR REPLACE INTO kv (name, value, changed_at, reason) VALUES (?, ?, ?, ?)",
        (_EMERGENCY, "1" if on else "0", now, reason),
    )
    return True
