"""`stellwerk check` and `stellwerk emergency`: what a user runs when something seems wrong."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner

from stellwerk.check import render, run_check
from stellwerk.cli import main
from stellwerk.testing.world import KEYS, FakeWorld


@pytest.fixture
async def world() -> AsyncIterator[FakeWorld]:
    async with FakeWorld() as w:
        yield w


async def test_a_healthy_world_checks_every_key_and_lists_ollamas_models(world):
    world.fakes["ollama"].loaded["qwen3:4b"] = 8192
    report = await run_check(world.policy())
    assert report.healthy, report.problems
    checks = {c.name: c for c in report.providers}
    assert all(c.ok for c in checks.values())
    assert [k.id for k in checks["anthropic"].keys] == ["anthropic#1"]
    ollama = checks["ollama"].ollama
    assert ollama is not None and ollama.version == "0.12.6"
    qwen = next(m for m in ollama.installed if m.name == "qwen3:4b")
    assert (qwen.parameters, qwen.quantization, qwen.context_length) == ("4.0B", "Q4_K_M", 40960)
    assert ollama.loaded == ("qwen3:4b",)
    assert [w.id for w in ollama.wanted] == [
        "ollama/deepseek-r1",
        "ollama/qwen3-4b",
        "ollama/codellama",
    ]
    text = render(report)
    assert text.splitlines()[-1] == "healthy"
    assert "qwen3:4b                 4.0B    Q4_K_M   ctx 40960  (loaded)" in text


async def test_keys_are_checked_with_a_cheap_get_and_never_shown(world):
    report = await run_check(world.policy())
    text = render(report) + json.dumps(report.to_json())
    for secret in KEYS.values():
        assert secret not in text
    assert "sk-…ghij" in text  # masked: enough to tell keys apart
    assert [r.path for r in world.fakes["anthropic"].received] == []  # no tokens spent
    assert world.fakes["ollama"].received[0].path == "/api/version"


async def test_a_refused_key_makes_the_check_fail(world):
    world.fakes["openrouter"].key = "sk-or-v1-the-real-one"
    report = await run_check(world.policy())
    assert not report.healthy
    assert report.problems == ["openrouter: openrouter#1 auth: HTTP 401: User not found."]


async def test_a_provider_without_a_key_is_skipped_not_failed(world):
    policy = world.policy({"providers": {"openai-codex": {"keys": []}}})
    report = await run_check(policy)
    codex = next(c for c in report.providers if c.name == "openai-codex")
    assert (codex.ok, codex.detail) == (None, "no key: skipped (set OPENAI_CODEX_API_KEY)")
    assert report.healthy


async def test_a_missing_model_comes_with_the_pull_line(world):
    del world.fakes["ollama"].models["codellama:7b"]
    report = await run_check(world.policy())
    assert report.problems == [
        "ollama: ollama/codellama is not installed (run: ollama pull codellama:7b)"
    ]
    assert "MISSING: ollama pull codellama:7b" in render(report)


async def test_a_stopped_ollama_makes_the_check_fail(world):
    await world.fakes["ollama"].stop()
    report = await run_check(world.policy())
    (problem,) = report.problems
    url = world.fakes["ollama"].url
    assert problem == f"ollama: Ollama is not running at {url} (start it, or set OLLAMA_HOST)"
    assert "Connect call failed" not in render(report)


async def test_check_json_and_exit_status_from_the_command_line(world, tmp_path):
    env = {**os.environ, **world.env(), "STELLWERK_STATE_DIR": str(tmp_path)}
    env.pop("STELLWERK_CONFIG", None)
    out, err, code = await _run(env, "check", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["healthy"] is True
    assert {p["name"] for p in data["providers"]} >= {"anthropic", "ollama"}
    await world.fakes["ollama"].stop()
    out, _, code = await _run(env, "check")
    assert code == 1
    assert "unhealthy: 1 problem(s)" in out


def test_emergency_on_and_off_by_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("STELLWERK_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("STELLWERK_CONFIG", raising=False)
    runner = CliRunner()
    on = runner.invoke(main, ["emergency", "on"])
    assert on.exit_code == 0 and on.output == "emergency mode on: local models only\n"
    again = runner.invoke(main, ["emergency", "on"])
    assert again.output == "emergency mode on: local models only (it already was)\n"
    status = runner.invoke(main, ["status"]).output
    assert "mode      emergency since " in status
    assert "(by hand (stellwerk emergency on))" in status
    data = json.loads(runner.invoke(main, ["status", "--json"]).output)
    assert data["emergency"] is True
    assert data["emergency_reason"] == "by hand (stellwerk emergency on)"
    off = runner.invoke(main, ["emergency", "off"])
    assert off.output == "emergency mode off: normal routing\n"
    assert "emergency mode ended" in runner.invoke(main, ["status"]).output
    assert runner.invoke(main, ["emergency", "maybe"]).exit_code == 2


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
