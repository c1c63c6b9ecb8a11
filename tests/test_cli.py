"""The command line, as a user types it: outputs, exit codes, and no tracebacks."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from stellwerk.cli import main
from stellwerk.testing._server import Reply
from stellwerk.testing.anthropic import CREDIT_TOO_LOW, anthropic_error
from stellwerk.testing.world import KEYS, FakeWorld

DEV = Path(__file__).resolve().parents[2] / "shared" / "routing" / "dev.jsonl"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STELLWERK_STATE_DIR", str(tmp_path / "state"))
    for name in [*KEYS, "STELLWERK_CONFIG"]:
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return run


def test_route_prints_class_chain_and_skips(cli):
    result = cli("route", "Write a Python function that reverses a linked list")
    assert result.exit_code == 0
    assert "task      code" in result.output
    assert "openai-codex/gpt-5.3-codex" in result.output
    assert "no key" in result.output  # no keys in this environment


def test_route_json_has_the_documented_fields(cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-test-0123456789abcdef")
    result = cli("route", "--json", "What is the capital of Australia?")
    data = json.loads(result.output)
    assert {"task", "confidence", "reason", "chain", "skipped"} <= set(data)
    assert data["task"] == "simple"
    assert data["chain"][0] == "openai/gpt-4o-mini"
    assert {"target": "anthropic/claude-haiku-4-5", "reason": "no key"} in data["skipped"]


def test_route_jsonl_answers_every_line_even_bad_ones(cli):
    lines = [
        json.dumps({"prompt": "Prove that there are infinitely many primes."}),
        json.dumps({"messages": [{"role": "user", "content": "Reply HEARTBEAT_OK if idle."}]}),
        "{not json",
        json.dumps({"prompt": "hi", "model": "auto:code"}),
    ]
    result = cli("route", "--jsonl", input="\n".join(lines) + "\n")
    out = [json.loads(line) for line in result.output.splitlines()]
    assert len(out) == 4
    assert out[0]["task"] == "reasoning"
    assert "error" in out[2]
    assert out[3]["task"] == "code" and out[3]["source"] == "explicit"


def test_route_named_model_starts_the_chain(cli):
    result = cli("route", "--json", "--model", "qwen", "hello")
    assert json.loads(result.output)["chain"][0] == "ollama/qwen3-4b"


def test_route_unknown_model_is_a_clear_error(cli):
    result = cli("route", "--model", "gtp-4o-mini", "hello")
    assert result.exit_code == 1
    assert "gtp-4o-mini" in result.output and "Traceback" not in result.output


def test_config_init_validate_show(cli, monkeypatch):
    assert cli("config", "init").exit_code == 0
    assert Path("stellwerk.yaml").exists()
    assert cli("config", "init").exit_code == 1  # will not overwrite
    result = cli("config", "validate", "stellwerk.yaml")
    assert result.exit_code == 0 and "ok" in result.output
    assert "(unavailable): anthropic, openai, openai-codex, openrouter" in result.output
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-secretsecretsecret9876")
    shown = cli("config", "show").output
    assert "secretsecret" not in shown and "sk-…9876" in shown
    assert "anthropic/claude-haiku-4-5" in shown


def test_bad_config_exits_2_with_the_key_path(cli):
    Path("bad.yaml").write_text(
        "tasks:\n  code:\n    fallbacks: [ollama/codellama, opnai/o3-mini]\n"
    )
    result = cli("config", "validate", "bad.yaml")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "stellwerk: config error: tasks.code.fallbacks[1]: unknown model 'opnai/o3-mini' "
        "(did you mean openai/o3-mini?)"
    )
    assert cli("route", "--config", "bad.yaml", "hi").exit_code == 2


def test_config_env_var_is_the_config_option(cli, monkeypatch):
    Path("shadow.yaml").write_text("routing:\n  mode: shadow\n")
    monkeypatch.setenv("STELLWERK_CONFIG", "shadow.yaml")
    data = json.loads(cli("route", "--json", "Reply HEARTBEAT_OK").output)
    assert data["mode"] == "shadow"


@pytest.mark.skipif(not DEV.exists(), reason="shared/routing/dev.jsonl not present")
def test_eval_classifier_prints_the_figures(cli):
    result = cli("eval-classifier", "--json", str(DEV))
    data = json.loads(result.output)
    assert data["macro_f1"] > 0.85


def test_status_and_reset_without_state(cli):
    result = cli("status")
    assert result.exit_code == 0
    assert "anthropic" in result.output and "cooldowns  none" in result.output
    assert cli("reset").output.strip() == "cleared 0 cooldowns"


async def test_chat_falls_back_and_says_why(tmp_path):
    """`stellwerk chat` as a real process against the fake providers."""
    async with FakeWorld(default=Reply.ok("Lima is the capital of Peru.")) as world:
        world.fakes["openai"].push(world.fakes["openai"].error("insufficient_quota"))
        env = {**os.environ, **world.env(), "STELLWERK_STATE_DIR": str(tmp_path)}
        env.pop("STELLWERK_CONFIG", None)
        out, err, code = await _run(env, "chat", "What is the capital of Peru?")
        assert code == 0, err
        assert out.strip() == "Lima is the capital of Peru."
        assert "answered by anthropic/claude-haiku-4-5" in err
        assert "openai/gpt-4o-mini failed: billing" in err
        status = json.loads((await _run(env, "status", "--json"))[0])
        assert [c["key"] for c in status["cooldowns"]] == ["cred:openai#1"]
        assert status["cooldowns"][0]["reason"] == "billing"
        assert "0123456789" not in json.dumps(status)  # keys stay masked
        out, _, _ = await _run(env, "reset", "openai")
        assert out.strip() == "cleared 1 cooldown for openai"


async def test_chat_streams(tmp_path):
    async with FakeWorld(default=Reply.ok("Streaming works fine.")) as world:
        world.fakes["anthropic"].push(anthropic_error(400, "invalid_request_error", CREDIT_TOO_LOW))
        env = {**os.environ, **world.env(), "STELLWERK_STATE_DIR": str(tmp_path)}
        out, err, code = await _run(env, "chat", "--stream", "--model", "haiku", "Say hi")
        assert code == 0, err
        assert out.strip() == "Streaming works fine."
        assert "anthropic/claude-haiku-4-5 failed: billing" in err


async def _run(env: dict[str, str], *args: str) -> tuple[str, str, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stellwerk",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return out.decode(), err.decode(), proc.returncode or 0
