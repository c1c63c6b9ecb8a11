"""The ledger in its own SQLite file, `ledger.db`, next to the state database.

Its own file rather than a table in `state.db`: the state store re-reads its mirror whenever
`PRAGMA data_version` says another connection committed, and the ledger commits several times a
second under load; in a separate file those commits never touch routing. The ledger can also be
deleted, copied or vacuumed without losing a cooldown. WAL mode lets `stellwerk stats` and
`stellwerk log --follow` read while a gateway writes, from other processes.

The schema is versioned with `PRAGMA user_version`: it counts the steps of
`query.SQLITE.migrations` a file has applied; opening applies the missing ones in one
transaction, and a file from a newer Stellwerk is refused rather than misread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from ..redaction import install
from ..sqlite_file import connect, migrate, transaction
from . import query
from .base import Row
from .query import SQLITE, Dialect

ROWS_PER_INSERT = 64
"""The most rows one INSERT statement carries (fewer when SQLite allows fewer parameters)."""


class SQLiteLedger(query.Reads):
    """A `LedgerBackend` in one SQLite file, safe for several processes on one machine."""

    def __init__(self, path: str | Path, dialect: Dialect = SQLITE) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dialect = dialect
        self._lock = threading.Lock()
        self._conn = connect(self.path)
        install(self._conn)  # `stellwerk_scrub`, for the step that scrubs stored texts
        try:
            migrate(self._conn, self.dialect.migrations, "ledger.path", self.path)
        except BaseException:
            self._conn.close()
            raise
        fits = self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(query.COLUMNS)
        self._most = 1 << min(ROWS_PER_INSERT, max(fits, 1)).bit_length() - 1

    def write(self, rows: Sequence[Row]) -> None:
        """Append `rows` in one transaction, many rows to a statement.

        Not `executemany`: it steps the statement once per row, and lets go of the GIL and
        takes it back around every step. The writer thread runs beside a busy event loop, so it
        waited for the GIL once per row (up to the switch interval each time): 70 rows took
        ~30-45 ms that way and take ~5 ms as two or three statements. Statements of 64, 32, 16,
        ... rows (within SQLite's limit of parameters) keep the statement cache small."""
        params = [query.params(r) for r in rows]
        with self._lock:
            transaction(self._conn, self._insert, params)

    def _insert(self, conn: sqlite3.Connection, params: Sequence[tuple[object, ...]]) -> None:
        at = 0
        while at < len(params):
            size = min(self._most, 1 << (len(params) - at).bit_length() - 1)
            chunk = params[at : at + size]
            conn.execute(self.dialect.insert_rows(size), [v for row in chunk for v in row])
            at += size

    def prune(self, before: float) -> int:
        """Delete rows older than `before`; return how many."""
        with self._lock:
            return self._conn.execute(self.dialect.prune, (before,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _select(self, sql: str, args: tuple[object, ...], names: Sequence[str]) -> list[Row]:
        with self._lock:
            found = self._conn.execute(sql, args).fetchall()
        columns = ("id", *names)
        return query.rows(columns, found)
