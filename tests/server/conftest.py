"""An in-process gateway in front of the fake upstreams, and helpers to talk to it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stellwerk.decision import Decision
from stellwerk.router import Router
from stellwerk.server import create_app
from stellwerk.state import MemoryStore
from stellwerk.testing.world import FakeWorld

# simple: OpenAI first, Anthropic second, a local model last
CONFIG: dict[str, Any] = {
    "stack": ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "ollama/qwen3-4b"],
    "tasks": {
        "simple": {"primary": "openai/gpt-4o-mini", "fallbacks": ["anthropic/claude-haiku-4-5"]}
    },
}
HI = [{"role": "user", "content": "hi"}]


@dataclass
class Gateway:
    """A running in-process gateway, its router and every decision it recorded."""

    client: TestClient[Any, Any]
    router: Router
    world: FakeWorld
    decisions: list[Decision] = field(default_factory=list)

    async def record(self, decision: Decision) -> None:
        self.decisions.append(decision)

    async def chat(self, body: dict[str, Any], **kw: Any) -> Any:
        """POST /v1/chat/completions with `auto:simple` and one user turn unless given."""
        return await self.client.post("/v1/chat/completions", json=_openai(body), **kw)

    async def messages(self, body: dict[str, Any], **kw: Any) -> Any:
        """POST /v1/messages with `auto:simple`, max_tokens and one user turn unless given."""
        return await self.client.post("/v1/messages", json=_anthropic(body), **kw)

    async def wait_decisions(self, count: int = 1) -> list[Decision]:
        """The decisions once `count` are recorded (bounded wait: the sink runs at the end)."""
        for _ in range(500):
            if len(self.decisions) >= count:
                return self.decisions
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} decisions, got {len(self.decisions)}")

    @staticmethod
    def sse_data(text: str) -> list[Any]:
        """The JSON payloads of the `data:` lines of an SSE body (`[DONE]` kept as a string)."""
        out: list[Any] = []
        for line in text.splitlines():
            if line.startswith("data: "):
                payload = line[len("data: ") :]
                out.append(payload if payload == "[DONE]" else json.loads(payload))
        return out

    @staticmethod
    def sse_events(text: str) -> list[str]:
        """The `event:` names of an SSE body, in order."""
        return [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")]


def _openai(body: dict[str, Any]) -> dict[str, Any]:
    return {"model": "auto:simple", "messages": HI, **body}


def _anthropic(body: dict[str, Any]) -> dict[str, Any]:
    return {"model": "auto:simple", "max_tokens": 100, "messages": HI, **body}


MakeGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def world() -> AsyncIterator[FakeWorld]:
    async with FakeWorld() as w:
        yield w


@pytest.fixture
async def make_gateway(world: FakeWorld) -> AsyncIterator[MakeGateway]:
    made: list[Gateway] = []

    async def make(raw: dict[str, Any] | None = None, **app_kwargs: Any) -> Gateway:
        router = Router(world.policy(raw if raw is not None else CONFIG), MemoryStore())
        gateway = Gateway(TestClient(TestServer(create_app(router, **app_kwargs))), router, world)
        router.sink = _tee(gateway.record, router.sink)
        await gateway.client.start_server()
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        await gateway.client.close()
        await gateway.router.aclose()


@pytest.fixture
def config() -> dict[str, Any]:
    """The gateway tests' routing config (simple: OpenAI, then Anthropic, then Ollama)."""
    return dict(CONFIG)


@pytest.fixture
async def gw(make_gateway: MakeGateway) -> Gateway:
    return await make_gateway()


def _tee(
    first: Callable[[Decision], Awaitable[None]], second: Callable[[Decision], Awaitable[None]]
) -> Callable[[Decision], Awaitable[None]]:
    async def sink(decision: Decision) -> None:
        await first(decision)
        await second(decision)

    return sink
