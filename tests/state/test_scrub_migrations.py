"""Keys an older Stellwerk stored are scrubbed when the files are opened (issue 15).

Before upstream texts were scrubbed where they are read, an upstream that echoed a key got it into
cooldown details (`state.db`, Redis) and into the ledger (the error column, the attempt messages
of the decision JSON). Opening such a file applies a schema step that scrubs those columns; Redis
has no schema, so its cooldowns are scrubbed as they are read.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
from redis.asyncio import Redis

from stellwerk.decision import Attempt, Decision
from stellwerk.failures import FailureClass
from stellwerk.ledger import SQLiteLedger, row_from
from stellwerk.ledger.postgres import POSTGRES, PostgresLedger
from stellwerk.ledger.query import COLUMNS, SQLITE, Dialect, params
from stellwerk.plan import RoutePlan
from stellwerk.policy import RoutingMode
from stellwerk.state.base import Cooldown
from stellwerk.state.lua import encode_cooldown
from stellwerk.state.redis import RedisStore
from stellwerk.state.sqlite import _MIGRATIONS, SQLiteStore
from stellwerk.testing.servers import RedisServer
from stellwerk.types import TaskClass

NOW = 1_790_000_000.0
LEAKED = "sk-ant-api03-" + "OldLeak5" * 12 + "-AA"
ECHO = f"HTTP 401: invalid x-api-key: {LEAKED}"


def _clean(text: str) -> bool:
    return "OldLeak5" not in text


def _row():
    route = RoutePlan(TaskClass.SIMPLE, RoutingMode.AUTO, ("anthropic/claude-haiku-4-5",), ())
    made = Decision("req_old", "simple", 0.9, "short", "model", route, started=NOW)
    made.attempts = [Attempt("anthropic/claude-haiku-4-5", "anthropic#1", "auth", 401, 3.0, ECHO)]
    made.error = f"all targets failed: anthropic/claude-haiku-4-5: auth ({ECHO})"
    made.finished = NOW + 1
    row = row_from(made)
    # as an older Stellwerk wrote it: nothing scrubbed
    return replace(row, error=made.error, decision=json.dumps({"attempts": [{"message": ECHO}]}))


def _insert(conn: Any, have: list[str], row: Any, mark: str) -> None:
    """`row` into an older ledger table, in the columns it has."""
    values = dict(zip(COLUMNS, params(row), strict=True))
    names = [c for c in COLUMNS if c in have]
    marks = ", ".join(mark for _ in names)
    sql = f"INSERT INTO decisions ({', '.join(names)}) VALUES ({marks})"
    conn.execute(sql, [values[c] for c in names])


def _scrub_step(steps: tuple[tuple[str, ...], ...], marker: str) -> int:
    return next(i for i, step in enumerate(steps) if any(marker in sql for sql in step))


async def test_state_file_cooldown_details_are_scrubbed_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await SQLiteStore(
        path
    ).close()  # the whole schema, then: a file as it was before the scrubbing step
    step = _scrub_step(_MIGRATIONS, "stellwerk_scrub(detail)")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO cooldowns VALUES (?, ?, ?, ?, ?, ?)",
            ("cred:anthropic#1", float("inf"), "auth", 1, NOW, ECHO),
        )
        conn.execute("INSERT INTO kv VALUES ('emergency', '1', ?, ?)", (NOW, ECHO))
        conn.execute(f"PRAGMA user_version = {step}")
    store = SQLiteStore(path)
    snapshot = await store.snapshot(NOW)
    await store.close()
    with sqlite3.connect(path) as conn:
        dump = "\n".join(conn.iterdump())
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(_MIGRATIONS)
    assert _clean(dump) and "invalid x-api-key: sk-ant-…" in dump
    assert snapshot.emergency_reason is not None and _clean(snapshot.emergency_reason)


async def test_redis_cooldowns_are_scrubbed_as_they_are_read(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    raw = Redis.from_url(redis_server.url, decode_responses=True)
    old = Cooldown("cred:anthropic#1", NOW + 3600, FailureClass.AUTH, 1, NOW, ECHO)
    await raw.set(f"{redis_prefix}cd:cred:anthropic#1", encode_cooldown(old))
    await raw.sadd(f"{redis_prefix}cooldowns", "cred:anthropic#1")
    await raw.aclose()
    store = RedisStore(redis_server.url, prefix=redis_prefix)
    try:
        snapshot = await store.snapshot(NOW)
    finally:
        await store.close()
    detail = snapshot.cooldowns["cred:anthropic#1"].detail
    assert _clean(detail) and detail.endswith("sk-ant-…")


def test_ledger_file_errors_and_decisions_are_scrubbed_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    step = _scrub_step(SQLITE.migrations, "stellwerk_scrub(error)")
    SQLiteLedger(path, Dialect("sqlite", SQLITE.migrations[:step])).close()
    with sqlite3.connect(path) as conn:  # a row as that version wrote it: its columns only
        have = [r[1] for r in conn.execute("PRAGMA table_info(decisions)")]
        _insert(conn, have, _row(), "?")
    ledger = SQLiteLedger(path)
    (row,) = ledger.tail(1)
    ledger.close()
    assert row.error is not None and _clean(row.error) and _clean(row.decision)
    assert "sk-ant-…" in row.error and "sk-ant-…" in row.decision
    json.loads(row.decision)  # still JSON


def test_new_ledger_rows_are_scrubbed_as_they_are_made() -> None:
    route = RoutePlan(TaskClass.SIMPLE, RoutingMode.AUTO, ("anthropic/claude-haiku-4-5",), ())
    made = Decision("req_new", "simple", 0.9, "short", "model", route, started=NOW)
    made.attempts = [Attempt("anthropic/claude-haiku-4-5", "anthropic#1", "auth", 401, 3.0, ECHO)]
    made.error = ECHO
    row = row_from(made)
    assert row.error is not None and _clean(row.error) and _clean(row.decision)


def test_postgres_ledger_is_scrubbed_when_migrated(postgres_url: str) -> None:
    step = _scrub_step(POSTGRES.migrations, "regexp_replace(error")
    PostgresLedger(postgres_url, Dialect("postgres", POSTGRES.migrations[:step], mark="%s")).close()
    with psycopg.connect(postgres_url) as conn:  # rows as that version wrote them
        found = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'decisions'"
        ).fetchall()
        have = [name for (name,) in found]
        for row in (_row(), replace(_row(), request_id="req_plain", error="HTTP 500: boom")):
            _insert(conn, have, row, "%s")
    ledger = PostgresLedger(postgres_url)
    rows = ledger.tail(2)
    ledger.close()
    assert [r.request_id for r in rows] == ["req_old", "req_plain"]
    assert all(_clean(r.error or "") and _clean(r.decision) for r in rows)
    assert rows[0].error is not None and "invalid x-api-key: sk-ant-…)" in rows[0].error
    assert rows[1].error == "HTTP 500: boom"
    json.loads(rows[0].decision)
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute("SELECT version FROM stellwerk_schema").fetchall()
    assert found == [(len(POSTGRES.migrations),)]
