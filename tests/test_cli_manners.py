"""CLI manners (issue 16): `chat` from stdin, streamed only on a terminal, `--json` for `chat` and
`log`, colour that honours NO_COLOR, `reset` of an unknown target, why no probe is due, and
cooldown times in the local time zone whatever `budgets.timezone` says."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from stellwerk.cli import main
from stellwerk.config import load_policy, policy_from_dict
from stellwerk.failures import FailureClass
from stellwerk.ledger import SQLiteLedger
from stellwerk.state import open_store
from stellwerk.state.base import Cooldown, Snapshot, credential_key
from stellwerk.status import status_data
from stellwerk.testing._server import Reply
from stellwerk.testing.world import KEYS, FakeWorld

from .test_cli_ledger import ROWS

ANSI = "\x1b["


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STELLWERK_STATE_DIR", str(tmp_path / "state"))
    for name in [*KEYS, "STELLWERK_CONFIG", "NO_COLOR"]:
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, input: str | None = None, color: bool = False):
        return CliRunner().invoke(main, list(args), input=input, color=color)

    return run


def _env(world: FakeWorld, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, **world.env(), "STELLWERK_STATE_DIR": str(tmp_path)}
    env.pop("STELLWERK_CONFIG", None)
    return env


async def _run(env: dict[str, str], *args: str, stdin: str = "") -> tuple[str, str, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stellwerk",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode())
    return out.decode(), err.decode(), proc.returncode or 0


def _sent(world: FakeWorld) -> list[dict]:
    return [r.json for f in world.fakes.values() for r in f.received if isinstance(r.json, dict)]


# -- chat ------------------------------------------------------------------------------------


async def test_chat_reads_the_prompt_from_stdin_and_does_not_stream_into_a_pipe(tmp_path):
    async with FakeWorld(default=Reply.ok("Lima.")) as world:
        out, err, code = await _run(
            _env(world, tmp_path), "chat", "--model", "haiku", stdin="Capital of Peru?\n"
        )
        assert code == 0, err
        assert out.strip() == "Lima."
        assert "answered by anthropic/claude-haiku-4-5" in err
        [sent] = _sent(world)
        assert "Capital of Peru?" in json.dumps(sent)
        assert not sent.get("stream")  # piped: the whole answer at once


async def test_chat_streams_by_default_on_a_terminal(tmp_path):
    async with FakeWorld(default=Reply.ok("Streamed.")) as world:
        leader, follower = pty.openpty()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "stellwerk",
            "chat",
            "--model",
            "haiku",
            "Say something",
            env=_env(world, tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=asyncio.subprocess.PIPE,
        )
        os.close(follower)
        _, err = await proc.communicate()
        output = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        os.close(leader)
        assert proc.returncode == 0, err.decode()
        assert b"Streamed." in output
        [sent] = _sent(world)
        assert sent.get("stream") is True


async def test_chat_json_prints_one_object_with_the_answer_and_the_decision(tmp_path):
    async with FakeWorld(default=Reply.ok("4")) as world:
        out, err, code = await _run(_env(world, tmp_path), "chat", "--json", "What is 2+2?")
        assert code == 0, err
        data = json.loads(out)
        assert data["answer"] == "4"
        assert data["model"] == data["decision"]["answered_by"]
        assert data["summary"].startswith("answered by ")
        assert err == ""  # nothing else on stderr: the summary is in the object


def test_chat_without_a_prompt_says_how_to_give_one(cli):
    result = cli("chat", input="   \n")
    assert result.exit_code == 2
    assert "the prompt is empty" in result.output


def test_chat_json_and_stream_do_not_go_together(cli):
    result = cli("chat", "--json", "--stream", "hi")
    assert result.exit_code == 2 and "not with --stream" in result.output


# -- log --json ------------------------------------------------------------------------------


def test_log_json_prints_one_object_per_line(cli, tmp_path):
    backend = SQLiteLedger(tmp_path / "state" / "ledger.db")
    backend.write(ROWS)
    backend.close()
    result = cli("log", "--json", "--tail", "2")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [d["request_id"] for d in lines] == ["req_b", "req_c"]
    assert lines[0]["answered_by"] == "anthropic/claude-haiku-4-5"
    assert lines[1]["failures"] == [{"target": "openai/gpt-4o-mini", "failure": "server"}]
    assert datetime.fromisoformat(lines[0]["time"]).timestamp() == pytest.approx(ROWS[2].ts)


# -- colour ----------------------------------------------------------------------------------


def test_colour_on_a_terminal(cli):
    assert ANSI in cli("status", color=True).output
    assert ANSI not in cli("status").output  # not a terminal: plain


def test_no_color_switches_colour_off(cli, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert ANSI not in cli("status", color=True).output
    Path("bad.yaml").write_text("routing: {mdoe: auto}\n")
    result = cli("--config", "bad.yaml", "status", color=True)
    assert result.exit_code == 2 and ANSI not in result.output


def test_errors_are_red_on_a_terminal(cli):
    Path("bad.yaml").write_text("routing: {mdoe: auto}\n")
    result = cli("--config", "bad.yaml", "status", color=True)
    assert result.exit_code == 2
    assert result.output.startswith(ANSI) and "did you mean 'mode'?" in result.output


# -- reset -----------------------------------------------------------------------------------


def test_reset_of_an_unknown_target_is_an_error_with_a_suggestion(cli):
    result = cli("reset", "antropic")
    assert result.exit_code == 2
    assert "'antropic' is not a provider, key or model" in result.output
    assert "did you mean anthropic?" in result.output
    assert "cleared" not in result.output


@pytest.mark.parametrize("target", ["anthropic", "openai#1", "ollama#local", "haiku", ""])
def test_reset_of_a_known_target_clears(cli, target, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-0123456789abcdef")
    result = cli("reset", *([target] if target else []))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("cleared 0 cooldowns")


# -- probe -----------------------------------------------------------------------------------


def _cool(reason: FailureClass, key: str = "cred:openai#1") -> None:
    async def strike() -> None:
        store = open_store(load_policy().state)
        try:
            await store.strike(key, reason, time.time(), lambda _: 7200, "test")
        finally:
            await store.close()

    asyncio.run(strike())


def test_probe_with_nothing_cooling_says_so(cli):
    result = cli("probe")
    assert result.exit_code == 0
    assert result.output == "no probe due: no key is cooling down\n"


def test_probe_says_billing_is_not_probed_and_reset_is_the_way(cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-0123456789abcdef")
    _cool(FailureClass.BILLING)
    result = cli("probe")
    assert result.exit_code == 0
    assert result.output.startswith("no probe due\n")
    assert "cred:openai#1: billing cooldowns are not probed" in result.output
    assert "after topping up, run `stellwerk reset openai`" in result.output


def test_probe_says_when_the_first_probe_is_due(cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-0123456789abcdef")
    _cool(FailureClass.RATE_LIMIT)
    result = cli("probe")
    assert "cred:openai#1: first probe due at " in result.output


# -- times -----------------------------------------------------------------------------------


@pytest.fixture
def local_zone(monkeypatch):
    """The process runs in Berlin (time.tzset), whatever the machine says."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_cooldowns_show_in_the_local_zone_whatever_the_budget_zone(local_zone):
    now = 1_764_000_000.0  # 2025-11-24 16:00 UTC, 17:00 in Berlin
    until = now + 2 * 3600
    key = credential_key("openai#1")
    snapshot = Snapshot(now, cooldowns={key: Cooldown(key, until, FailureClass.BILLING, 1, now)})
    shown = []
    for zone in ("UTC", "Asia/Tokyo", "America/New_York"):
        policy = policy_from_dict({"budgets": {"timezone": zone}}, env={})
        [cooling] = status_data(policy, snapshot, ZoneInfo(zone))["cooldowns"]
        shown.append((cooling["text"], cooling["until"]))
    assert len(set(shown)) == 1  # the budget zone changes nothing
    text, iso = shown[0]
    assert text.startswith("cooldown until 19:00 (billing, 2h left)")
    assert iso == "2025-11-24T19:00:00+01:00"


def test_route_skip_reasons_use_the_local_zone_too(local_zone, cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-0123456789abcdef")
    Path("stellwerk.yaml").write_text("budgets: {timezone: Asia/Tokyo}\n")
    _cool(FailureClass.BILLING)
    route = json.loads(cli("route", "--json", "--model", "openai/gpt-4o-mini", "hi").output)
    reason = next(s["reason"] for s in route["skipped"] if s["target"] == "openai/gpt-4o-mini")
    status = json.loads(cli("status", "--json").output)["cooldowns"][0]["text"]
    clock = status.split("cooldown until ")[1].split(" ")[0]
    assert f"cooldown until {clock} " in reason
