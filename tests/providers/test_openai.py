"""The OpenAI adapters against the fake OpenAI server: Chat Completions and the Responses API.

Most behaviour is asserted for both protocols (`api` is `chat` or `responses`), streaming and not.
The fake itself is held to the real API: its bodies and events must validate against the official
`openai` SDK's models, and the SDK must be able to talk to it.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from stellwerk.config import policy_from_dict
from stellwerk.errors import ProviderError
from stellwerk.failures import FailureClass
from stellwerk.policy import ModelSpec, Policy, ProviderSpec
from stellwerk.providers import registry
from stellwerk.providers._http import new_session
from stellwerk.providers.base import Provider
from stellwerk.providers.openai import (
    OpenAICodexProvider,
    OpenAICompatibleProvider,
    OpenAIProvider,
    OpenRouterProvider,
)
from stellwerk.testing._server import Reply, ToolCall
from stellwerk.testing.openai import FakeOpenAI, raw_stream, sse
from stellwerk.types import (
    ChatRequest,
    Chunk,
    Message,
    StreamEnd,
    TextDelta,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
)

KEY = "sk-test-0123456789abcdef"
MODELS = {"chat": "openai/gpt-4o-mini", "responses": "openai/gpt-5.1-codex"}
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI(key=KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    client = new_session()
    yield client
    await client.close()


@pytest.fixture
def policy(fake: FakeOpenAI) -> Policy:
    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake.base_url}
    env |= {"OPENAI_CODEX_API_KEY": KEY, "OPENAI_CODEX_BASE_URL": fake.base_url}
    return policy_from_dict({}, env=env)


def openai_provider(policy: Policy, session: aiohttp.ClientSession, **spec: Any) -> OpenAIProvider:
    return OpenAIProvider(dataclasses.replace(policy.providers["openai"], **spec), session)


@dataclasses.dataclass
class Outcome:
    """What an attempt produced, the same for streamed and complete answers."""

    text: str
    thinking: str
    stop: str
    tool_calls: tuple[ToolCallPart, ...]
    usage: Usage
    upstream_model: str | None
    chunks: list[Chunk]


async def run(
    provider: OpenAIProvider, request: ChatRequest, model: ModelSpec, stream: bool
) -> Outcome:
    credential = provider.spec.credentials[0] if provider.spec.credentials else None
    if not stream:
        r = await provider.complete(request, model, credential)
        thinking = "".join(p.text for p in r.content if isinstance(p, ThinkingPart))
        return Outcome(r.text, thinking, r.stop_reason, r.tool_calls, r.usage, r.upstream_model, [])
    chunks = [chunk async for chunk in provider.stream(request, model, credential)]
    end = chunks[-1]
    assert isinstance(end, StreamEnd) and sum(isinstance(c, StreamEnd) for c in chunks) == 1
    return Outcome(
        text_of(chunks),
        "".join(c.text for c in chunks if isinstance(c, ThinkingDelta)),
        end.stop_reason,
        tool_calls_of(chunks),
        end.usage,
        end.upstream_model,
        chunks,
    )


def tool_calls_of(chunks: list[Chunk]) -> tuple[ToolCallPart, ...]:
    starts = [c for c in chunks if isinstance(c, ToolCallStart)]
    assert [s.index for s in starts] == list(range(len(starts)))
    return tuple(
        ToolCallPart(
            s.id,
            s.name,
            "".join(
                c.arguments for c in chunks if isinstance(c, ToolCallDelta) and c.index == s.index
            ),
        )
        for s in starts
    )


async def failure(
    provider: OpenAIProvider, request: ChatRequest, model: ModelSpec, stream: bool
) -> tuple[ProviderError, list[Chunk]]:
    """The error an attempt raises, and the chunks a stream yielded before it."""
    chunks: list[Chunk] = []
    credential = provider.spec.credentials[0] if provider.spec.credentials else None
    with pytest.raises(ProviderError) as caught:
        if stream:
            async for chunk in provider.stream(request, model, credential):
                chunks.append(chunk)
        else:
            await provider.complete(request, model, credential)
    return caught.value, chunks


def text_of(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_plain_answer(
    api: str, fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    fake.push(Reply.ok("Bonjour!", usage=(12, 3)))
    model = policy.models[MODELS[api]]
    provider = openai_provider(policy, session)
    response = await provider.complete(ChatRequest.of("hi"), model, provider.spec.credentials[0])
    assert response.text == "Bonjour!"
    assert response.target == model.id
    assert response.upstream_model == model.upstream
    assert response.stop_reason == "end"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert not response.usage.estimated


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_streaming_answer_arrives_in_pieces_then_ends(
    api: str, fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    fake.push(Reply.ok("one two three", usage=(20, 4)))
    model = policy.models[MODELS[api]]
    result = await run(openai_provider(policy, session), ChatRequest.of("count"), model, True)
    assert [c.text for c in result.chunks if isinstance(c, TextDelta)] == ["one ", "two ", "three"]
    assert result.stop == "end"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (20, 4)
    assert not result.usage.estimated
    assert result.upstream_model == model.upstream


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_request_shape(
    stream: bool, fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    request = dataclasses.replace(
        ChatRequest.of("hi", system="Be brief."), temperature=0.3, stop=("END",)
    )
    await run(
        openai_provider(policy, session), request, policy.models["openai/gpt-4o-mini"], stream
    )
    sent = fake.received[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert sent.json["max_completion_tokens"] == 4096
    assert (sent.json["temperature"], sent.json["stop"]) == (0.3, ["END"])
    if stream:
        assert sent.json["stream_options"] == {"include_usage": True}


async def test_reasoning_model_gets_no_sampling_parameters(
    fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    request = dataclasses.replace(ChatRequest.of("prove it"), temperature=0.2, top_p=0.5)
    request = dataclasses.replace(request, max_tokens=900)
    provider = openai_provider(policy, session)
    await run(provider, request, policy.models["openai/o3-mini"], False)
    sent = fake.received[-1].json
    assert sent["model"] == "o3-mini" and sent["max_completion_tokens"] == 900
    assert not {"temperature", "top_p", "max_tokens"} & set(sent)
    await run(provider, ChatRequest.of("prove it"), policy.models["openai/o3-mini"], False)
    assert "max_completion_tokens" not in fake.received[-1].json


async def test_responses_output_limit_when_asked(
    fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    request = dataclasses.replace(ChatRequest.of("hi"), max_tokens=1000)
    await run(openai_provider(policy, session), request, policy.models[MODELS["responses"]], False)
    assert fake.received[-1].json["max_output_tokens"] == 1000


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_request_shape(
    stream: bool, fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    request = dataclasses.replace(ChatRequest.of("hi", system="Be brief."), temperature=0.3)
    model = policy.models["openai/gpt-5.1-codex"]
    await run(openai_provider(policy, session), request, model, stream)
    sent = fake.received[-1]
    assert sent.path == "/v1/responses"
    assert sent.json["instructions"] == "Be brief."
    assert sent.json["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]
    assert sent.json["store"] is False
    # a reasoning model: no temperature, and no output limit the caller did not ask for
    assert "temperature" not in sent.json and "max_output_tokens" not in sent.json
    assert sent.json.get("stream", False) is stream


async def test_codex_provider_always_uses_the_responses_api(
    fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    provider = OpenAICodexProvider(policy.providers["openai-codex"], session)
    model = dataclasses.replace(policy.models["openai-codex/gpt-5.3-codex"], api="chat")
    response = await provider.complete(ChatRequest.of("hi"), model, provider.spec.credentials[0])
    assert fake.received[-1].path == "/v1/responses"
    assert fake.received[-1].model == "gpt-5.3-codex"
    assert response.text == "Hello from the fake."


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_is_kept_apart_from_text(
    api: str, stream: bool, fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    fake.push(Reply.ok("42", thinking="six times seven"))
    model = policy.models[MODELS[api]]
    result = await run(openai_provider(policy, session), ChatRequest.of("?"), model, stream)
    assert (result.thinking, result.text) == ("six times seven", "42")


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True])
async def test_output_limit_reached_is_reported(
    api: str, stream: bool, fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    fake.push(Reply.ok("cut sho", stop="max_tokens"))
    model = policy.models[MODELS[api]]
    result = await run(openai_provider(policy, session), ChatRequest.of("?"), model, stream)
    assert (result.text, result.stop) == ("cut sho", "max_tokens")


# -- tools -----------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True])
async def test_tool_call_round_trip(
    api: str, stream: bool, fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    provider, model = openai_provider(policy, session), policy.models[MODELS[api]]
    fake.push(Reply.tools(ToolCall("get_weather", {"city": "Bern"}, id="call_1")))
    request = dataclasses.replace(ChatRequest.of("Weather in Bern?"), tools=(WEATHER,))
    result = await run(provider, request, model, stream)
    call = ToolCallPart("call_1", "get_weather", '{"city":"Bern"}')
    assert (result.tool_calls, result.stop) == ((call,), "tool_use")
    if stream:  # the arguments arrive in fragments
        assert len([c for c in result.chunks if isinstance(c, ToolCallDelta)]) > 1

    history = (
        *request.messages,
        Message("assistant", (call,)),
        Message("tool", (ToolResultPart("call_1", "12°C, fog"),)),
    )
    fake.push(Reply.ok("Foggy, 12°C."))
    answer = await run(provider, dataclasses.replace(request, messages=history), model, stream)
    assert answer.text == "Foggy, 12°C."  # the fake checks every result answers a call
    sent = fake.received[-1].json
    if api == "chat":
        assert sent["tools"] == [{"type": "function", "function": FUNCTION}]
        assert sent["messages"][1:] == [
            {"role": "assistant", "content": None, "tool_calls": [CHAT_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "12°C, fog"},
        ]
    else:
        assert sent["tools"] == [{"type": "function", **FUNCTION, "strict": False}]
        assert sent["input"][1:] == [
            {"type": "function_call", "call_id": "call_1", **CALL},
            {"type": "function_call_output", "call_id": "call_1", "output": "12°C, fog"},
        ]


FUNCTION = {
    "name": "get_weather",
    "description": WEATHER.description,
    "parameters": dict(WEATHER.parameters),
}
CALL = {"name": "get_weather", "arguments": '{"city":"Bern"}'}
CHAT_CALL = {"id": "call_1", "type": "function", "function": CALL}


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True])
async def test_parallel_tool_calls_keep_their_order(
    api: str, stream: bool, fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    fake.push(Reply.tools(ToolCall("a", {"x": 1}, id="c1"), ToolCall("b", {"y": 2}, id="c2")))
    request = dataclasses.replace(ChatRequest.of("both"), tools=(Tool("a"), Tool("b")))
    model = policy.models[MODELS[api]]
    result = await run(openai_provider(policy, session), request, model, stream)
    assert result.tool_calls == (
        ToolCallPart("c1", "a", '{"x":1}'),
        ToolCallPart("c2", "b", '{"y":2}'),
    )


# -- failures --------------------------------------------------------------------------------

HTTP_FAILURES = [
    ("insufficient_quota", FailureClass.BILLING, None),
    ("rate_limit", FailureClass.RATE_LIMIT, 20.0),
    ("invalid_api_key", FailureClass.AUTH, None),
    ("model_not_found", FailureClass.MODEL_NOT_FOUND, None),
    ("context_length_exceeded", FailureClass.CONTEXT_OVERFLOW, None),
    ("invalid_request", FailureClass.INVALID_REQUEST, None),
    ("server_error", FailureClass.SERVER, None),
    ("bad_gateway", FailureClass.SERVER, None),
    ("overloaded", FailureClass.OVERLOADED, None),
    ("engine_overloaded", FailureClass.OVERLOADED, None),
]


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("name", "expected", "retry_after"), HTTP_FAILURES)
async def test_error_answers_are_classified(
    name: str,
    expected: FailureClass,
    retry_after: float | None,
    api: str,
    stream: bool,
    fake: FakeOpenAI,
    policy: Policy,
    session: aiohttp.ClientSession,
) -> None:
    fake.push(fake.error(name))
    model = policy.models[MODELS[api]]
    error, chunks = await failure(
        openai_provider(policy, session), ChatRequest.of("hi"), model, stream
    )
    assert error.failure == expected
    assert error.retry_after == retry_after
    assert error.target == model.id
    assert error.upstream_status == fake.errors[name][0]
    assert chunks == [] and not error.after_first_token


@pytest.mark.parametrize("stream", [False, True])
async def test_timeout(
    stream: bool, fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    fake.push(Reply.hang(2.0))
    provider = openai_provider(policy, session, read_timeout=0.2)
    error, _ = await failure(
        provider, ChatRequest.of("hi"), policy.models["openai/gpt-4o-mini"], stream
    )
    assert error.failure == FailureClass.TIMEOUT


@pytest.mark.parametrize("stream", [False, True])
async def test_refused_connection(
    stream: bool, policy: Policy, session: aiohttp.ClientSession
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = openai_provider(policy, session, base_url=f"http://127.0.0.1:{port}/v1")
    error, _ = await failure(
        provider, ChatRequest.of("hi"), policy.models["openai/gpt-4o-mini"], stream
    )
    assert error.failure == FailureClass.CONNECT


async def test_malformed_json_answer_is_a_server_failure(
    fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    fake.push(Reply.malformed())
    error, _ = await failure(
        openai_provider(policy, session),
        ChatRequest.of("hi"),
        policy.models["openai/gpt-4o-mini"],
        False,
    )
    assert error.failure == FailureClass.SERVER


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize(
    ("reply", "after_first_token"),
    [
        (Reply.ok("one two three", break_after=0), False),
        (Reply.ok("one two three", break_after=2), True),
        (Reply.ok("one two three", truncate_after=2), True),
        (Reply.ok("one two three", truncate_after=0), False),
        (raw_stream(b""), False),
        (raw_stream(b"data: {not json\n\n"), False),
    ],
    ids=[
        "break-before-first",
        "break-after-two",
        "truncated",
        "truncated-empty",
        "empty",
        "malformed",
    ],
)
async def test_broken_streams(
    api: str,
    reply: Reply,
    after_first_token: bool,
    fake: FakeOpenAI,
    policy: Policy,
    session: aiohttp.ClientSession,
) -> None:
    fake.push(reply)
    model = policy.models[MODELS[api]]
    error, chunks = await failure(
        openai_provider(policy, session), ChatRequest.of("count"), model, True
    )
    assert error.failure == FailureClass.STREAM_BROKEN
    assert error.after_first_token is after_first_token
    assert error.fallback is not after_first_token
    assert text_of(chunks) == ("one two " if after_first_token else "")


def _chunk(delta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }


@pytest.mark.parametrize(
    ("api", "body", "expected"),
    [
        (
            "chat",
            sse(_chunk({"content": "Hel"}))
            + sse(
                {
                    "error": {
                        "message": "The server had an error while processing your request.",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
            ),
            FailureClass.SERVER,
        ),
        (
            "responses",
            sse({"type": "response.output_text.delta", "delta": "Hel", "output_index": 0})
            + sse(
                {
                    "type": "response.failed",
                    "response": {
                        "status": "failed",
                        "error": {"code": "rate_limit_exceeded", "message": "Rate limit reached"},
                    },
                }
            ),
            FailureClass.RATE_LIMIT,
        ),
        (
            "responses",
            sse({"type": "response.output_text.delta", "delta": "Hel", "output_index": 0})
            + sse(
                {
                    "type": "error",
                    "code": "insufficient_quota",
                    "message": "You exceeded your current quota",
                    "param": None,
                    "sequence_number": 2,
                }
            ),
            FailureClass.BILLING,
        ),
    ],
    ids=["chat-error-frame", "response-failed", "error-event"],
)
async def test_errors_inside_a_stream_end_it_after_the_first_token(
    api: str,
    body: bytes,
    expected: FailureClass,
    fake: FakeOpenAI,
    policy: Policy,
    session: aiohttp.ClientSession,
) -> None:
    fake.push(raw_stream(body))
    error, chunks = await failure(
        openai_provider(policy, session), ChatRequest.of("hi"), policy.models[MODELS[api]], True
    )
    assert chunks == [TextDelta("Hel")]
    assert error.failure == expected and error.after_first_token and not error.fallback


async def test_stream_without_usage_is_estimated(
    fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    fake.push(raw_stream(sse(_chunk({"content": "Hello there"})) + sse("[DONE]")))
    model = policy.models["openai/gpt-4o-mini"]
    result = await run(openai_provider(policy, session), ChatRequest.of("hi " * 30), model, True)
    assert result.text == "Hello there" and result.usage.estimated
    assert result.usage.input_tokens >= 30 and result.usage.output_tokens >= 3


# -- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_wrong_key_is_auth_and_never_shows_the_key(
    stream: bool, fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    wrong = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"
    spec = policy_from_dict(
        {}, env={"OPENAI_API_KEY": wrong, "OPENAI_BASE_URL": fake.base_url}
    ).providers["openai"]
    error, _ = await failure(
        OpenAIProvider(spec, session),
        ChatRequest.of("hi"),
        policy.models["openai/gpt-4o-mini"],
        stream,
    )
    assert error.failure == FailureClass.AUTH and error.upstream_status == 401
    assert wrong not in str(error) and "Incorrect API key provided" in str(error)


async def test_missing_key_fails_without_calling(
    fake: FakeOpenAI, policy: Policy, session: aiohttp.ClientSession
) -> None:
    provider = openai_provider(policy, session, credentials=())
    error, _ = await failure(
        provider, ChatRequest.of("hi"), policy.models["openai/gpt-4o-mini"], False
    )
    assert error.failure == FailureClass.AUTH and fake.received == []


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_compatible_server_without_key(
    stream: bool, session: aiohttp.ClientSession
) -> None:
    async with FakeOpenAI(auth=False) as server:
        assert isinstance(server, FakeOpenAI)
        config = {
            "providers": {"lmstudio": {"type": "openai-compatible", "base_url": server.base_url}},
            "models": {
                "lmstudio/qwen2.5-7b-instruct": {
                    "tier": "local",
                    "price": {"input": 0, "output": 0},
                    "context_window": 32768,
                    "max_output": 2048,
                }
            },
        }
        policy = policy_from_dict(config, env={})
        provider = OpenAICompatibleProvider(policy.providers["lmstudio"], session)
        request = dataclasses.replace(ChatRequest.of("hi"), temperature=0.7)
        result = await run(provider, request, policy.models["lmstudio/qwen2.5-7b-instruct"], stream)
        assert result.text == "Hello from the fake."
        sent = server.received[-1]
        assert "Authorization" not in sent.headers
        assert (sent.json["model"], sent.json["max_tokens"], sent.json["temperature"]) == (
            "qwen2.5-7b-instruct",
            2048,
            0.7,
        )
        assert "max_completion_tokens" not in sent.json


# -- the fake is faithful to the real API ----------------------------------------------------


async def _post(
    session: aiohttp.ClientSession, url: str, body: Any, key: str | None = KEY
) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with session.post(url, json=body, headers=headers) as response:
        return response.status, await response.read()


EVENTS: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)


def _frames(body: bytes) -> list[str]:
    return [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize(
    "reply",
    [
        Reply.ok("hi there", thinking="hm"),
        Reply.tools(ToolCall("f", {"a": 1}), text="calling"),
        Reply.ok("x", stop="max_tokens"),
    ],
    ids=["text", "tools", "length"],
)
async def test_fake_bodies_validate_against_the_sdk_models(
    reply: Reply, fake: FakeOpenAI, session: aiohttp.ClientSession
) -> None:
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    responses = {"model": "gpt-5.1-codex", "input": "hi"}
    fake.push(reply, reply, reply, reply)
    _, body = await _post(session, fake.base_url + "/chat/completions", chat)
    ChatCompletion.model_validate_json(body)
    _, body = await _post(
        session,
        fake.base_url + "/chat/completions",
        {**chat, "stream": True, "stream_options": {"include_usage": True}},
    )
    frames = _frames(body)
    assert frames[-1] == "[DONE]"
    for frame in frames[:-1]:
        ChatCompletionChunk.model_validate_json(frame)
    _, body = await _post(session, fake.base_url + "/responses", responses)
    Response.model_validate_json(body)
    _, body = await _post(session, fake.base_url + "/responses", {**responses, "stream": True})
    events = [EVENTS.validate_json(f) for f in _frames(body)]
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_official_sdk_talks_to_the_fake(fake: FakeOpenAI) -> None:
    hi: list[Any] = [{"role": "user", "content": "hi"}]
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0) as client:
        fake.push(Reply.tools(ToolCall("f", {"a": 1}, id="call_9")))
        completion = await client.chat.completions.create(model="gpt-4o-mini", messages=hi)
        calls = completion.choices[0].message.tool_calls or []
        assert [c.id for c in calls] == ["call_9"]
        stream = await client.responses.create(model="gpt-5.1-codex", input="hi", stream=True)
        kinds = [event.type async for event in stream]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        fake.push(fake.error("insufficient_quota"))
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=hi)
        assert caught.value.code == "insufficient_quota"
        models = await client.models.list()
        assert "gpt-4o-mini" in [m.id for m in models.data]


@pytest.mark.parametrize(
    ("kind", "adapter"),
    [
        ("openai", OpenAIProvider),
        ("openai-codex", OpenAICodexProvider),
        ("openrouter", OpenRouterProvider),
        ("openai-compatible", OpenAICompatibleProvider),
    ],
)
async def test_registry_builds_the_adapters(
    kind: str, adapter: type[OpenAIProvider], session: aiohttp.ClientSession
) -> None:
    spec = ProviderSpec(name=kind, type=kind, base_url="http://127.0.0.1:9/v1")
    provider: Provider = registry.build(spec, session)
    assert type(provider) is adapter and provider.spec is spec


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/chat/completions",
            {"model": "o3-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
            "Use 'max_completion_tokens' instead",
        ),
        (
            "/chat/completions",
            {"model": "gpt-5", "temperature": 0.2, "messages": [{"role": "user", "content": "x"}]},
            "'temperature' does not support 0.2",
        ),
        ("/chat/completions", {"model": "gpt-4o-mini", "messages": []}, "empty array"),
        ("/chat/completions", {"model": "gpt-4o-mini"}, "Missing required parameter: 'messages'"),
        (
            "/chat/completions",
            {"messages": [{"role": "user", "content": "x"}]},
            "you must provide a model parameter",
        ),
        (
            "/chat/completions",
            {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "c1", "content": "r"},
                ],
            },
            "must be a response to a preceeding message with 'tool_calls'",
        ),
        (
            "/chat/completions",
            {
                "model": "gpt-4o-mini",
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    },
                    {"role": "user", "content": "x"},
                ],
            },
            "did not have response messages: c1",
        ),
        (
            "/responses",
            {
                "model": "gpt-5.1-codex",
                "input": [{"type": "function_call_output", "call_id": "c1", "output": "r"}],
            },
            "No tool call found for function call output with call_id c1.",
        ),
        (
            "/responses",
            {
                "model": "gpt-5.1-codex",
                "input": [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}],
            },
            "Supported values are: 'output_text' and 'refusal'.",
        ),
        (
            "/responses",
            {"model": "gpt-5.1-codex", "input": "x", "max_tokens": 5},
            "moved to 'max_output_tokens'",
        ),
    ],
)
async def test_fake_rejects_what_openai_rejects(
    path: str, body: dict[str, Any], message: str, fake: FakeOpenAI, session: aiohttp.ClientSession
) -> None:
    status, raw = await _post(session, fake.base_url + path, body)
    assert status == 400
    error = json.loads(raw)["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "You didn't provide an API key"),
        ("sk-other-key-000000000000", "Incorrect API key provided: sk-other"),
    ],
)
async def test_fake_checks_the_key(
    key: str | None, message: str, fake: FakeOpenAI, session: aiohttp.ClientSession
) -> None:
    status, raw = await _post(
        session,
        fake.base_url + "/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
        key,
    )
    assert status == 401 and message in json.loads(raw)["error"]["message"]
    assert "sk-other-key-000000000000" not in raw.decode()


async def test_fake_reports_unknown_models(session: aiohttp.ClientSession) -> None:
    async with FakeOpenAI(models=["gpt-4o-mini"]) as server:
        status, raw = await _post(
            session,
            server.url + "/v1/chat/completions",
            {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]},
        )
    assert status == 404 and json.loads(raw)["error"]["code"] == "model_not_found"
