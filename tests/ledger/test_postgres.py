"""What the PostgreSQL ledger promises beyond the shared backend contract (test_ledger.py): the
schema is Stellwerk's to create and migrate, replicas starting together migrate once, a broken
connection is opened again, and batches are written in one transaction.

Runs against a real PostgreSQL cluster (tests/conftest.py), each test in a new database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest
from click.testing import CliRunner

from stellwerk.cli import main
from stellwerk.config import policy_from_dict
from stellwerk.decision import Decision
from stellwerk.errors import ConfigError
from stellwerk.ledger import Ledger, open_backend, open_ledger, row_from
from stellwerk.ledger.postgres import POSTGRES, LedgerUnavailable, PostgresLedger
from stellwerk.plan import RoutePlan
from stellwerk.policy import RoutingMode
from stellwerk.testing.servers import free_port
from stellwerk.types import TaskClass, Usage

NOW = 1_790_000_000.0


def decision(request_id: str) -> Decision:
    route = RoutePlan(TaskClass.SIMPLE, RoutingMode.AUTO, ("openai/gpt-4o-mini",), ())
    made = Decision(
        request_id=request_id,
        task="simple",
        confidence=0.9,
        reason="test",
        source="rule",
        route=route,
        started=NOW,
    )
    made.answered_by = "openai/gpt-4o-mini"
    made.usage = Usage(10, 5)
    made.finished = NOW + 0.1
    return made


def rows(*ids: str) -> list:
    return [row_from(decision(i)) for i in ids]


def sql(url: str, statement: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[PostgresLedger]:
    opened = PostgresLedger(postgres_url)
    yield opened
    opened.close()


def test_a_new_database_gets_the_whole_schema_with_its_indexes(postgres_url: str) -> None:
    PostgresLedger(postgres_url).close()
    assert sql(postgres_url, "SELECT component, version FROM stellwerk_schema") == [
        ("ledger", len(POSTGRES.migrations))
    ]
    names = {r[0] for r in sql(postgres_url, "SELECT indexname FROM pg_indexes")}
    assert {"decisions_ts", "decisions_request"} <= names
    assert not {"decisions_task_ts", "decisions_model_ts"} & names  # no query read them


def test_opening_again_keeps_the_rows_and_applies_nothing_twice(postgres_url: str) -> None:
    first = PostgresLedger(postgres_url)
    first.write(rows("a", "b"))
    first.close()
    again = PostgresLedger(postgres_url)
    assert [r.request_id for r in again.since(0)] == ["a", "b"]
    again.close()


def test_a_later_schema_step_upgrades_a_database_in_place(postgres_url: str) -> None:
    PostgresLedger(postgres_url).close()
    step = ("ALTER TABLE decisions ADD region TEXT",)
    newer = replace(POSTGRES, migrations=(*POSTGRES.migrations, step))
    upgraded = PostgresLedger(postgres_url, newer)
    upgraded.write(rows("a"))
    upgraded.close()
    assert sql(postgres_url, "SELECT version FROM stellwerk_schema") == [(len(newer.migrations),)]
    columns = sql(postgres_url, "SELECT column_name FROM information_schema.columns")
    assert ("region",) in columns


def test_a_database_of_the_first_schema_is_upgraded_with_turns_and_cache_tokens(
    postgres_url: str,
) -> None:
    first = replace(POSTGRES, migrations=POSTGRES.migrations[:1])
    sql(postgres_url, "CREATE TABLE stellwerk_schema (component TEXT PRIMARY KEY, version INT)")
    with psycopg.connect(postgres_url, autocommit=True) as conn, conn.cursor() as cur:
        for statement in first.migrations[0]:
            cur.execute(statement)
        cur.execute("INSERT INTO stellwerk_schema VALUES ('ledger', 1)")
        cur.execute(
            "INSERT INTO decisions (ts, request_id, client, task, source, mode, routed_as,"
            " attempts, fallback, failures, input_tokens, output_tokens, estimated,"
            " cost_micros, latency_ms, decision)"
            " VALUES (1, 'old', 'openai', 'simple', 'rule', 'auto', 'simple', 1, 0, '[]',"
            " 10, 5, 0, 3, 1.0, '{}')"
        )
    upgraded = PostgresLedger(postgres_url)
    upgraded.write(
        [
            replace(
                rows("new")[0],
                turn="ab" * 16,
                continuation=True,
                cache_read_tokens=7,
                cache_write_tokens=2,
            )
        ]
    )
    old, new = upgraded.tail(2)
    upgraded.close()
    assert sql(postgres_url, "SELECT version FROM stellwerk_schema") == [
        (len(POSTGRES.migrations),)
    ]
    assert (old.request_id, old.turn, old.continuation, old.cache_read_tokens) == (
        "old",
        None,
        False,
        0,
    )
    assert (new.turn, new.continuation, new.cache_read_tokens, new.cache_write_tokens) == (
        "ab" * 16,
        True,
        7,
        2,
    )


def test_a_database_from_a_newer_stellwerk_is_refused(postgres_url: str) -> None:
    PostgresLedger(postgres_url).close()
    sql(postgres_url, "UPDATE stellwerk_schema SET version = 99")
    with pytest.raises(ConfigError, match=r"ledger\.url: .* newer Stellwerk"):
        PostgresLedger(postgres_url)


def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    opened: list[PostgresLedger] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(PostgresLedger(postgres_url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == 4
    for each in opened:
        each.write(rows("x"))
        each.close()
    assert sql(postgres_url, "SELECT count(*) FROM decisions") == [(4,)]


async def test_a_broken_connection_is_opened_again_and_no_row_is_lost(
    ledger: PostgresLedger, postgres_url: str
) -> None:
    writer = Ledger(ledger, flush_every=60)
    await writer.record(decision("before"))
    assert await writer.flush() == 1
    sql(postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE pid <> pg_backend_pid() AND datname = current_database()")  # fmt: skip
    await writer.record(decision("after"))
    written = await writer.flush()  # the first try may find the connection gone
    if written == 0:
        assert await writer.flush() == 1
    assert [r.request_id for r in await writer.since(0)] == ["before", "after"]
    await writer.close()


def test_a_batch_is_one_transaction(ledger: PostgresLedger, postgres_url: str) -> None:
    batch = rows("ok", "broken")
    batch[1] = replace(batch[1], request_id=None)  # NOT NULL fails on the second row
    with pytest.raises(psycopg.IntegrityError):
        ledger.write(batch)
    ledger.write(rows("a", "b", "c"))
    assert [r.request_id for r in ledger.since(0)] == ["a", "b", "c"]


async def test_open_ledger_follows_the_config(postgres_url: str) -> None:
    policy = policy_from_dict({"ledger": {"backend": "postgres", "url": postgres_url}})
    ledger = open_ledger(policy)
    assert isinstance(ledger.backend, PostgresLedger)
    await ledger.record(decision("cfg"))
    await ledger.close()
    backend = open_backend(policy)
    assert [r.request_id for r in backend.tail(1)] == ["cfg"]
    backend.close()


def test_an_unreachable_database_delays_records_not_the_start() -> None:
    url = f"postgresql://stellwerk:s3cret@127.0.0.1:{free_port()}/x"
    ledger = PostgresLedger(url)  # a gateway starts; the writer keeps records meanwhile
    with pytest.raises(LedgerUnavailable) as caught:
        ledger.since(0)
    message = str(caught.value)
    assert "s3cret" not in message and "stellwerk:***@127.0.0.1" in message
    ledger.close()


def test_stats_on_an_unreachable_database_is_one_clear_line(tmp_path, monkeypatch) -> None:
    config = tmp_path / "stellwerk.yaml"
    url = f"postgresql://app:s3cret@127.0.0.1:{free_port()}/x"
    config.write_text(f"ledger: {{backend: postgres, url: '{url}'}}\n")
    result = CliRunner().invoke(main, ["stats", "--config", str(config)])
    assert result.exit_code == 1
    assert result.output.startswith("stellwerk: ledger: cannot connect to postgresql://app:***@")
