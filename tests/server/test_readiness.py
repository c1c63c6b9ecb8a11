"""No silent dead gateway (issue 16): without a usable provider (no API key set, Ollama not
running) `serve` says so in a WARNING naming the variables to set, and `/readyz` answers 503."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stellwerk.config import policy_from_dict
from stellwerk.readiness import missing_keys_hint, unusable_reason
from stellwerk.router import Router
from stellwerk.server import create_app
from stellwerk.server.run import warn_if_unusable
from stellwerk.state import MemoryStore
from stellwerk.testing.world import FakeWorld


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dead_url() -> str:
    return f"http://127.0.0.1:{_closed_port()}"


async def _client(router: Router) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    client = TestClient(TestServer(create_app(router)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await router.aclose()


async def test_no_key_and_no_ollama_warns_at_start_and_readyz_is_503(dead_url, caplog):
    router = Router(policy_from_dict({}, env={"OLLAMA_HOST": dead_url}), MemoryStore())
    with caplog.at_level(logging.WARNING, logger="stellwerk.server"):
        reason = await warn_if_unusable(router)
    assert reason is not None
    warning = [r for r in caplog.records if r.name == "stellwerk.server"]
    assert len(warning) == 1 and warning[0].levelno == logging.WARNING
    text = warning[0].getMessage()
    for variable in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_CODEX_API_KEY"):
        assert variable in text
    assert "OPENROUTER_API_KEY" in text
    assert f"ollama is not running at {dead_url} (start it, or set OLLAMA_HOST)" in text
    async for client in _client(router):
        response = await client.get("/readyz")
        assert response.status == 503
        body = await response.json()
        assert body["status"] == "unavailable"
        assert body["reason"].startswith("no usable provider: no API key is set (set ")
        assert "OLLAMA_HOST" in body["reason"]
        assert body["config"] == "<dict>"


async def test_no_key_but_ollama_running_is_ready_and_quiet(caplog):
    async with FakeWorld() as world:
        env = {"OLLAMA_HOST": world.fakes["ollama"].url}
        router = Router(policy_from_dict({}, env=env), MemoryStore())
        with caplog.at_level(logging.WARNING, logger="stellwerk.server"):
            assert await warn_if_unusable(router) is None
        assert not [r for r in caplog.records if r.name == "stellwerk.server"]
        async for client in _client(router):
            response = await client.get("/readyz")
            assert response.status == 200
            assert (await response.json())["status"] == "ready"


async def test_a_key_is_enough_and_nothing_is_pinged(dead_url, caplog):
    env = {"OLLAMA_HOST": dead_url, "OPENROUTER_API_KEY": "sk-or-v1-0123456789abcdef"}
    router = Router(policy_from_dict({}, env=env), MemoryStore())
    with caplog.at_level(logging.WARNING):
        assert await warn_if_unusable(router) is None
    assert not caplog.records  # Ollama was not even asked
    async for client in _client(router):
        response = await client.get("/readyz")
        assert response.status == 200


def test_the_hint_names_only_the_providers_without_a_key():
    policy = policy_from_dict({}, env={"ANTHROPIC_API_KEY": "sk-ant-0123456789abcdef"})
    hint = missing_keys_hint(policy)
    assert hint == "set OPENAI_API_KEY, OPENAI_CODEX_API_KEY or OPENROUTER_API_KEY"
    assert unusable_reason(policy) is None
