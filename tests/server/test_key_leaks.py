"""Canary keys against every surface: an upstream that echoes the key it was sent gets none of it
anywhere (issue 15, "Keys leak into stores and status").

The gateway runs in-process on SQLite state and ledger files, with canary keys in the environment
as a user's real keys would be. The fakes echo the canaries back in every way a provider does:
OpenAI's `Incorrect API key provided: sk-proj-****abcd`, a whole key in an error text, a key that
straddles the 300-character cut of an error message, a key in an error event of a running stream
(both formats). Afterwards no part of a canary (any 8 characters of it past the kind's prefix)
may be found in the answers (plain and streamed),
the log records, `state.db`, `ledger.db`, `/api/status`, `/metrics`, the dashboard's API,
the output of `status --json`,
`log`, `stats`, `check` and `probe`, or the budget webhook's payloads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

import stellwerk.testing.anthropic as fake_anthropic
from stellwerk.cli import main
from stellwerk.router import Router
from stellwerk.server import create_app
from stellwerk.testing._server import Reply
from stellwerk.testing.anthropic import anthropic_error, stream_error
from stellwerk.testing.openai import raw_stream
from stellwerk.testing.world import KEYS, FakeWorld

# Real-length keys; the part after the kind's prefix is what must never show, nor its last 4.
ANTHROPIC_KEY = "sk-ant-api03-" + "CANARYant" + "aN7b" * 22 + "ZzQw-AA"
OPENAI_KEY = "sk-proj-" + "CANARYoai" + "oP4q" * 36 + "XyWv"
CANARIES = (ANTHROPIC_KEY, OPENAI_KEY)
HI = [{"role": "user", "content": "hi"}]


def leaks(text: str, keys: Iterable[str] = CANARIES) -> list[str]:
    """Every part of a canary found in `text`: 8-character windows of its secret part. (The
    credential's masked form, `sk-…XyWv`, is how status names a key on purpose: allowed.)"""
    found = []
    for key in keys:
        body = key.removeprefix("sk-ant-api03-").removeprefix("sk-proj-")
        windows = {body[i : i + 8] for i in range(len(body) - 7)}
        found += sorted(w for w in windows if w in text)
    return found


def assert_clean(where: str, text: str) -> None:
    assert "CANARY" not in text and not leaks(text), f"{where} leaks {leaks(text)[:3]}: {text!r}"


def long_echo(key: str, before: int = 290) -> str:
    """An error text whose key starts `before` characters in: it straddles the 300-char cut."""
    lead = "Your request was refused by the upstream provider for a reason it explains here. "
    return (lead * 10)[: before - len("invalid x-api-key: ")] + f"invalid x-api-key: {key}"


class Hook:
    """A webhook receiver that keeps every body."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.text())
        return web.Response(status=204)


@pytest.fixture
async def world() -> AsyncIterator[FakeWorld]:
    async with FakeWorld() as w:
        yield w


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = Hook()
    await receiver.server.start_server()
    yield receiver
    await receiver.server.close()


@pytest.fixture
def setup(tmp_path: Path, world: FakeWorld, hook: Hook, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config file and the environment: canary keys, every provider on its fake."""
    env = {**world.env(), "ANTHROPIC_API_KEY": ANTHROPIC_KEY, "OPENAI_API_KEY": OPENAI_KEY}
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STELLWERK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    config = {
        "stack": ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "ollama/qwen3-4b"],
        "tasks": {
            "simple": {
                "primary": "openai/gpt-4o-mini",
                "fallbacks": ["anthropic/claude-haiku-4-5"],
            }
        },
        "cooldowns": {"breaker": 0},  # only the 401s below cool anything down: `disabled`
        "providers": {"openai": {"billing_cooldown": 0}},
        "state": {"backend": "sqlite", "path": str(tmp_path / "state" / "state.db")},
        "budgets": {
            "limits": [{"window": "daily", "tokens": 100_000}],
            "warn_at": 0.0001,  # the first answer crosses it: one webhook call
            "webhook": str(hook.server.make_url("/hook")),
        },
    }
    path = tmp_path / "stellwerk.yaml"
    path.write_text(yaml.safe_dump(config))

    def echoing(headers: Any, key: str | None) -> Any:  # Anthropic's 401 with the key in it
        given = headers.get("x-api-key", "")
        if key is not None and given != key:
            return 401, "authentication_error", f"invalid x-api-key: {given}"
        return None

    monkeypatch.setattr(fake_anthropic, "_auth_problem", echoing)
    return path


def _openai_echo(status: int, key: str) -> Reply:
    message = f"Incorrect API key provided: {key}. You can find your API key at https://x.y."
    body = {"error": {"message": message, "type": "invalid_request_error", "code": "x"}}
    return Reply.error(status, body)


def _stream_error_openai(key: str) -> Reply:
    first = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}],
    }
    error = {"error": {"message": f"backend rejected key {key}", "type": "server_error"}}
    body = f"data: {json.dumps(first)}\n\ndata: {json.dumps(error)}\n\n".encode()
    return raw_stream(body)


