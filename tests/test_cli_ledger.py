"""`stellwerk stats` and `stellwerk log` as a user types them, on a ledger written beforehand."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from stellwerk.chat import run_chat
from stellwerk.cli import main
from stellwerk.ledger import LedgerBackend, Row, SQLiteLedger
from stellwerk.testing._server import Reply
from stellwerk.testing.world import KEYS, FakeWorld

NOW = time.time()


def row(request_id: str, ts: float, model: str | None, tokens: tuple[int, int], cost: int) -> Row:
    return Row(
        ts=ts,
        request_id=request_id,
        client="openai",
        task="simple",
        source="classifier",
        mode="auto",
        routed_as="simple",
        shadow_first=None,
        answered_by=model,
        model=model,
        provider=model.partition("/")[0] if model else None,
        upstream_model=None,
        attempts=1,
        fallback=False,
        failures=() if model else (("openai/gpt-4o-mini", "server"),),
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        estimated=False,
        cost_micros=cost,
        latency_ms=120.0,
        error=None if model else "all targets failed",
        decision="{}",
    )


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STELLWERK_STATE_DIR", str(tmp_path / "state"))
    for name in [*KEYS, "STELLWERK_CONFIG"]:
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return run


ROWS = [
    row("req_old", NOW - 3 * 86400, "openai/gpt-4o-mini", (9000, 900), 1890),
    row("req_a", NOW - 3600, "openai/gpt-4o-mini", (1000, 500), 450),
    row("req_b", NOW - 1800, "anthropic/claude-haiku-4-5", (1000, 500), 3500),
    row("req_c", NOW - 60, None, (0, 0), 0),
]


@pytest.fixture
def ledger(tmp_path) -> Path:
    path = tmp_path / "state" / "ledger.db"
    backend = SQLiteLedger(path)
    backend.write(ROWS)
    backend.close()
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def empty(request, tmp_path) -> LedgerBackend:
    """An empty ledger of each backend, as the config in the working directory names it."""
    if request.param == "sqlite":
        return SQLiteLedger(tmp_path / "state" / "ledger.db")
    from stellwerk.ledger.postgres import PostgresLedger

    url = request.getfixturevalue("postgres_url")
    (tmp_path / "stellwerk.yaml").write_text(f"ledger: {{backend: postgres, url: '{url}'}}\n")
    return PostgresLedger(url)


@pytest.fixture
def recorded(empty: LedgerBackend) -> LedgerBackend:
    """The same four requests in the ledger of each backend: the reports must not differ."""
    empty.write(ROWS)
    empty.close()
    return empty


def test_stats_json_covers_the_last_day_by_default(cli, recorded):
    result = cli("stats", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert (data["requests"], data["answered"], data["errors"]) == (3, 2, 1)
    assert data["cost_micros"] == 3950
    assert data["savings"]["baseline"] == "anthropic/claude-sonnet-4-0"
    assert data["savings"]["baseline_micros"] == 2 * 10500


def test_stats_since_a_week_includes_older_requests(cli, recorded):
    data = json.loads(cli("stats", "--since", "7d", "--json").output)
    assert data["requests"] == 4


def test_stats_text(cli, recorded):
    result = cli("stats")
    assert result.exit_code == 0
    assert "requests   3 (2 answered, 1 failed)" in result.output
    assert "anthropic/claude-haiku-4-5" in result.output
    assert "savings" in result.output


def test_stats_with_an_unreadable_since_is_a_usage_error(cli, recorded):
    result = cli("stats", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "--since" in result.output and "expected 24h, 7d or a date" in result.output


def test_stats_on_an_empty_ledger(cli, empty):
    empty.close()
    result = cli("stats")
    assert result.exit_code == 0
    assert "no requests recorded" in result.output


def test_log_prints_the_last_decisions_one_line_each(cli, recorded):
    result = cli("log", "--tail", "2")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert "req_b" in lines[0] and "anthropic/claude-haiku-4-5" in lines[0]
    assert "req_c" in lines[1] and "no answer" in lines[1] and "server" in lines[1]


def test_log_reads_a_ledger_path_from_the_config(cli, tmp_path, ledger):
    moved = tmp_path / "elsewhere.db"
    ledger.rename(moved)
    for suffix in ("-wal", "-shm"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    (tmp_path / "stellwerk.yaml").write_text(f"ledger: {{path: {moved}}}\n")
    result = cli("log", "--tail", "1")
    assert "req_c" in result.output


def test_chat_is_recorded_as_a_cli_request_and_shows_in_log(cli, tmp_path, monkeypatch):
    async def chat() -> int:
        async with FakeWorld(default=Reply.ok("4", usage=(21, 1))) as world:
            for name, value in world.env().items():
                monkeypatch.setenv(name, value)
            return await run_chat(None, "What is 2+2?", echo=lambda *a, **k: None)

    assert asyncio.run(chat()) == 0
    backend = SQLiteLedger(tmp_path / "state" / "ledger.db")
    [recorded] = backend.tail(5)
    backend.close()
    assert (recorded.client, recorded.input_tokens, recorded.output_tokens) == ("cli", 21, 1)
    assert recorded.prompt is None  # content is not kept by default
    assert f"{recorded.request_id}  cli  " in cli("log").output
