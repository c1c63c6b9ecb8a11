"""The ledger: one row per decision, written in batches off the hot path, kept for the retention.

Rows, the two backends (one contract), the buffered writer (batching, flush, close, failed
writes), retention, schema migrations, where the file lives and the `ledger:` config section.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from stellwerk.config import policy_from_dict
from stellwerk.decision import Attempt, Decision, new_request_id
from stellwerk.errors import ConfigError
from stellwerk.ledger import (
    Ledger,
    LedgerBackend,
    MemoryLedger,
    Row,
    SQLiteLedger,
    ledger_path,
    open_backend,
    open_ledger,
    row_from,
)
from stellwerk.ledger.query import COLUMNS, SQLITE, Dialect, params
from stellwerk.plan import RoutePlan
from stellwerk.policy import RoutingMode
from stellwerk.types import TaskClass, Usage

NOW = 1_790_000_000.0
DAY = 86400.0
USAGE = Usage(120, 30)


def decision(
    request_id: str = "req_1",
    *,
    ts: float = NOW,
    attempts: Sequence[Attempt] = (),
    answered_by: str | None = "openai/gpt-4o-mini",
    usage: Usage = USAGE,
    cost: int = 36,
    mode: RoutingMode = RoutingMode.AUTO,
    shadow: tuple[str, ...] | None = None,
    **fields: object,
) -> Decision:
    route = RoutePlan(
        TaskClass.SIMPLE,
        mode,
        ("openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"),
        (),
        shadow=shadow,
    )
    made = Decision(request_id, "simple", 0.9, "short question", "model", route, started=ts)
    made.attempts = list(attempts) or [Attempt("openai/gpt-4o-mini", "openai#1", None, 200, 42.0)]
    made.answered_by = answered_by
    made.usage = usage
    made.cost_micros = cost
    made.finished = ts + 0.05
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def row(request_id: str = "req_1", ts: float = NOW, **fields: object) -> Row:
    return replace(row_from(decision(request_id, ts=ts)), **fields)


async def eventually(check: Callable[[], bool]) -> None:
    """Wait (bounded) for the background task to do what `check` looks for."""
    for _ in range(300):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the ledger did not get there")


# -- rows --------------------------------------------------------------------------------------


def test_row_holds_what_the_reports_aggregate_and_the_whole_decision():
    failed = Attempt("openai/gpt-4o-mini", "openai#1", "rate_limit", 429, 12.0, "slow down")
    ok = Attempt("anthropic/claude-haiku-4-5", "anthropic#2", None, 200, 80.5)
    made = decision(
        attempts=[failed, ok],
        answered_by="anthropic/claude-haiku-4-5",
        upstream_model="claude-haiku-4-5-20251001",
        client="anthropic",
        notices=["answered by anthropic/claude-haiku-4-5"],
    )
    got = row_from(made)
    assert (got.ts, got.request_id, got.client, got.task) == (NOW, "req_1", "anthropic", "simple")
    assert (got.model, got.provider) == ("anthropic/claude-haiku-4-5", "anthropic")
    assert got.fallback is True
    assert got.failures == (("openai/gpt-4o-mini", "rate_limit"),)
    assert (got.input_tokens, got.output_tokens, got.cost_micros) == (120, 30, 36)
    assert got.latency_ms == 80.5  # the answering attempt's
    assert got.attempts == 2
    stored = json.loads(got.decision)
    assert stored["attempts"][1]["credential"] == "anthropic#2"
    assert stored["notices"] == ["answered by anthropic/claude-haiku-4-5"]
    assert stored["client"] == "anthropic" and stored["ts"] == NOW


def test_a_failed_request_has_no_model_and_counts_every_attempts_latency():
    attempts = [
        Attempt("openai/gpt-4o-mini", "openai#1", "server", 500, 10.0),
        Attempt("anthropic/claude-haiku-4-5", "anthropic#1", "overloaded", 529, 15.0),
    ]
    got = row_from(
        decision(attempts=attempts, answered_by=None, usage=Usage(), cost=0, error="all failed")
    )
    assert got.model is None and got.provider is None and got.fallback is False
    assert got.latency_ms == 25.0
    assert got.error == "all failed"


def test_a_stream_cut_off_mid_answer_is_charged_to_its_target_as_estimated():
    got = row_from(
        decision(answered_by=None, partial="ollama/qwen3-4b", usage=Usage(50, 9, estimated=True))
    )
    assert (got.answered_by, got.model, got.provider) == (None, "ollama/qwen3-4b", "ollama")
    assert got.estimated is True


def test_shadow_rows_keep_the_first_target_auto_would_have_used():
    made = decision(mode=RoutingMode.SHADOW, shadow=("anthropic/claude-haiku-4-5", "x/y"))
    got = row_from(made)
    assert (got.mode, got.shadow_first) == ("shadow", "anthropic/claude-haiku-4-5")


def test_content_is_kept_only_when_the_config_says_so():
    made = decision(prompt="what is 2+2?", answer="4")
    assert (row_from(made).prompt, row_from(made).answer) == (None, None)
    kept = row_from(made, store_content=True)
    assert (kept.prompt, kept.answer) == ("what is 2+2?", "4")
    assert "2+2" not in kept.decision  # only in its own column


# -- the backends (one contract) ---------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerBackend]:
    """Each backend, PostgreSQL on a real server in a database of its own (tests/conftest.py)."""
    if request.param == "memory":
        opened: LedgerBackend = MemoryLedger()
    elif request.param == "sqlite":
        opened = SQLiteLedger(tmp_path / "ledger.db")
    else:
        from stellwerk.ledger.postgres import PostgresLedger

        opened = PostgresLedger(request.getfixturevalue("postgres_url"))
    yield opened
    opened.close()


def test_backend_round_trips_every_column(backend):
    original = row_from(
        decision(
            attempts=[
                Attempt("openai/gpt-4o-mini", "openai#1", "billing", 429, 3.0),
                Attempt("anthropic/claude-haiku-4-5", "anthropic#1", None, 200, 40.0),
            ],
            answered_by="anthropic/claude-haiku-4-5",
            prompt="p",
            answer="a",
            usage=Usage(
                5000, 30, cache_read_tokens=4000, cache_write_tokens=600, cache_write_1h_tokens=100
            ),
            turn="0f" * 16,
            continuation=True,
        ),
        store_content=True,
    )
    assert (original.turn, original.continuation) == ("0f" * 16, True)
    assert (original.cache_read_tokens, original.cache_write_tokens) == (4000, 600)
    assert original.cache_write_1h_tokens == 100
    backend.write([original])
    [back] = backend.tail(1)
    assert back.id is not None
    assert replace(back, id=None) == original


def test_rows_read_back_in_bulk_are_the_rows_written(backend):
    """What the dashboard's week reads: many rows whose classes, models, failures and flags
    repeat from row to row (read once per distinct value) come back each as it was written."""
    failures = ((), (("openai/gpt-4o", "rate_limit"),), (("a/x", "billing"), ("b/y", "server")))
    written = [
        row(
            f"r{i:03d}",
            NOW + i,
            task=("code", "simple", "heartbeat")[i % 3],
            model=("openai/gpt-4o-mini", None)[i % 2],
            failures=failures[i % 3],
            fallback=bool(failures[i % 3]) and i % 2 == 0,
            estimated=i % 5 == 0,
            continuation=i % 4 == 0,
            turn=f"{i // 4:032x}",
            error=None if i % 7 else "upstream timed out",
        )
        for i in range(60)
    ]
    backend.write(written)
    light = {"decision": "", "prompt": None, "answer": None, "id": None}
    assert [replace(r, id=None) for r in backend.tail(60)] == written
    assert [replace(r, **light) for r in backend.since(NOW)] == [
        replace(r, **light) for r in written
    ]


def test_since_returns_the_range_oldest_first_without_json_or_content(backend):
    backend.write([row("c", NOW + 20), row("a", NOW), row("b", NOW + 10, prompt="secret")])
    found = backend.since(NOW + 5)
    assert [r.request_id for r in found] == ["b", "c"]
    assert all(r.decision == "" and r.prompt is None for r in found)
    assert [r.request_id for r in backend.since(NOW, NOW + 20)] == ["a", "b"]


def test_tail_and_after_follow_insertion_order(backend):
    backend.write([row(f"r{i}") for i in range(5)])
    last = backend.tail(2)
    assert [r.request_id for r in last] == ["r3", "r4"]
    assert last[-1].decision  # complete rows
    first = backend.tail(5)[0]
    assert [r.request_id for r in backend.after(first.id or 0, limit=2)] == ["r1", "r2"]
    assert backend.after(last[-1].id or 0) == []


def test_prune_deletes_only_older_rows(backend):
    backend.write([row("old", NOW - 100 * DAY), row("new", NOW - DAY)])
    assert backend.prune(NOW - 90 * DAY) == 1
    assert [r.request_id for r in backend.since(0)] == ["new"]


# -- the writer: batches off the hot path ------------------------------------------------------


class Recording(MemoryLedger):
    """A memory backend that counts writes and can be told to fail them."""

    def __init__(self, fail: int = 0) -> None:
        super().__init__()
        self.writes: list[int] = []
        self.fail = fail
        self.closed = False

    def write(self, rows: Sequence[Row]) -> None:
        if self.fail:
            self.fail -= 1
            raise sqlite3.OperationalError("database is locked")
        self.writes.append(len(rows))
        super().write(rows)

    def close(self) -> None:
        self.closed = True


async def test_record_returns_without_writing_and_a_full_batch_is_written_at_once():
    backend = Recording()
    ledger = Ledger(backend, flush_every=60, batch=5)
    for i in range(4):
        await ledger.record(decision(f"r{i}"))
    await asyncio.sleep(0.02)
    assert backend.rows == [] and ledger.pending == 4
    await ledger.record(decision("r4"))
    await eventually(lambda: len(backend.rows) == 5)
    assert backend.writes == [5]  # one transaction
    await ledger.close()


async def test_rows_are_written_within_the_interval():
    backend = Recording()
    ledger = Ledger(backend, flush_every=0.01)
    await ledger.record(decision())
    await eventually(lambda: len(backend.rows) == 1)
    await ledger.close()


async def test_a_flush_writes_everything_queued_in_one_transaction():
    backend = Recording()
    ledger = Ledger(backend, flush_every=60, batch=10_000)
    for i in range(300):
        await ledger.record(decision(f"r{i}"))
    assert await ledger.flush() == 300
    assert backend.writes == [300]
    assert await ledger.flush() == 0
    await ledger.close()


async def test_close_writes_everything_and_closes_the_backend():
    backend = Recording()
    ledger = Ledger(backend, flush_every=60, batch=10_000)
    for i in range(50):
        await ledger.record(decision(f"r{i}"))
    await ledger.close()
    assert len(backend.rows) == 50 and backend.closed
    await ledger.close()  # twice is fine


async def test_a_record_after_close_is_dropped_not_lost_silently():
    backend = Recording()
    ledger = Ledger(backend)
    await ledger.close()
    await ledger.record(decision())
    assert backend.rows == [] and ledger.dropped == 1


async def test_a_failed_write_keeps_its_rows_for_the_next_one_without_duplicates():
    backend = Recording(fail=1)
    ledger = Ledger(backend, flush_every=60, batch=10_000)
    for i in range(3):
        await ledger.record(decision(f"r{i}"))
    assert await ledger.flush() == 0
    assert ledger.pending == 3
    await ledger.record(decision("r3"))
    assert await ledger.flush() == 4
    assert [r.request_id for r in backend.rows] == ["r0", "r1", "r2", "r3"]
    await ledger.close()


async def test_the_background_task_retries_a_failed_write():
    backend = Recording(fail=2)
    ledger = Ledger(backend, flush_every=0.01)
    await ledger.record(decision())
    await eventually(lambda: len(backend.rows) == 1)
    await ledger.close()
    assert len(backend.rows) == 1


async def test_reads_see_the_records_of_this_process():
    ledger = Ledger(MemoryLedger(), flush_every=60)
    await ledger.record(decision("a"))
    assert [r.request_id for r in await ledger.since(0)] == ["a"]
    assert [r.request_id for r in await ledger.tail(5)] == ["a"]
    await ledger.close()


async def test_sqlite_ledger_survives_a_restart_without_counting_twice(tmp_path):
    path = tmp_path / "ledger.db"
    first = Ledger(SQLiteLedger(path))
    for i in range(3):
        await first.record(decision(f"a{i}"))
    await first.close()
    second = Ledger(SQLiteLedger(path))
    await second.record(decision("b0"))
    rows = await second.since(0)
    await second.close()
    assert [r.request_id for r in rows] == ["a0", "a1", "a2", "b0"]


# -- retention ---------------------------------------------------------------------------------


def _aged(backend: MemoryLedger) -> None:
    backend.write([row("ancient", NOW - 100 * DAY), row("recent", NOW - 10 * DAY)])


async def test_old_rows_are_deleted_when_the_ledger_starts():
    backend = Recording()
    _aged(backend)
    ledger = Ledger(backend, retention=90 * DAY, clock=lambda: NOW, flush_every=0.01)
    await ledger.record(decision("today"))
    await eventually(lambda: [r.request_id for r in backend.rows] == ["recent", "today"])
    await ledger.close()


async def test_old_rows_are_deleted_again_a_day_later():
    backend = Recording()
    now = [NOW]
    ledger = Ledger(backend, retention=90 * DAY, clock=lambda: now[0], flush_every=0.01)
    await ledger.record(decision("first"))
    await eventually(lambda: len(backend.rows) == 1)
    backend.write([row("expires", NOW - 89.5 * DAY)])
    await asyncio.sleep(0.03)
    assert len(backend.rows) == 2  # not due yet
    now[0] = NOW + DAY
    await eventually(lambda: [r.request_id for r in backend.rows] == ["first"])
    await ledger.close()


async def test_zero_retention_keeps_everything():
    backend = Recording()
    _aged(backend)
    ledger = Ledger(backend, retention=0, clock=lambda: NOW)
    assert await ledger.prune() == 0
    await ledger.close()
    assert len(backend.rows) == 2


# -- schema migrations -------------------------------------------------------------------------


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_a_new_file_gets_the_whole_schema_with_its_indexes(tmp_path):
    path = tmp_path / "deep" / "ledger.db"
    SQLiteLedger(path).close()
    assert _version(path) == len(SQLITE.migrations)
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"decisions_ts", "decisions_request"} <= names
    assert not {"decisions_task_ts", "decisions_model_ts"} & names  # no query read them


def test_a_request_id_is_found_through_its_index(tmp_path):
    """What a user does with the `x-stellwerk-request-id` of an answer: SQLite's plan for it is
    an index search, not a scan of the table."""
    path = tmp_path / "ledger.db"
    SQLiteLedger(path).close()
    with sqlite3.connect(path) as conn:
        sql = "EXPLAIN QUERY PLAN SELECT * FROM decisions WHERE request_id = ?"
        plan = " ".join(str(r[-1]) for r in conn.execute(sql, ("req_1",)))
    assert "USING INDEX decisions_request" in plan


@pytest.mark.parametrize("count", [1, 2, 63, 64, 65, 200])
def test_a_batch_is_written_whole_in_order_in_few_statements(tmp_path, count):
    """A flush's rows go in as statements of up to 64 rows each (not one step per row, which
    waits for the GIL once per row beside a busy loop), every value as given, in order."""
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    inserts: list[str] = []
    ledger._conn.set_trace_callback(lambda sql: inserts.append(sql) if "INSERT" in sql else None)
    written = [row(f"req_{i:03}", ts=NOW + i, input_tokens=i, error=f"e{i}") for i in range(count)]
    ledger.write(written)
    back = ledger.tail(count + 1)
    ledger.close()
    assert [(r.request_id, r.ts, r.input_tokens, r.error) for r in back] == [
        (r.request_id, r.ts, r.input_tokens, r.error) for r in written
    ]
    assert len(inserts) == count // 64 + bin(count % 64).count("1")  # 200: 64, 64, 64, 8


def test_request_ids_sort_by_time_and_do_not_repeat(monkeypatch):
    """Later ids sort after earlier ones (so the index above grows at its end), and ids made in
    the same millisecond differ."""
    clock = iter([1_700_000_000.001, 1_700_000_000.001, 1_700_000_000.002])
    monkeypatch.setattr(time, "time", lambda: next(clock))
    first, same_ms, later = new_request_id(), new_request_id(), new_request_id()
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in (first, same_ms, later))
    assert first != same_ms and first[:16] == same_ms[:16]
    assert max(first, same_ms) < later
    monkeypatch.undo()
    assert len({new_request_id() for _ in range(10_000)}) == 10_000


def test_opening_again_keeps_the_rows_and_applies_nothing_twice(tmp_path):
    path = tmp_path / "ledger.db"
    first = SQLiteLedger(path)
    first.write([row()])
    first.close()
    again = SQLiteLedger(path)
    assert len(again.since(0)) == 1
    again.close()
    assert _version(path) == len(SQLITE.migrations)


def test_a_later_schema_step_upgrades_an_existing_file_in_place(tmp_path):
    path = tmp_path / "ledger.db"
    old = SQLiteLedger(path)
    old.write([row()])
    old.close()
    step = ("ALTER TABLE decisions ADD COLUMN region TEXT",)
    newer = Dialect("sqlite", (*SQLITE.migrations, step))
    upgraded = SQLiteLedger(path, newer)
    assert len(upgraded.since(0)) == 1
    upgraded.close()
    assert _version(path) == len(SQLITE.migrations) + 1


def test_a_ledger_of_the_first_schema_is_upgraded_in_place_with_turns_and_cache_tokens(tmp_path):
    """A ledger.db as Stellwerk wrote it before turns and cache tokens were recorded (schema
    step 1, frozen here) opens with its rows intact and the new columns at their defaults."""
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as conn:
        for sql in SQLITE.migrations[0]:
            conn.execute(sql)
        conn.execute("PRAGMA user_version = 1")
        old = row("old")
        columns = [c for c in COLUMNS if c in V1_COLUMNS]
        values = dict(zip(COLUMNS, params(old), strict=True))
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO decisions ({', '.join(columns)}) VALUES ({marks})"
        conn.execute(sql, [values[c] for c in columns])
    upgraded = SQLiteLedger(path)
    upgraded.write([row("new", turn="ab" * 16, continuation=True, cache_read_tokens=7)])
    old_back, new_back = upgraded.tail(2)
    upgraded.close()
    assert _version(path) == len(SQLITE.migrations)
    assert (old_back.request_id, old_back.turn, old_back.continuation) == ("old", None, False)
    assert (old_back.cache_read_tokens, old_back.cache_write_tokens) == (0, 0)
    assert (new_back.turn, new_back.continuation, new_back.cache_read_tokens) == (
        "ab" * 16,
        True,
        7,
    )
    with sqlite3.connect(path) as conn:
        names = {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
    assert {"turn", "continuation", "cache_read_tokens", "cache_write_tokens"} <= names


V1_COLUMNS = frozenset(
    "ts request_id client task source mode routed_as shadow_first answered_by model provider "
    "upstream_model attempts fallback failures input_tokens output_tokens estimated cost_micros "
    "latency_ms error prompt answer decision".split()
)
"""The columns of schema step 1, frozen: what ledgers written before step 2 hold."""


def test_a_file_from_a_newer_stellwerk_is_refused(tmp_path):
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match=r"ledger\.path: .* newer Stellwerk"):
        SQLiteLedger(path)


# -- where it lives, and the config section ----------------------------------------------------


def test_ledger_db_lives_next_to_the_state_database(tmp_path):
    env = {"STELLWERK_STATE_DIR": str(tmp_path / "sw")}
    assert ledger_path(policy_from_dict({}), env) == tmp_path / "sw" / "ledger.db"
    state = policy_from_dict({"state": {"path": str(tmp_path / "x" / "state.db")}})
    assert ledger_path(state, env) == tmp_path / "x" / "ledger.db"
    own = policy_from_dict({"ledger": {"path": str(tmp_path / "usage.db")}})
    assert ledger_path(own, env) == tmp_path / "usage.db"


async def test_open_ledger_follows_the_config(tmp_path):
    env = {"STELLWERK_STATE_DIR": str(tmp_path)}
    policy = policy_from_dict({"ledger": {"retention": "30d", "store_content": True}})
    ledger = open_ledger(policy, env)
    assert isinstance(ledger.backend, SQLiteLedger)
    assert (ledger.retention, ledger.store_content) == (30 * DAY, True)
    await ledger.close()
    assert (tmp_path / "ledger.db").exists()
    memory = policy_from_dict({"ledger": {"backend": "memory"}})
    assert isinstance(open_backend(memory, env), MemoryLedger)


def test_the_default_ledger_config():
    ledger = policy_from_dict({}).ledger
    assert (ledger.backend, ledger.path, ledger.retention, ledger.store_content) == (
        "sqlite",
        "",
        90 * DAY,
        False,
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"backend": "postgres"}, "ledger.url: backend postgres needs a URL"),
        ({"backend": "mysql"}, "ledger.backend: invalid enum value 'mysql'"),
        ({"url": "mysql://db/x"}, "ledger.url: expected a postgresql:// URL"),
        ({"retention": "forever"}, "ledger.retention: expected a duration"),
        ({"store_content": "maybe"}, "ledger.store_content: expected `bool`"),
        ({"colour": "red"}, "ledger: unknown field 'colour'"),
    ],
)
def test_config_errors_name_the_ledger_key(raw, message):
    with pytest.raises(ConfigError) as caught:
        policy_from_dict({"ledger": raw})
    assert str(caught.value).startswith(message)