def _dump(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


async def test_no_part_of_an_echoed_key_reaches_any_surface(
    setup: Path, world: FakeWorld, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    openai, anthropic = world.fakes["openai"], world.fakes["anthropic"]
    router = Router.from_config(setup)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(router)))
    await client.start_server()
    seen: list[tuple[str, str]] = []
    try:
        # an answer that crosses the budget's warning (webhook), after a failure echoing a key
        openai.push(_openai_echo(429, OPENAI_KEY + " insufficient_quota"))
        answer = await client.post(
            "/v1/chat/completions", json={"model": "auto:simple", "messages": HI}
        )
        seen.append(("fallback answer", await answer.text() + str(dict(answer.headers))))
        assert answer.status == 200

        # a stream that breaks after its first chunk, the key in the error frame (both formats)
        openai.push(_stream_error_openai(OPENAI_KEY))
        streamed = await client.post(
            "/v1/chat/completions", json={"model": "auto:simple", "messages": HI, "stream": True}
        )
        seen.append(("openai stream", await streamed.text()))
        anthropic.push(stream_error("api_error", long_echo(ANTHROPIC_KEY), text="Hi"))
        streamed = await client.post(
            "/v1/messages",
            json={
                "model": "anthropic/claude-haiku-4-5",
                "max_tokens": 20,
                "messages": HI,
                "stream": True,
            },
        )
        seen.append(("anthropic stream", await streamed.text()))
        assert "event: error" in seen[-1][1]

        # the caller's own 400, with the key in its text
        openai.push(
            Reply.error(
                400,
                {
                    "error": {
                        "message": f"bad field near {OPENAI_KEY}",
                        "type": "invalid_request_error",
                        "param": "x",
                        "code": "y",
                    }
                },
            )
        )
        refused = await client.post(
            "/v1/chat/completions", json={"model": "auto:simple", "messages": HI}
        )
        assert refused.status == 400
        seen.append(("caller's 400", await refused.text()))

        # both keys rejected, echoed (Anthropic's straddling the 300-char cut): 502, both disabled
        openai.push(_openai_echo(401, OPENAI_KEY))
        anthropic.push(anthropic_error(401, "authentication_error", long_echo(ANTHROPIC_KEY)))
        world.fakes["ollama"].push(Reply.error(500, {"error": f"no: {OPENAI_KEY}"}))
        for path, body in (
            ("/v1/chat/completions", {"model": "auto:simple", "messages": HI}),
            ("/v1/messages", {"model": "auto:simple", "max_tokens": 20, "messages": HI}),
        ):
            failed = await client.post(path, json=body)
            seen.append(
                (f"{path} {failed.status}", await failed.text() + str(dict(failed.headers)))
            )
        assert [seen[-2][0], seen[-1][0]] == [
            "/v1/chat/completions 502",  # every attempt listed, with its message
            "/v1/messages 200",  # the local model, the two keys skipped as disabled
        ], seen[-2:]
        status = await client.get("/api/status")
        text = await status.text()
        assert "auth" in text  # the cooldowns are there, their details scrubbed
        seen.append(("/api/status", text))
        seen.append(("/metrics", await (await client.get("/metrics")).text()))
        seen.append(("/api/dashboard", await (await client.get("/api/dashboard")).text()))
        for window in ("24h", "7d"):
            stats = await client.get("/api/stats", params={"window": window})
            seen.append((f"/api/stats {window}", await stats.text()))
        feed = await client.get("/api/events")
        events = b""
        while events.count(b"event: decision") < 5:  # the backlog: every decision above
            events += await asyncio.wait_for(feed.content.readany(), 5)
        feed.close()
        seen.append(("/api/events", events.decode()))
    finally:
        await client.close()
        await router.aclose()

    for _ in range(100):  # the webhook posts in the background
        if hook.bodies:
            break
        await asyncio.sleep(0.02)
    assert hook.bodies, "the budget webhook was never called"
    seen += [("webhook", body) for body in hook.bodies]

    # the CLI, on the same files; `check` and `probe` meet fakes that echo the key they get
    openai.key = anthropic.key = "sk-the-right-key-is-another-one-0000"  # type: ignore[attr-defined]
    runner = CliRunner()
    for args in (
        ["status", "--json"],
        ["status"],
        ["log"],
        ["stats"],
        ["stats", "--json"],
        ["check"],
        ["probe"],
    ):
        argv = [*args, "--config", str(setup)]  # in a thread: the fakes run on this loop
        result = await asyncio.to_thread(runner.invoke, main, argv, catch_exceptions=False)
        seen.append((f"stellwerk {' '.join(args)}", result.output))
    assert "authentication" in seen[-2][1] or "401" in seen[-2][1] or "auth" in seen[-2][1]

    state_dir = setup.parent / "state"
    seen.append(("state.db", _dump(state_dir / "state.db")))
    seen.append(("ledger.db", _dump(state_dir / "ledger.db")))
    seen.append(
        ("log records", "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records))
    )
    seen.append(("log text", caplog.text))

    dirty = {where: leaks(text)[:3] for where, text in seen if "CANARY" in text or leaks(text)}
    assert not dirty, sorted(dirty)
    shown = dict(seen)  # the echoes did arrive, masked: the surfaces were exercised
    exercised = ("anthropic stream", "/api/status", "/api/dashboard", "/api/events")
    for where in (*exercised, "stellwerk log", "ledger.db", "state.db"):
        assert "sk-ant-" in shown[where] or "sk-proj-" in shown[where], where
