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

import threading
from collections.abc import Sequence
from pathlib import Path

from ..redaction import install
from ..sqlite_file import connect, migrate, transaction
from . import query
from .base import Row
from .query import SQLITE, Dialect


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

    def write(self, rows: Sequence[Row]) -> None:
        """Append `rows` in one transaction."""
        params = [query.params(r) for r in rows]
        with self._lock:
            transaction(self._conn, lambda conn: conn.executemany(self.dialect.insert, params))

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
        return [query.row(columns, values) for values in found]
