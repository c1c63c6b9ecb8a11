"""A property-based fuzz of the gateway's edge (issue 15), with hypothesis.

Both chat endpoints and the admin endpoints (`/api/status`, `/api/emergency`, `/v1/models`,
`/v1/messages/count_tokens`) get valid requests with fields replaced by arbitrary JSON, messages
and content blocks of arbitrary shape, deep nesting, arbitrary JSON, raw bytes, and odd headers
(compression, the Anthropic version, task, session, hop marker). It passes when no answer is a
5xx (the fake upstreams answer every request well, so there is no real upstream 5xx to pass
through), every error is in the caller's own format, and the gateway still answers afterwards.

CI runs `STELLWERK_FUZZ_EXAMPLES` examples (default 150, a few seconds). A long run:

    STELLWERK_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/server/test_fuzz.py -q

(`STELLWERK_FUZZ_SEED=<n>` repeats one run; hypothesis prints the failing example.)
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from stellwerk.router import Router
from stellwerk.server import create_app
from stellwerk.state import MemoryStore
from stellwerk.testing.world import FakeWorld

EXAMPLES = int(os.environ.get("STELLWERK_FUZZ_EXAMPLES", "150"))
SEED = os.environ.get("STELLWERK_FUZZ_SEED")
CONFIG: dict[str, Any] = {
    "stack": ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "ollama/qwen3-4b"],
    "tasks": {
        "simple": {"primary": "openai/gpt-4o-mini", "fallbacks": ["anthropic/claude-haiku-4-5"]}
    },
}
OPENAI, ANTHROPIC, COUNT = "/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens"
USER = {"role": "user", "content": "hi"}


# -- a gateway on its own loop, for hypothesis' synchronous examples --------------------------


@dataclass
class Live:
    loop: asyncio.AbstractEventLoop
    url: str
    session: aiohttp.ClientSession

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[FakeWorld, Router, TestServer, aiohttp.ClientSession]:
        world = FakeWorld()
        await world.start()
        router = Router(world.policy(CONFIG), MemoryStore())
        server = TestServer(create_app(router))
        await server.start_server()
        return world, router, server, aiohttp.ClientSession()

    future = asyncio.run_coroutine_threadsafe(start(), loop)
    world, router, server, session = future.result(30)
    try:
        yield Live(loop, str(server.make_url("")).rstrip("/"), session)
    finally:

        async def stop() -> None:
            await session.close()
            await server.close()
            await router.aclose()
            await world.stop()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# -- what is sent ----------------------------------------------------------------------------

ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
edge_values = st.sampled_from(
    [
        -1,
        0,
        1,
        2,
        2**31,
        2**63,
        -(2**63) - 1,
        1e308,
        -0.0,
        0.5,
        "",
        "x" * 300,
        True,
        False,
        [],
        {},
        None,
        "auto",
        "auto:simple",
        "auto:nope",
        "user",
        "tool",
        [None],
        {"type": None},
    ]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | edge_values,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=16,
)
OPENAI_FIELDS = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "stream",
    "n",
    "metadata",
    "stream_options",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "user",
    "prompt_cache_key",
    "logprobs",
    "top_logprobs",
    "response_format",
    "parallel_tool_calls",
]
ANTHROPIC_FIELDS = [
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "tool_choice",
    "stream",
    "metadata",
    "thinking",
    "service_tier",
]
ROLES = st.sampled_from(["user", "assistant", "system", "developer", "tool"]) | ascii_text
BLOCK_TYPES = (
    st.sampled_from(
        [
            "text",
            "image",
            "image_url",
            "tool_use",
            "tool_result",
            "thinking",
            "redacted_thinking",
            "document",
            "input_audio",
        ]
    )
    | ascii_text
)
blocks = st.builds(
    lambda kind, extra: {"type": kind, **extra},
    BLOCK_TYPES,
    st.dictionaries(
        st.sampled_from(
            [
                "text",
                "id",
                "name",
                "input",
                "content",
                "tool_use_id",
                "source",
                "image_url",
                "thinking",
                "signature",
                "cache_control",
                "is_error",
            ]
        ),
        json_values,
        max_size=4,
    ),
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": ROLES},
        optional={
            "content": json_values | st.lists(blocks, max_size=3),
            "tool_calls": json_values,
            "tool_call_id": json_values,
        },
    ),
    min_size=0,
    max_size=4,
)


DEEP_PLACES = {
    "openai-arguments": (
        '{"model":"anthropic/claude-haiku-4-5","messages":[{"role":"user","content":"hi"},'
        '{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":'
        '{"name":"f","arguments":"@"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}]}'
    ),
    "openai-schema": (
        '{"model":"auto","messages":[{"role":"user","content":"hi"}],'
        '"tools":[{"type":"function","function":{"name":"f","parameters":@}}]}'
    ),
    "anthropic-schema": (
        '{"model":"auto","max_tokens":9,"messages":[{"role":"user","content":"hi"}],'
        '"tools":[{"name":"f","input_schema":@}]}'
    ),
    "anthropic-input": (
        '{"model":"ollama/qwen3-4b","max_tokens":9,"messages":[{"role":"user","content":"hi"},'
        '{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":@}]},'
        '{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"ok"}]}]}'
    ),
}


def _deep(place: str, depth: int) -> bytes:
    inner = '{"a":' * depth + "1" + "}" * depth
    if place == "openai-arguments":
        inner = inner.replace('"', '\\"')
    return DEEP_PLACES[place].replace("@", inner).encode()


@st.composite
def bodies(draw: st.DrawFn, path: str) -> bytes:
    anthropic = path.startswith("/v1/messages")
    base: dict[str, Any] = {"model": "auto:simple", "messages": [USER]}
    if anthropic:
        base["max_tokens"] = 64
    kind = draw(st.sampled_from(["fields", "messages", "json", "bytes", "deep", "valid"]))
    if kind == "valid":
        return json.dumps({**base, "stream": draw(st.booleans())}).encode()
    if kind == "fields":
        names = ANTHROPIC_FIELDS if anthropic else OPENAI_FIELDS
        fields = draw(st.dictionaries(st.sampled_from(names), json_values, min_size=1, max_size=3))
        return json.dumps({**base, **fields}).encode()
    if kind == "messages":
        return json.dumps({**base, "messages": draw(messages)}).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        place = draw(st.sampled_from(sorted(DEEP_PLACES)))
        return _deep(place, draw(st.sampled_from([100, 126, 127, 128, 129, 500, 990, 5000])))
    return draw(st.binary(max_size=300))


headers = st.fixed_dictionaries(
    {},
    optional={
        "content-encoding": st.sampled_from(["gzip", "deflate", "br", "identity", "x-bogus"]),
        "anthropic-version": st.just("2023-06-01"),
        "x-stellwerk-task": ascii_text,
        "x-stellwerk-session": ascii_text,
        "x-stellwerk-hop": ascii_text,
        "content-type": st.sampled_from(["application/json", "text/plain", "multipart/form-data"]),
    },
)

requests = st.one_of(
    st.tuples(st.sampled_from([OPENAI, ANTHROPIC, COUNT]), st.just("POST")).flatmap(
        lambda pm: st.tuples(st.just(pm[0]), st.just(pm[1]), bodies(pm[0]), headers)
    ),
    st.tuples(
        st.just("/api/emergency"),
        st.just("POST"),
        st.sampled_from([b'{"on": false}', b'{"on": "yes"}', b"[]", b"", b"\xff"])
        | st.binary(max_size=50),
        headers,
    ),
    st.tuples(
        st.sampled_from(["/api/status", "/v1/models", "/healthz", "/readyz", "/metrics"])
        | ascii_text.map(lambda s: "/v1/models/" + s.replace("?", "").replace("#", "")),
        st.sampled_from(["GET", "POST", "DELETE"]),
        st.binary(max_size=20),
        headers,
    ),
)


# -- what must hold --------------------------------------------------------------------------


async def _send(live: Live, path: str, method: str, body: bytes, head: dict[str, str]) -> Any:
    if head.get("content-encoding") == "gzip" and body and body[:1] != b"\x00":
        body = gzip.compress(body) if len(body) % 2 else body  # real or false, half each
    async with live.session.request(
        method, live.url + path, data=body, headers=head, allow_redirects=False
    ) as response:
        return response.status, dict(response.headers), await response.read()


def _check(path: str, head: dict[str, str], status: int, body: bytes) -> None:
    assert status < 500, (status, body[:500])
    if status < 400:
        return
    error = json.loads(body)
    if path.startswith("/v1/messages") or "anthropic-version" in head:
        assert error["type"] == "error", error
        assert isinstance(error["error"]["type"], str) and isinstance(
            error["error"]["message"], str
        )
        return
    inner = error["error"]
    assert set(inner) >= {"message", "type", "param", "code"}, error
    assert isinstance(inner["message"], str) and isinstance(inner["type"], str)


fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
)


def _seeded(test: Any) -> Any:
    return seed(int(SEED))(test) if SEED else test


@_seeded
@fuzz_settings
@given(request=requests)
def test_fuzz_no_5xx_and_every_error_in_the_callers_format(live: Live, request: Any) -> None:
    path, method, body, head = request
    status, _, answer = live.run(_send(live, path, method, body, head))
    _check(path, head, status, answer)


def test_the_gateway_is_healthy_after_the_fuzz(live: Live) -> None:
    """Runs after the fuzz in this module (same gateway): it still answers every endpoint."""

    async def probe() -> list[int]:
        out = []
        for path, payload in [
            (OPENAI, {"model": "auto:simple", "messages": [USER]}),
            (ANTHROPIC, {"model": "auto:simple", "max_tokens": 64, "messages": [USER]}),
        ]:
            async with live.session.post(live.url + path, json=payload) as response:
                out.append(response.status)
        for path in ("/healthz", "/readyz", "/api/status", "/v1/models"):
            async with live.session.get(live.url + path) as response:
                out.append(response.status)
        return out

    assert live.run(probe()) == [200] * 6
