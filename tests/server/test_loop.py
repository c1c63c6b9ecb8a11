"""The gateway calling itself (issue 15): every upstream request carries the hop marker, a request
carrying this gateway's own marker is refused in the caller's format, and `serve` refuses to start
when a provider's base URL is its own listen address."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stellwerk.config import policy_from_dict
from stellwerk.errors import StellwerkError
from stellwerk.router import Router
from stellwerk.server import create_app
from stellwerk.server.run import refuse_self_reference
from stellwerk.state import MemoryStore
from stellwerk.wire.hop import HOP_HEADER, INSTANCE, MAX_HOPS

from .test_hostile import ANTHROPIC, OPENAI, _body, assert_error, post

ENDPOINTS = [OPENAI, ANTHROPIC]


@pytest.mark.parametrize(
    ("model", "fake"),
    [
        ("openai/gpt-4o-mini", "openai"),
        ("anthropic/claude-haiku-4-5", "anthropic"),
        ("ollama/qwen3-4b", "ollama"),
    ],
)
async def test_every_upstream_request_carries_the_marker(gw, model, fake):
    response = await post(gw, OPENAI, _body(OPENAI, model=model))
    assert response.status == 200
    [received] = gw.world.fakes[fake].received
    assert received.headers[HOP_HEADER] == INSTANCE


async def test_the_marker_carries_the_gateways_passed_before(gw):
    response = await gw.chat({}, headers={HOP_HEADER: "sw-other"})
    assert response.status == 200
    [received] = gw.world.fakes["openai"].received
    assert received.headers[HOP_HEADER] == f"sw-other, {INSTANCE}"


@pytest.mark.parametrize("path", [*ENDPOINTS, "/v1/messages/count_tokens", "/api/status"])
async def test_a_request_with_this_gateways_own_marker_is_refused(gw, path):
    headers = {HOP_HEADER: f"sw-other, {INSTANCE}"}
    if path == "/api/status":
        response = await gw.client.get(path, headers=headers)
    else:
        response = await gw.client.post(path, json=_body(path), headers=headers)
    error = await assert_error(response, path, 508)
    assert "request loop" in error["message"] and "OPENAI_BASE_URL" in error["message"]
    assert response.headers["x-should-retry"] == "false"
    assert gw.world.requests() == 0


async def test_too_many_hops_are_refused(gw):
    marker = ", ".join(f"sw-{i}" for i in range(MAX_HOPS))
    response = await gw.chat({}, headers={HOP_HEADER: marker})
    error = await assert_error(response, OPENAI, 508)
    assert f"already passed {MAX_HOPS}" in error["message"]
    huge = await gw.chat({}, headers={HOP_HEADER: "x" * 5000})
    await assert_error(huge, OPENAI, 508)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_gateway_whose_provider_is_itself_answers_at_once(world):
    """OPENAI_BASE_URL pointing at the gateway: one nested request, refused, then the fallback
    answers; no tower of nested decisions, and no model disabled by a `model_not_found`."""
    port = _free_port()
    env = {**world.env(), "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"}
    config = {
        "tasks": {
            "simple": {"primary": "openai/gpt-4o-mini", "fallbacks": ["anthropic/claude-haiku-4-5"]}
        }
    }
    router = Router(policy_from_dict(config, env=env, source="<loop>"), MemoryStore())
    decisions: list[Any] = []

    async def record(decision: Any) -> None:
        decisions.append(decision)

    router.sink = record
    client = TestClient(TestServer(create_app(router), port=port))
    await client.start_server()
    try:
        response = await asyncio.wait_for(
            client.post(OPENAI, json=_body(OPENAI, model="auto:simple")), 10
        )
        assert response.status == 200, await response.text()
        assert response.headers["x-stellwerk-model"] == "anthropic/claude-haiku-4-5"
        assert len(decisions) <= 2  # the outer request and at most the refused inner one
    finally:
        await client.close()
        await router.aclose()


@pytest.mark.parametrize(
    ("base_url", "listen"),
    [
        ("http://127.0.0.1:4711/v1", "http://127.0.0.1:4711"),
        ("http://localhost:4711/v1", "http://127.0.0.1:4711"),
        ("http://127.0.0.1:4711", "http://0.0.0.0:4711"),
        ("http://[::1]:4711/v1", "http://[::1]:4711"),
        ("http://localhost:80", "http://127.0.0.1:80"),
    ],
)
def test_serve_refuses_a_provider_pointing_at_itself(base_url, listen):
    policy = policy_from_dict({}, env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": base_url})
    with pytest.raises(StellwerkError, match="is this gateway's own address"):
        refuse_self_reference(policy, listen)


@pytest.mark.parametrize(
    ("base_url", "listen"),
    [
        ("http://127.0.0.1:4712/v1", "http://127.0.0.1:4711"),
        ("https://api.openai.com/v1", "http://127.0.0.1:443"),
        ("http://10.0.0.5:4711/v1", "http://127.0.0.1:4711"),
    ],
)
def test_serve_starts_when_no_provider_points_at_it(base_url, listen):
    policy = policy_from_dict({}, env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": base_url})
    refuse_self_reference(policy, listen)


async def test_serve_itself_refuses_to_start(tmp_path, monkeypatch, world):
    import logging

    from stellwerk.server import run

    port = _free_port()
    for name, value in world.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://localhost:{port}/v1")
    monkeypatch.setenv("STELLWERK_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(run, "preload", lambda: None)
    config = tmp_path / "stellwerk.yaml"
    config.write_text("{}\n")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with pytest.raises(StellwerkError, match="openai's base URL .* is this gateway's own"):
            await run.serve(config, host="127.0.0.1", port=port, pid_file=tmp_path / "pid")
    finally:
        root.handlers[:], root.level = handlers, level
    assert not (tmp_path / "pid").exists()
