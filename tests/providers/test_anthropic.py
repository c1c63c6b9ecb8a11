"""The Anthropic adapter against the fake Anthropic API on 127.0.0.1.

Answers (plain, streamed, thinking, tool calls and their round trip), exactly what was sent, and
every failure class streaming and not. The official `anthropic` SDK is the referee for fidelity:
it must read the fake's answers and the gateway-side rendering of `wire.anthropic` alike.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import anthropic
import pytest
from aiohttp import web

from stellwerk.config import policy_from_dict
from stellwerk.errors import ProviderError
from stellwerk.failures import ACTIONS, FailureClass
from stellwerk.policy import Credential, ModelSpec, Secret
from stellwerk.providers._http import new_session
from stellwerk.providers.anthropic import AnthropicProvider
from stellwerk.testing._server import Reply, ToolCall
from stellwerk.testing.anthropic import (
    CREDIT_TOO_LOW,
    PROMPT_TOO_LONG,
    FakeAnthropic,
    anthropic_error,
    raw_stream,
    stream_error,
)
from stellwerk.types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    Message,
    Part,
    StreamEnd,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
)
from stellwerk.wire.anthropic import render_response, render_stream

KEY = "sk-ant-api03-test-0123456789abcdef"
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
HI = ChatRequest.of("Hi there", system="Be brief.")


@dataclass(frozen=True)
class Target:
    provider: AnthropicProvider
    model: ModelSpec
    credential: Credential | None

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return await self.provider.complete(request, self.model, self.credential)

    async def collect(self, request: ChatRequest) -> list[Chunk]:
        return [c async for c in self.provider.stream(request, self.model, self.credential)]

    async def failure(
        self, request: ChatRequest, stream: bool
    ) -> tuple[ProviderError, list[Chunk]]:
        """The error of a call, and the chunks a stream yielded before it."""
        chunks: list[Chunk] = []
        with pytest.raises(ProviderError) as info:
            if stream:
                async for chunk in self.provider.stream(request, self.model, self.credential):
                    chunks.append(chunk)
            else:
                await self.complete(request)
        return info.value, chunks


def make_target(
    url: str, session: aiohttp.ClientSession, read_timeout: float = 10.0, key: str | None = KEY
) -> Target:
    env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": url}
    policy = policy_from_dict({"providers": {"anthropic": {"read_timeout": read_timeout}}}, env=env)
    spec = policy.providers["anthropic"]
    credential = None if key is None else Credential("anthropic#1", Secret(key))
    return Target(
        AnthropicProvider(spec, session), policy.models["anthropic/claude-sonnet-4-0"], credential
    )


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic(key=KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def anthropic_session() -> AsyncIterator[aiohttp.ClientSession]:
    session = new_session()
    yield session
    await session.close()


@pytest.fixture
def anthropic_target(
    anthropic_fake: FakeAnthropic, anthropic_session: aiohttp.ClientSession
) -> Target:
    return make_target(anthropic_fake.url, anthropic_session)


def assemble(chunks: list[Chunk]) -> tuple[Part, ...]:
    """The assistant content a client rebuilds from stream chunks."""
    text = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    thinking = [c for c in chunks if isinstance(c, ThinkingDelta)]
    signature = next((c.signature for c in thinking if c.signature), None)
    parts: list[Part] = []
    if thinking:
        parts.append(ThinkingPart("".join(c.text for c in thinking), signature))
    if text:
        parts.append(TextPart(text))
    for start in (c for c in chunks if isinstance(c, ToolCallStart)):
        args = "".join(
            c.arguments for c in chunks if isinstance(c, ToolCallDelta) and c.index == start.index
        )
        parts.append(ToolCallPart(start.id, start.name, args))
    return tuple(parts)


# -- answers ---------------------------------------------------------------------------------


async def test_plain_answer(anthropic_fake: FakeAnthropic, anthropic_target: Target) -> None:
    anthropic_fake.push(
        Reply.ok("Hello! How can I help?", usage=(12, 7), model="claude-sonnet-4-20250514")
    )
    response = await anthropic_target.complete(HI)
    assert response.text == "Hello! How can I help?"
    assert response.stop_reason == "end"
    assert response.usage == Usage(12, 7)
    assert response.target == "anthropic/claude-sonnet-4-0"
    assert response.upstream_model == "claude-sonnet-4-20250514"
    assert response.id.startswith("msg_")


async def test_request_as_sent(anthropic_fake: FakeAnthropic, anthropic_target: Target) -> None:
    request = replace(HI, temperature=0.4, top_p=0.9, stop=("END",))
    await anthropic_target.complete(request)
    received = anthropic_fake.received[-1]
    assert (received.method, received.path) == ("POST", "/v1/messages")
    headers = {name.lower(): value for name, value in received.headers.items()}
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert received.json == {
        "model": "claude-sonnet-4-0",
        "max_tokens": 4096,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}],
        "temperature": 0.4,
        "stop_sequences": ["END"],
    }


async def test_streaming_answer(anthropic_fake: FakeAnthropic, anthropic_target: Target) -> None:
    anthropic_fake.push(Reply.ok("Hello there, world", usage=(12, 5)))
    chunks = await anthropic_target.collect(HI)
    assert chunks == [
        TextDelta("Hello "),
        TextDelta("there, "),
        TextDelta("world"),
        StreamEnd("end", Usage(12, 5), "claude-sonnet-4-0"),
    ]
    assert anthropic_fake.received[-1].json["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_comes_back_with_its_signature(
    anthropic_fake: FakeAnthropic, anthropic_target: Target, stream: bool
) -> None:
    anthropic_fake.push(Reply.ok("42.", thinking="Six times seven."))
    if stream:
        content = assemble(await anthropic_target.collect(HI))
    else:
        content = (await anthropic_target.complete(HI)).content
    thinking, answer = content
    assert isinstance(thinking, ThinkingPart) and thinking.text == "Six times seven."
    assert thinking.signature and thinking.signature.startswith("Eq")
    assert answer == TextPart("42.")


@pytest.mark.parametrize(
    ("stop", "expected"), [("max_tokens", "max_tokens"), ("stop_sequence", "stop_sequence")]
)
@pytest.mark.parametrize("stream", [False, True])
async def test_stop_reasons(
    anthropic_fake: FakeAnthropic, anthropic_target: Target, stop: str, expected: str, stream: bool
) -> None:
    anthropic_fake.push(Reply.ok("cut", stop=stop))
    request = replace(HI, stop=("END",))
    if stream:
        end = (await anthropic_target.collect(request))[-1]
        assert isinstance(end, StreamEnd) and end.stop_reason == expected
    else:
        assert (await anthropic_target.complete(request)).stop_reason == expected


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_call_round_trip(
    anthropic_fake: FakeAnthropic, anthropic_target: Target, stream: bool
) -> None:
    ask = ChatRequest(
        messages=(Message.of("user", "Weather in Paris?"),), tools=(WEATHER,), tool_choice="auto"
    )
    anthropic_fake.push(
        Reply.tools(ToolCall("get_weather", {"city": "Paris"}, id="toolu_01A"), text="Checking.")
    )
    if stream:
        chunks = await anthropic_target.collect(ask)
        end = chunks[-1]
        assert isinstance(end, StreamEnd) and end.stop_reason == "tool_use"
        assert ToolCallStart(0, "toolu_01A", "get_weather") in chunks
        content = assemble(chunks)
    else:
        response = await anthropic_target.complete(ask)
        assert response.stop_reason == "tool_use"
        content = response.content
    # a stream carries the input as Anthropic wrote it; a whole answer's input object is
    # written compactly, as OpenAI's models write arguments
    arguments = '{"city": "Paris"}' if stream else '{"city":"Paris"}'
    assert content == (
        TextPart("Checking."),
        ToolCallPart("toolu_01A", "get_weather", arguments),
    )

    answer = replace(
        ask,
        messages=(
            *ask.messages,
            Message("assistant", content),
            Message("tool", (ToolResultPart("toolu_01A", "18 degrees, sunny"),)),
        ),
    )
    anthropic_fake.push(Reply.ok("It is 18 degrees and sunny."))
    final = await anthropic_target.complete(answer)
    assert final.text == "It is 18 degrees and sunny."
    sent = anthropic_fake.received[-1].json
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": WEATHER.description,
            "input_schema": dict(WEATHER.parameters),
        }
    ]
    assert sent["tool_choice"] == {"type": "auto"}
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18 degrees, sunny"}
            ],
        },
    ]


async def test_tool_history_without_tool_definitions_is_accepted(
    anthropic_fake: FakeAnthropic, anthropic_target: Target
) -> None:
    """A trimmed request (a heartbeat, a fallback from another format) may drop the tools."""
    history = (
        Message.of("user", "Weather?"),
        Message("assistant", (ToolCallPart("toolu_01A", "get_weather", '{"city":"Paris"}'),)),
        Message("tool", (ToolResultPart("toolu_01A", "18 degrees"),)),
    )
    response = await anthropic_target.complete(ChatRequest(messages=history))
    assert response.text
    assert anthropic_fake.received[-1].json["tool_choice"] == {"type": "none"}


async def test_fake_rejects_an_unanswered_tool_call(anthropic_target: Target) -> None:
    """The fake checks tool pairing like the API does, so the round trip above means something."""
    history = (
        Message.of("user", "Weather?"),
        Message("assistant", (ToolCallPart("toolu_01A", "get_weather", "{}"),)),
        Message.of("user", "never mind"),
    )
    error, _ = await anthropic_target.failure(
        ChatRequest(messages=history, tools=(WEATHER,)), False
    )
    assert error.failure is FailureClass.INVALID_REQUEST
    assert "`tool_use` ids were found without `tool_result` blocks" in str(error)


# -- failures --------------------------------------------------------------------------------

ERRORS: list[Any] = [
    pytest.param(
        anthropic_error(400, "invalid_request_error", CREDIT_TOO_LOW),
        FailureClass.BILLING,
        None,
        id="billing-400",
    ),
    pytest.param(402, FailureClass.BILLING, None, id="billing-402"),
    pytest.param(429, FailureClass.RATE_LIMIT, 30.0, id="rate_limit"),
    pytest.param(529, FailureClass.OVERLOADED, None, id="overloaded"),
    pytest.param(500, FailureClass.SERVER, None, id="server-500"),
    pytest.param(502, FailureClass.SERVER, None, id="server-502"),
    pytest.param(503, FailureClass.SERVER, None, id="server-503"),
    pytest.param(401, FailureClass.AUTH, None, id="auth-401"),
    pytest.param(403, FailureClass.AUTH, None, id="auth-403"),
    pytest.param(404, FailureClass.MODEL_NOT_FOUND, None, id="model_not_found"),
    pytest.param(
        anthropic_error(400, "invalid_request_error", PROMPT_TOO_LONG),
        FailureClass.CONTEXT_OVERFLOW,
        None,
        id="context_overflow",
    ),
    pytest.param(413, FailureClass.CONTEXT_OVERFLOW, None, id="request_too_large"),
    pytest.param(400, FailureClass.INVALID_REQUEST, None, id="invalid_request"),
]


@pytest.mark.parametrize(("reply", "failure", "retry_after"), ERRORS)
@pytest.mark.parametrize("stream", [False, True])
async def test_error_answers_are_classified(
    anthropic_fake: FakeAnthropic,
    anthropic_target: Target,
    reply: Reply | int,
    failure: FailureClass,
    retry_after: float | None,
    stream: bool,
) -> None:
    anthropic_fake.push(reply)
    error, chunks = await anthropic_target.failure(HI, stream)
    assert error.failure is failure
    assert error.retry_after == retry_after
    assert error.target == "anthropic/claude-sonnet-4-0"
    assert error.upstream_status == (reply if isinstance(reply, int) else reply.status)
    assert error.fallback is ACTIONS[failure].fallback
    assert chunks == []


@pytest.mark.parametrize(
    ("key", "message"),
    [("sk-ant-wrong", "invalid x-api-key"), (None, "x-api-key header is required")],
)
async def test_fake_checks_the_key(
    anthropic_fake: FakeAnthropic,
    anthropic_session: aiohttp.ClientSession,
    key: str | None,
    message: str,
) -> None:
    target = make_target(anthropic_fake.url, anthropic_session, key=key)
    error, _ = await target.failure(HI, False)
    assert error.failure is FailureClass.AUTH
    assert message in str(error)


async def test_unknown_model_is_the_real_404(anthropic_session: aiohttp.ClientSession) -> None:
    async with FakeAnthropic(models=["claude-haiku-4-5"]) as fake:
        error, _ = await make_target(fake.url, anthropic_session).failure(HI, True)
    assert error.failure is FailureClass.MODEL_NOT_FOUND
    assert "model: claude-sonnet-4-0" in str(error)


@pytest.mark.parametrize("stream", [False, True])
async def test_timeout(
    anthropic_fake: FakeAnthropic, anthropic_session: aiohttp.ClientSession, stream: bool
) -> None:
    anthropic_fake.push(Reply.hang(5))
    target = make_target(anthropic_fake.url, anthropic_session, read_timeout=0.2)
    error, _ = await target.failure(HI, stream)
    assert error.failure is FailureClass.TIMEOUT
    assert error.fallback


@pytest.mark.parametrize("stream", [False, True])
async def test_connection_refused(anthropic_session: aiohttp.ClientSession, stream: bool) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = make_target(f"http://127.0.0.1:{port}", anthropic_session)
    error, _ = await target.failure(HI, stream)
    assert error.failure is FailureClass.CONNECT
    assert error.fallback


async def test_malformed_json_answer_is_a_server_failure(
    anthropic_fake: FakeAnthropic, anthropic_target: Target
) -> None:
    anthropic_fake.push(Reply.malformed())
    error, _ = await anthropic_target.failure(HI, False)
    assert error.failure is FailureClass.SERVER


BROKEN_FRAME = b'event: message_start\ndata: {"type": "message_start", "message": {\n\n'
STREAM_FAILURES: list[Any] = [
    pytest.param(
        Reply.ok("one two three", break_after=0),
        FailureClass.STREAM_BROKEN,
        [],
        id="drop-before-first-token",
    ),
    pytest.param(
        Reply.ok("one two three", break_after=2),
        FailureClass.STREAM_BROKEN,
        ["one ", "two "],
        id="drop-after-tokens",
    ),
    pytest.param(
        Reply.ok("one two three", truncate_after=0),
        FailureClass.STREAM_BROKEN,
        [],
        id="ends-before-first-token",
    ),
    pytest.param(
        Reply.ok("one two three", truncate_after=2),
        FailureClass.STREAM_BROKEN,
        ["one ", "two "],
        id="ends-without-message-stop",
    ),
    pytest.param(raw_stream(BROKEN_FRAME), FailureClass.STREAM_BROKEN, [], id="malformed-frame"),
    pytest.param(raw_stream(b""), FailureClass.STREAM_BROKEN, [], id="empty-stream"),
    pytest.param(
        stream_error(), FailureClass.OVERLOADED, [], id="overloaded-event-before-first-token"
    ),
    pytest.param(
        stream_error(text="Hel"),
        FailureClass.OVERLOADED,
        ["Hel"],
        id="overloaded-event-after-first-token",
    ),
    pytest.param(
        stream_error("rate_limit_error", "Rate limited"),
        FailureClass.RATE_LIMIT,
        [],
        id="rate-limit-event",
    ),
    pytest.param(
        stream_error("api_error", "Internal server error", text="a b"),
        FailureClass.SERVER,
        ["a ", "b"],
        id="api-error-event",
    ),
]


@pytest.mark.parametrize(("reply", "failure", "texts"), STREAM_FAILURES)
async def test_stream_failures(
    anthropic_fake: FakeAnthropic,
    anthropic_target: Target,
    reply: Reply,
    failure: FailureClass,
    texts: list[str],
) -> None:
    anthropic_fake.push(reply)
    error, chunks = await anthropic_target.failure(HI, True)
    assert error.failure is failure
    assert chunks == [TextDelta(t) for t in texts]  # yielded as they came, nothing after the break
    assert error.after_first_token is bool(texts)
    assert error.fallback is not bool(texts)


# -- the official SDK as referee -------------------------------------------------------------


async def test_official_sdk_reads_the_fake(anthropic_fake: FakeAnthropic) -> None:
    client = anthropic.AsyncAnthropic(base_url=anthropic_fake.url, api_key=KEY, max_retries=0)
    anthropic_fake.push(
        Reply.tools(ToolCall("get_weather", {"city": "Paris"}), text="Checking.", thinking="Hmm.")
    )
    messages: Any = [{"role": "user", "content": "Weather in Paris?"}]
    async with client.messages.stream(
        model="claude-sonnet-4-0", max_tokens=256, messages=messages
    ) as stream:
        message = await stream.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[2].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    anthropic_fake.push(529)
    with pytest.raises(anthropic.APIStatusError) as info:
        await client.messages.create(model="claude-sonnet-4-0", max_tokens=256, messages=messages)
    assert info.value.status_code == 529
    assert info.value.request_id
    await client.close()


def _gateway(handler: Callable[[dict[str, Any]], Any]) -> web.Application:
    """A stand-in for the gateway's /v1/messages: parse nothing, render what `handler` gives."""

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response(handler(body))
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        async for data in render_stream(handler(body), body["model"], input_tokens=20):
            await response.write(data)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app


