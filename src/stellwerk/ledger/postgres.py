"""The ledger in PostgreSQL: one database for every gateway replica.

`ledger: {backend: postgres, url: postgresql://user@host:5432/db}` needs psycopg 3
(`pip install 'stellwerk[postgres]'`). psycopg rather than asyncpg because ledger backends are
synchronous by design: the `Ledger` writes its batches from a worker thread, off the event loop,
and the CLI reads the same way. psycopg 3 is the maintained synchronous driver, speaks the `%s`
placeholder the shared `query.Dialect` is written for, and sends an `executemany` batch in
pipeline mode (one round trip for the batch). Everything above the backend, `stellwerk stats`
and `stellwerk log` included, is the same code as on SQLite; only the dialect differs.

The schema is Stellwerk's own: the table `stellwerk_schema` keeps how many steps of
`POSTGRES.migrations` the database has applied. Opening applies the missing ones in one
transaction under an advisory lock, so replicas that start together migrate once; a database
migrated by a newer Stellwerk is refused. A gateway starts even while PostgreSQL is unreachable
(with a warning): a connection that is missing or broke (server restart, failover) is opened by
the next call, and the `Ledger` keeps the rows of a failed write for the next one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import psycopg

from ..errors import ConfigError, StellwerkError
from ..policy import masked_url
from . import query
from .base import Row
from .query import TABLE, Dialect

log = logging.getLogger("stellwerk.ledger")

CONNECT_TIMEOUT = 10  # seconds
_LOCK = 0x5354_4C57_4C45_4447  # pg_advisory_xact_lock key for migrations ("STLWLEDG")
_COMPONENT = "ledger"

_SCHEMA_1 = (
    f"""CREATE TABLE {TABLE} (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        request_id TEXT NOT NULL,
        client TEXT NOT NULL,
        task TEXT NOT NULL,
        source TEXT NOT NULL,
        mode TEXT NOT NULL,
        routed_as TEXT NOT NULL,
        shadow_first TEXT,
        answered_by TEXT,
        model TEXT,
        provider TEXT,
        upstream_model TEXT,
        attempts INTEGER NOT NULL,
        fallback INTEGER NOT NULL,
        failures TEXT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        estimated INTEGER NOT NULL,
        cost_micros BIGINT NOT NULL,
        latency_ms DOUBLE PRECISION NOT NULL,
        error TEXT,
        prompt TEXT,
        answer TEXT,
        decision TEXT NOT NULL)""",
    f"CREATE INDEX {TABLE}_ts ON {TABLE} (ts)",
    f"CREATE INDEX {TABLE}_task_ts ON {TABLE} (task, ts)",
    f"CREATE INDEX {TABLE}_model_ts ON {TABLE} (model, ts)",
    f"CREATE INDEX {TABLE}_request ON {TABLE} (request_id)",
)

POSTGRES = Dialect(
    "postgres",
    (
        _SCHEMA_1,
        query.added_columns("BIGINT"),
        query.scrubbed_postgres(),
        query.cache_choice_columns("BIGINT"),
        query.unused_indexes(),
    ),
    mark="%s",
)


class LedgerUnavailable(StellwerkError):
    """The ledger's database cannot be reached."""


class PostgresLedger(query.Reads):
    """A `LedgerBackend` in a PostgreSQL database, shared by every replica that uses it."""

    def __init__(self, url: str, dialect: Dialect = POSTGRES) -> None:
        self.url = url
        self.dialect = dialect
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._migrated = False
        try:
            with self._lock:
                self._connection()
        except LedgerUnavailable as exc:
            log.warning("%s; records wait in memory until it answers", exc)

    def write(self, rows: Sequence[Row]) -> None:
        """Append `rows` in one transaction (one pipelined round trip)."""
        with self._lock:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(self.dialect.insert, [query.params(r) for r in rows])

    def prune(self, before: float) -> int:
        """Delete rows older than `before`; return how many."""
        with self._lock, self._connection().cursor() as cur:
            cur.execute(self.dialect.prune, (before,))
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _select(self, sql: str, args: tuple[object, ...], names: Sequence[str]) -> list[Row]:
        with self._lock, self._connection().cursor() as cur:
            cur.execute(sql, args)
            found = cur.fetchall()
        columns = ("id", *names)
        return query.rows(columns, found)

    def _connection(self) -> psycopg.Connection[Any]:
        """The connection (opened if missing, closed or broken; migrated first). Hold the lock."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if self._conn is not None:
            self._conn.close()
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
            where = masked_url(self.url)
            raise LedgerUnavailable(f"ledger: cannot connect to {where}: {reason}") from None
        try:
            if not self._migrated:
                self._migrate(conn)
                self._migrated = True
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        steps = self.dialect.migrations
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS stellwerk_schema"
                " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            cur.execute("SELECT version FROM stellwerk_schema WHERE component = %s", (_COMPONENT,))
            found = cur.fetchone()
            version = int(found[0]) if found else 0
            if version > len(steps):
                where = masked_url(self.url)
                raise ConfigError("ledger.url", f"{where} was migrated by a newer Stellwerk")
            for statements in steps[version:]:
                for sql in statements:
                    cur.execute(sql)
            cur.execute(
                "INSERT INTO stellwerk_schema (component, version) VALUES (%s, %s)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (_COMPONENT, len(steps)),
            )
