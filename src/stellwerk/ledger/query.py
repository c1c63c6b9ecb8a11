"""Every SQL statement of the ledger, in one place, per dialect.

The reports (`stats.py`) aggregate plain `Row` values in Python, so they never see SQL; the SQL a
backend runs is only "append", "delete before", "rows in a time range", "the last N" and "rows
after id N". That is written once here as a `Dialect`: the schema steps (applied in order, the
number applied kept by the backend, `PRAGMA user_version` in SQLite) and the statements with the
dialect's placeholder. A PostgreSQL dialect is the same statements with `%s`, `BIGSERIAL` and
`DOUBLE PRECISION`; the stats code does not change.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from ..redaction import POSIX_RULES, scrubbed_column
from .base import Row

TABLE = "decisions"
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Row) if f.name != "id")
"""Every stored column, in `Row` order (the id is the table's own)."""

LIGHT: tuple[str, ...] = tuple(c for c in COLUMNS if c not in {"prompt", "answer", "decision"})
"""What the reports read: everything but the decision JSON and the content."""

_SQLITE_SCHEMA_1 = (
    f"""CREATE TABLE {TABLE} (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
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
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        estimated INTEGER NOT NULL,
        cost_micros INTEGER NOT NULL,
        latency_ms REAL NOT NULL,
        error TEXT,
        prompt TEXT,
        answer TEXT,
        decision TEXT NOT NULL)""",
    f"CREATE INDEX {TABLE}_ts ON {TABLE} (ts)",
    f"CREATE INDEX {TABLE}_task_ts ON {TABLE} (task, ts)",
    f"CREATE INDEX {TABLE}_model_ts ON {TABLE} (model, ts)",
    f"CREATE INDEX {TABLE}_request ON {TABLE} (request_id)",
)


def added_columns(integer: str) -> tuple[str, ...]:
    """Schema step 2 for either database: the agent turn and the prompt-cache tokens. Old rows
    read as no turn, not a continuation, nothing cached (what they were recorded without)."""
    columns = [
        "turn TEXT",
        "continuation INTEGER NOT NULL DEFAULT 0",
        f"cache_read_tokens {integer} NOT NULL DEFAULT 0",
        f"cache_write_tokens {integer} NOT NULL DEFAULT 0",
        f"cache_write_1h_tokens {integer} NOT NULL DEFAULT 0",
    ]
    return tuple(f"ALTER TABLE {TABLE} ADD COLUMN {column}" for column in columns)


def cache_choice_columns(integer: str) -> tuple[str, ...]:
    """Schema step 4 for either database: what cache-aware routing changed (`warmth.py`): the
    target it took a turn from, and the saving it expected. Old rows: nothing changed."""
    columns = ["cache_displaced TEXT", f"cache_saved_micros {integer} NOT NULL DEFAULT 0"]
    return tuple(f"ALTER TABLE {TABLE} ADD COLUMN {column}" for column in columns)


def unused_indexes() -> tuple[str, ...]:
    """Schema step 5 for either database: the (task, ts) and (model, ts) indexes go. No query
    ever used them (the reports read a time range through the `ts` index and group in Python),
    and every row written paid to keep them: with them and a random request id, a row cost ~25
    µs of the writer's CPU, now ~10."""
    return tuple(f"DROP INDEX IF EXISTS {TABLE}_{name}" for name in ("task_ts", "model_ts"))


SCRUBBED = ("error", "decision")
"""The columns that hold upstream texts (the error, the attempt messages in the decision JSON)."""


def scrubbed_sqlite() -> tuple[str, ...]:
    """Schema step 3 in SQLite: keys an upstream echoed are scrubbed from the stored texts
    (`redaction.scrub`, installed in the connection as `stellwerk_scrub`)."""
    return tuple(scrubbed_column(TABLE, column) for column in SCRUBBED)


def scrubbed_postgres() -> tuple[str, ...]:
    """Schema step 3 in PostgreSQL: the same rules as `redaction.scrub` has for key shapes,
    as `regexp_replace` (the keys the process knows are not known to a migration)."""
    quick = "sk-|AIza|gsk_|xai-|[Bb]earer|BEARER"
    statements = []
    for column in SCRUBBED:
        value = column
        for pattern, replacement in POSIX_RULES:
            value = f"regexp_replace({value}, {_literal(pattern)}, {_literal(replacement)}, 'g')"
        statements.append(
            f"UPDATE {TABLE} SET {column} = {value} WHERE {column} ~ {_literal(quick)}"
        )
    return tuple(statements)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class Dialect:
    """The SQL of one database: schema steps and the five statements the ledger runs."""

    name: str
    migrations: tuple[tuple[str, ...], ...]  # step N: the statements that make version N+1
    mark: str = "?"  # the parameter placeholder

    @property
    def insert(self) -> str:
        return self.insert_rows(1)

    def insert_rows(self, count: int) -> str:
        """An INSERT of `count` rows, their values in `COLUMNS` order one row after the other."""
        return _insert(self.mark, count)

    @property
    def prune(self) -> str:
        return f"DELETE FROM {TABLE} WHERE ts < {self.mark}"

    def since(self, bounded: bool) -> str:
        upper = f" AND ts < {self.mark}" if bounded else ""
        return (
            f"SELECT id, {', '.join(LIGHT)} FROM {TABLE}"
            f" WHERE ts >= {self.mark}{upper} ORDER BY ts, id"
        )

    @property
    def tail(self) -> str:
        inner = f"SELECT id, {', '.join(COLUMNS)} FROM {TABLE} ORDER BY id DESC LIMIT {self.mark}"
        return f"SELECT * FROM ({inner}) AS last ORDER BY id"

    @property
    def after(self) -> str:
        return (
            f"SELECT id, {', '.join(COLUMNS)} FROM {TABLE}"
            f" WHERE id > {self.mark} ORDER BY id LIMIT {self.mark}"
        )


@functools.lru_cache(maxsize=32)
def _insert(mark: str, count: int) -> str:
    row = f"({', '.join(mark for _ in COLUMNS)})"
    return f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES {', '.join([row] * count)}"


SQLITE = Dialect(
    "sqlite",
    (
        _SQLITE_SCHEMA_1,
        added_columns("INTEGER"),
        scrubbed_sqlite(),
        cache_choice_columns("INTEGER"),
        unused_indexes(),
    ),
)


def params(row: Row) -> tuple[Any, ...]:
    """The values of `row` for `Dialect.insert`, in `COLUMNS` order."""
    values = []
    for name in COLUMNS:
        value = getattr(row, name)
        if name == "failures":  # most requests failed nowhere: "[]" without the encoder
            value = json.dumps([list(pair) for pair in value]) if value else "[]"
        elif isinstance(value, bool):
            value = int(value)
        values.append(value)
    return tuple(values)


_FLAGS = frozenset({"fallback", "estimated", "continuation"})  # stored as integers
_UNIQUE = frozenset({"request_id", "prompt", "answer", "decision"})  # never the same twice


def rows(names: Sequence[str], found: list[tuple[Any, ...]]) -> list[Row]:
    """`Row`s from result rows whose columns are `names` (an `id` first, then columns in `Row`
    order, as every statement here selects them); `found` is emptied on the way.

    The dashboard's 7-day view reads a week of rows, 100,000 for a busy gateway: text that
    repeats from row to row (class, model, provider, client, turn, an error) is kept once per
    read instead of once per row, the failures column (almost always `[]`) is decoded once per
    distinct text, each row is built from its values in order, and each result row is freed
    once its `Row` is built. 100,000 rows from SQLite: 1.6 → 1.0 s, +140 → +110 MiB at the
    peak (before: a dict of every column per row, and every row's failures decoded)."""
    columns = names[1:]
    if tuple(columns) != COLUMNS[: len(columns)]:
        raise ValueError(f"columns out of Row order: {', '.join(columns)}")
    failures_at = columns.index("failures")
    flags = [at for at, name in enumerate(columns) if name in _FLAGS]
    shared = [at for at, name in enumerate(columns) if name not in _UNIQUE]
    texts: dict[str, str] = {}
    failures: dict[str, tuple[tuple[str, str], ...]] = {}
    out = []
    found.reverse()  # taken from the end: each result row is freed once its Row is built
    while found:
        row_id, *data = found.pop()
        for at in shared:
            if (value := data[at]).__class__ is str:
                data[at] = texts.setdefault(value, value)
        raw = data[failures_at]
        if (parsed := failures.get(raw)) is None:
            parsed = failures[raw] = tuple(tuple(pair) for pair in json.loads(raw))
        data[failures_at] = parsed
        for at in flags:
            data[at] = bool(data[at])
        out.append(Row(*data, id=row_id))  # type: ignore[misc]  # id: the last field
    return out


class Reads:
    """The report queries every SQL backend shares; a backend supplies `dialect` and `_select`."""

    dialect: Dialect

    def _select(self, sql: str, args: tuple[object, ...], names: Sequence[str]) -> list[Row]:
        raise NotImplementedError

    def since(self, start: float, end: float | None = None) -> list[Row]:
        """Rows with `start <= ts < end`, oldest first, without the JSON and the content."""
        args = (start,) if end is None else (start, end)
        return self._select(self.dialect.since(end is not None), args, LIGHT)

    def tail(self, count: int) -> list[Row]:
        """The last `count` rows, oldest first."""
        return self._select(self.dialect.tail, (count,), COLUMNS)

    def after(self, row_id: int, limit: int = 1000) -> list[Row]:
        """Rows written after row `row_id`, oldest first."""
        return self._select(self.dialect.after, (row_id, limit), COLUMNS)