async def test_official_sdk_reads_what_stellwerk_renders() -> None:
    streamed: list[Chunk] = [
        ThinkingDelta("Plan."),
        ThinkingDelta("", "EqSig"),
        TextDelta("Check"),
        TextDelta("ing."),
        ToolCallStart(0, "toolu_1", "get_weather"),
        ToolCallDelta(0, '{"city":'),
        ToolCallDelta(0, '"Paris"}'),
        StreamEnd("tool_use", Usage(20, 9)),
    ]

    async def chunks() -> AsyncIterator[Chunk]:
        for chunk in streamed:
            yield chunk

    response = ChatResponse("openai/gpt-4o-mini", (TextPart("Hi!"),), usage=Usage(5, 2), id="msg_1")

    def handler(body: dict[str, Any]) -> Any:
        return chunks() if body.get("stream") else render_response(response, body["model"])

    runner = web.AppRunner(_gateway(handler))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = anthropic.AsyncAnthropic(
        base_url=f"http://127.0.0.1:{port}", api_key=KEY, max_retries=0
    )
    messages: Any = [{"role": "user", "content": "hi"}]
    try:
        plain = await client.messages.create(model="auto", max_tokens=64, messages=messages)
        assert plain.content[0].text == "Hi!"  # type: ignore[union-attr]
        assert (plain.usage.input_tokens, plain.usage.output_tokens) == (5, 2)
        async with client.messages.stream(model="auto", max_tokens=64, messages=messages) as stream:
            message = await stream.get_final_message()
        assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
        assert message.content[0].signature == "EqSig"  # type: ignore[union-attr]
        assert message.content[1].text == "Checking."  # type: ignore[union-attr]
        assert message.content[2].input == {"city": "Paris"}  # type: ignore[union-attr]
        assert (message.stop_reason, message.usage.output_tokens) == ("tool_use", 9)
    finally:
        await client.close()
        await runner.cleanup()


async def test_models_endpoint(
    anthropic_fake: FakeAnthropic, anthropic_session: aiohttp.ClientSession
) -> None:
    url = f"{anthropic_fake.url}/v1/models"
    async with anthropic_session.get(
        url, headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    ) as r:
        listing = await r.json()
    assert r.status == 200
    assert "claude-sonnet-4-0" in [m["id"] for m in listing["data"]]
    async with anthropic_session.get(url, headers={"x-api-key": "wrong"}) as r:
        assert r.status == 401
        assert json.loads(await r.read())["error"]["type"] == "authentication_error"
