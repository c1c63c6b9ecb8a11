"""The Ollama adapter against the fake Ollama on 127.0.0.1: answers, what it sent, every failure."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from stellwerk.config import policy_from_dict
from stellwerk.errors import ProviderError
from stellwerk.failures import FailureClass
from stellwerk.policy import Credential, ModelSpec, Policy, ProviderSpec, Secret
from stellwerk.providers._http import new_session
from stellwerk.providers.ollama import (
    OllamaProvider,
    context_length,
    list_models,
    running_models,
    show_model,
    version,
)
from stellwerk.testing._server import Reply, ToolCall
from stellwerk.testing.ollama import CONTEXT_OVERFLOW, STREAM_ERROR, FakeOllama
from stellwerk.types import (
    ChatRequest,
    Chunk,
    ImagePart,
    Message,
    StreamEnd,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolCallDelta,
    ToolCallStart,
    ToolResultPart,
)

# testing/_server.py passes shutdown_timeout to TCPSite, which aiohttp 3.10+ deprecates

WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    server = FakeOllama()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as s:
        yield s


@pytest.fixture
def policy(fake: FakeOllama) -> Policy:
    return policy_from_dict({}, env={"OLLAMA_HOST": fake.url})


@pytest.fixture
def spec(policy: Policy) -> ProviderSpec:
    return policy.providers["ollama"]


@pytest.fixture
def ollama(spec: ProviderSpec, session: aiohttp.ClientSession) -> OllamaProvider:
    return OllamaProvider(spec, session)


@pytest.fixture
def r1(policy: Policy) -> ModelSpec:
    return policy.models["ollama/deepseek-r1"]


@pytest.fixture
def qwen(policy: Policy) -> ModelSpec:
    return policy.models["ollama/qwen3-4b"]


async def _call(
    provider: OllamaProvider,
    request: ChatRequest,
    model: ModelSpec,
    stream: bool,
    credential: Credential | None = None,
) -> list[Chunk]:
    """The stream's chunks, or the complete answer's content wrapped as one pseudo chunk list."""
    if stream:
        return [c async for c in provider.stream(request, model, credential)]
    response = await provider.complete(request, model, credential)
    return [TextDelta(response.text), StreamEnd(response.stop_reason, response.usage)]


async def _failure(
    provider: OllamaProvider, request: ChatRequest, model: ModelSpec, stream: bool
) -> tuple[ProviderError, list[Chunk]]:
    seen: list[Chunk] = []
    with pytest.raises(ProviderError) as info:
        if stream:
            async for chunk in provider.stream(request, model, None):
                seen.append(chunk)
        else:
            await provider.complete(request, model, None)
    return info.value, seen


# -- answers ---------------------------------------------------------------------------------


async def test_plain_answer(fake: FakeOllama, ollama: OllamaProvider, r1: ModelSpec) -> None:
    fake.push(Reply.ok("Hello! How can I help you today?", usage=(11, 18)))
    response = await ollama.complete(ChatRequest.of("hi"), r1, None)
    assert response.text == "Hello! How can I help you today?"
    assert response.target == "ollama/deepseek-r1"
    assert response.upstream_model == "deepseek-r1:8b"
    assert response.stop_reason == "end"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 18)
    assert not response.usage.estimated


async def test_streaming_answer_arrives_in_order(
    fake: FakeOllama, ollama: OllamaProvider, r1: ModelSpec
) -> None:
    fake.push(Reply.ok("The sky is blue", thinking="Rayleigh scattering", usage=(26, 4)))
    chunks = [c async for c in ollama.stream(ChatRequest.of("why?"), r1, None)]
    assert chunks[:-1] == [
        ThinkingDelta("Rayleigh"),
        ThinkingDelta(" scattering"),
        TextDelta("The"),
        TextDelta(" sky"),
        TextDelta(" is"),
        TextDelta(" blue"),
    ]
    end = chunks[-1]
    assert isinstance(end, StreamEnd)
    assert end.stop_reason == "end"
    assert (end.usage.input_tokens, end.usage.output_tokens) == (26, 4)
    assert end.upstream_model == "deepseek-r1:8b"


async def test_thinking_is_a_thinking_part(
    fake: FakeOllama, ollama: OllamaProvider, r1: ModelSpec
) -> None:
    fake.push(Reply.ok("3", thinking="s-t-r-a-w-b-e-r-r-y: three r"))
    response = await ollama.complete(ChatRequest.of("How many r in strawberry?"), r1, None)
    assert response.content == (ThinkingPart("s-t-r-a-w-b-e-r-r-y: three r"), TextPart("3"))


@pytest.mark.parametrize("stream", [False, True])
async def test_token_limit_is_max_tokens(
    fake: FakeOllama, ollama: OllamaProvider, r1: ModelSpec, stream: bool
) -> None:
    fake.push(Reply.ok("cut off", stop="max_tokens"))
    end = (await _call(ollama, ChatRequest.of("long story"), r1, stream))[-1]
    assert isinstance(end, StreamEnd) and end.stop_reason == "max_tokens"


@pytest.mark.parametrize("stream", [False, True])
async def test_cached_prompt_usage_is_estimated(
    fake: FakeOllama, ollama: OllamaProvider, r1: ModelSpec, stream: bool
) -> None:
    fake.push(Reply.ok("again", usage=(0, 2)))  # Ollama omits a zero prompt_eval_count
    end = (await _call(ollama, ChatRequest.of("same prompt " * 20), r1, stream))[-1]
    assert isinstance(end, StreamEnd)
    assert end.usage.estimated
    assert end.usage.input_tokens > 40
    assert end.usage.output_tokens == 2


# -- what Ollama receives --------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_request_carries_window_limit_think_and_stream_flag(
    fake: FakeOllama, ollama: OllamaProvider, r1: ModelSpec, stream: bool
) -> None:
    request = ChatRequest(
        messages=(Message.of("user", "hi"),), system="Be brief.", max_tokens=200, temperature=0.2
    )
    await _call(ollama, request, r1, stream)
    (sent,) = fake.received
    assert (sent.method, sent.path) == ("POST", "/api/chat")
    assert sent.model == "deepseek-r1:8b"
    assert sent.json["stream"] is stream
    assert sent.json["think"] is True
    assert sent.json["options"] == {"num_ctx": 16384, "num_predict": 200, "temperature": 0.2}
    assert sent.json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert "authorization" not in {k.lower() for k in sent.headers}


async def test_the_loaded_model_runs_with_the_catalog_window(
    fake: FakeOllama, ollama: OllamaProvider, r1: ModelSpec, qwen: ModelSpec, spec: ProviderSpec
) -> None:
    await ollama.complete(ChatRequest.of("hi"), r1, None)
    await ollama.complete(ChatRequest.of("hi"), qwen, None)
    async with new_session() as s:
        running = {m["name"]: m["context_length"] for m in await running_models(s, spec)}
    assert running == {"deepseek-r1:8b": r1.context_window, "qwen3:4b": qwen.context_window}


async def test_models_without_reasoning_get_no_think_flag(
    fake: FakeOllama, ollama: OllamaProvider, policy: Policy
) -> None:
    codellama = policy.models["ollama/codellama"]
    await ollama.complete(ChatRequest.of("def f():"), codellama, None)
    assert "think" not in fake.received[0].json
    assert fake.received[0].json["options"]["num_predict"] == min(codellama.max_output, 4096)


async def test_base64_images_are_sent_and_url_images_dropped(
    fake: FakeOllama, ollama: OllamaProvider, qwen: ModelSpec
) -> None:
    parts = (
        TextPart("what is in these?"),
        ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
        ImagePart(url="https://example.com/cat.png"),
    )
    await ollama.complete(ChatRequest(messages=(Message("user", parts),)), qwen, None)
    assert fake.received[0].json["messages"] == [
        {"role": "user", "content": "what is in these?", "images": ["iVBORw0KGgo="]}
    ]


async def test_credential_goes_as_bearer_to_a_proxied_ollama(
    spec: ProviderSpec, session: aiohttp.ClientSession, r1: ModelSpec
) -> None:
    async with FakeOllama(key="proxy-token-1234567890") as proxied:
        assert isinstance(proxied, FakeOllama)
        provider = OllamaProvider(replace(spec, base_url=proxied.url), session)
        good = Credential("ollama#1", Secret("proxy-token-1234567890"))
        assert (await provider.complete(ChatRequest.of("hi"), r1, good)).text
        assert proxied.received[0].headers["Authorization"] == "Bearer proxy-token-1234567890"
        bad = Credential("ollama#2", Secret("wrong-token-000000000"))
        with pytest.raises(ProviderError) as info:
            await provider.complete(ChatRequest.of("hi"), r1, bad)
    assert info.value.failure is FailureClass.AUTH
    assert "wrong-token" not in str(info.value)


# -- tools -----------------------------------------------------------------------------------


async def test_tool_call_round_trip(
    fake: FakeOllama, ollama: OllamaProvider, qwen: ModelSpec
) -> None:
    fake.push(Reply.tools(ToolCall("get_weather", {"city": "Berlin"})), Reply.ok("12 °C in Berlin"))
    ask = ChatRequest(messages=(Message.of("user", "Weather in Berlin?"),), tools=(WEATHER,))
    first = await ollama.complete(ask, qwen, None)
    assert first.stop_reason == "tool_use"
    (call,) = first.tool_calls
    assert (call.id, call.name, call.arguments) == ("call_0", "get_weather", '{"city":"Berlin"}')
    assert fake.received[0].json["tools"][0]["function"]["name"] == "get_weather"

    follow = replace(
        ask,
        messages=(
            *ask.messages,
            Message("assistant", (call,)),
            Message("tool", (ToolResultPart(call.id, "12 °C, cloudy"),)),
        ),
    )
    assert (await ollama.complete(follow, qwen, None)).text == "12 °C in Berlin"
    assert fake.received[1].json["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Berlin"}},
                }
            ],
        },
        {"role": "tool", "content": "12 °C, cloudy", "tool_name": "get_weather"},
    ]


async def test_streamed_tool_calls_keep_ollama_ids(
    fake: FakeOllama, ollama: OllamaProvider, qwen: ModelSpec
) -> None:
    fake.push(
        Reply.tools(
            ToolCall("get_weather", {"city": "Paris"}, id="call_x7k2p9qa"),
            ToolCall("get_weather", {"city": "Rome"}, id="call_m3n4b5v6"),
        )
    )
    ask = ChatRequest(messages=(Message.of("user", "Paris and Rome?"),), tools=(WEATHER,))
    chunks = [c async for c in ollama.stream(ask, qwen, None)]
    assert chunks[:-1] == [
        ToolCallStart(0, "call_x7k2p9qa", "get_weather"),
        ToolCallDelta(0, '{"city":"Paris"}'),
        ToolCallStart(1, "call_m3n4b5v6", "get_weather"),
        ToolCallDelta(1, '{"city":"Rome"}'),
    ]
    end = chunks[-1]
    assert isinstance(end, StreamEnd) and end.stop_reason == "tool_use"


async def test_tools_for_a_model_without_tool_support_is_the_callers_error(
    ollama: OllamaProvider, policy: Policy
) -> None:
    request = ChatRequest(messages=(Message.of("user", "weather?"),), tools=(WEATHER,))
    with pytest.raises(ProviderError) as info:
        await ollama.complete(request, policy.models["ollama/codellama"], None)
    assert info.value.failure is FailureClass.INVALID_REQUEST
    assert "does not support tools" in str(info.value)


# -- failures --------------------------------------------------------------------------------

FAILURES = [
    pytest.param(Reply.error(401, {"error": "unauthorized"}), FailureClass.AUTH, id="401-proxy"),
    pytest.param(Reply.error(403, {"error": "forbidden"}), FailureClass.AUTH, id="403-proxy"),
    pytest.param(
        Reply.error(429, {"error": "too many requests"}, {"Retry-After": "7"}),
        FailureClass.RATE_LIMIT,
        id="429",
    ),
    pytest.param(404, FailureClass.MODEL_NOT_FOUND, id="404"),
    pytest.param(
        Reply.error(400, {"error": CONTEXT_OVERFLOW}), FailureClass.CONTEXT_OVERFLOW, id="context"
    ),
    pytest.param(400, FailureClass.INVALID_REQUEST, id="400"),
    pytest.param(
        Reply.error(400, {"error": "model is required"}),
        FailureClass.INVALID_REQUEST,
        id="400-model",
    ),
    pytest.param(500, FailureClass.SERVER, id="500-oom"),
    pytest.param(502, FailureClass.SERVER, id="502"),
    pytest.param(503, FailureClass.OVERLOADED, id="503-busy"),
    pytest.param(Reply.error(529, {"error": "overloaded"}), FailureClass.OVERLOADED, id="529"),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("reply", "failure"), FAILURES)
async def test_error_answers_are_classified(
    fake: FakeOllama,
    ollama: OllamaProvider,
    r1: ModelSpec,
    reply: Reply | int,
    failure: FailureClass,
    stream: bool,
) -> None:
    fake.push(reply)
    error, seen = await _failure(ollama, ChatRequest.of("hi"), r1, stream)
    assert error.failure is failure
    assert error.target == "ollama/deepseek-r1"
    assert seen == []
    assert not error.after_first_token
    if failure is FailureClass.RATE_LIMIT:
        assert error.retry_after == 7.0


@pytest.mark.parametrize("stream", [False, True])
async def test_model_not_pulled_is_model_not_found(
    fake: FakeOllama, ollama: OllamaProvider, r1: ModelSpec, stream: bool
) -> None:
    missing = replace(r1, id="ollama/llama9", upstream="llama9:70b")
    error, _ = await _failure(ollama, ChatRequest.of("hi"), missing, stream)
    assert error.failure is FailureClass.MODEL_NOT_FOUND
    assert error.upstream_status == 404
    assert 'model "llama9:70b" not found, try pulling it first' in str(error)


@pytest.mark.parametrize("stream", [False, True])
async def test_no_answer_in_time_is_timeout(
    fake: FakeOllama,
    session: aiohttp.ClientSession,
    spec: ProviderSpec,
    r1: ModelSpec,
    stream: bool,
) -> None:
    fake.push(Reply.hang(1.0))
    provider = OllamaProvider(replace(spec, read_timeout=0.2), session)
    error, _ = await _failure(provider, ChatRequest.of("hi"), r1, stream)
    assert error.failure is FailureClass.TIMEOUT


async def test_a_stream_that_stalls_after_a_token_times_out_without_fallback(
    fake: FakeOllama, session: aiohttp.ClientSession, spec: ProviderSpec, r1: ModelSpec
) -> None:
    fake.push(Reply.ok("slow words here", chunk_delay=1.0))
    provider = OllamaProvider(replace(spec, read_timeout=0.2), session)
    error, seen = await _failure(provider, ChatRequest.of("hi"), r1, True)
    assert error.failure is FailureClass.TIMEOUT
    assert seen == [TextDelta("slow")]
    assert error.after_first_token and not error.fallback


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("stream", [False, True])
async def test_ollama_not_running_is_connect(
    session: aiohttp.ClientSession, spec: ProviderSpec, r1: ModelSpec, stream: bool
) -> None:
    down = replace(spec, base_url=f"http://127.0.0.1:{_closed_port()}", connect_timeout=1.0)
    error, _ = await _failure(OllamaProvider(down, session), ChatRequest.of("hi"), r1, stream)
    assert error.failure is FailureClass.CONNECT
    assert error.fallback


async def test_malformed_json_answer_is_server(
    fake: FakeOllama, ollama: OllamaProvider, r1: ModelSpec
) -> None:
    fake.push(Reply.malformed())
    error, _ = await _failure(ollama, ChatRequest.of("hi"), r1, False)
    assert error.failure is FailureClass.SERVER


BROKEN = [
    pytest.param(Reply.ok("one two three", break_after=0), 0, id="drop-before-first-token"),
    pytest.param(Reply.ok("one two three", break_after=1), 1, id="drop-after-first-token"),
    pytest.param(Reply.ok("one two three", truncate_after=2), 2, id="no-final-object"),
    pytest.param(FakeOllama.raw_stream(), 0, id="empty-stream"),
    pytest.param(FakeOllama.raw_stream(b"<html>502</html>"), 0, id="malformed-first-line"),
    pytest.param(
        FakeOllama.raw_stream(FakeOllama.chunk("Yes"), b'{"model":"deepseek-r1:8b","mess'),
        1,
        id="malformed-later-line",
    ),
    pytest.param(
        FakeOllama.raw_stream(FakeOllama.chunk("Yes"), {"error": STREAM_ERROR}),
        1,
        id="error-line-mid-stream",
    ),
]


@pytest.mark.parametrize(("reply", "delivered"), BROKEN)
async def test_broken_streams(
    fake: FakeOllama, ollama: OllamaProvider, r1: ModelSpec, reply: Reply, delivered: int
) -> None:
    fake.push(reply)
    error, seen = await _failure(ollama, ChatRequest.of("count"), r1, True)
    assert error.failure is FailureClass.STREAM_BROKEN
    assert len(seen) == delivered
    assert error.after_first_token is (delivered > 0)
    assert error.fallback is (delivered == 0)


async def test_context_error_line_before_any_token_allows_fallback(
    fake: FakeOllama, ollama: OllamaProvider, r1: ModelSpec
) -> None:
    fake.push(FakeOllama.raw_stream({"error": CONTEXT_OVERFLOW}))
    error, seen = await _failure(ollama, ChatRequest.of("long"), r1, True)
    assert error.failure is FailureClass.CONTEXT_OVERFLOW
    assert seen == [] and error.fallback


# -- model management ------------------------------------------------------------------------


async def test_list_models_shows_size_and_details(
    fake: FakeOllama, session: aiohttp.ClientSession, spec: ProviderSpec
) -> None:
    models = {m["name"]: m for m in await list_models(session, spec)}
    assert set(models) == {"deepseek-r1:8b", "qwen3:4b", "codellama:7b"}
    assert models["codellama:7b"]["details"]["parameter_size"] == "7B"
    assert models["codellama:7b"]["details"]["quantization_level"] == "Q4_0"
    assert models["qwen3:4b"]["size"] > 0
    assert fake.received[0].path == "/api/tags"


async def test_show_model_gives_the_trained_context_window(
    fake: FakeOllama, session: aiohttp.ClientSession, spec: ProviderSpec
) -> None:
    show = await show_model(session, spec, "codellama:7b")
    assert context_length(show) == 16384
    assert "completion" in show["capabilities"]
    assert fake.received[0].json == {"model": "codellama:7b"}


async def test_show_unknown_model_is_model_not_found(
    session: aiohttp.ClientSession, spec: ProviderSpec
) -> None:
    with pytest.raises(ProviderError) as info:
        await show_model(session, spec, "llama9")
    assert info.value.failure is FailureClass.MODEL_NOT_FOUND
    assert "model 'llama9' not found" in str(info.value)


async def test_version(session: aiohttp.ClientSession, spec: ProviderSpec) -> None:
    assert await version(session, spec) == "0.12.6"


async def test_nothing_running_before_the_first_chat(
    session: aiohttp.ClientSession, spec: ProviderSpec
) -> None:
    assert await running_models(session, spec) == []


@pytest.mark.parametrize("call", [list_models, running_models, version])
async def test_management_calls_when_ollama_is_down_are_connect(
    session: aiohttp.ClientSession, spec: ProviderSpec, call: Any
) -> None:
    down = replace(spec, base_url=f"http://127.0.0.1:{_closed_port()}", connect_timeout=1.0)
    with pytest.raises(ProviderError) as info:
        await call(session, down)
    assert info.value.failure is FailureClass.CONNECT


async def test_management_calls_through_a_proxy_need_the_key(
    session: aiohttp.ClientSession, spec: ProviderSpec
) -> None:
    async with FakeOllama(key="proxy-token-1234567890") as proxied:
        proxied_spec = replace(spec, base_url=proxied.url)
        with pytest.raises(ProviderError) as info:
            await list_models(session, proxied_spec)
        key = Credential("ollama#1", Secret("proxy-token-1234567890"))
        assert len(await list_models(session, proxied_spec, key)) == 3
    assert info.value.failure is FailureClass.AUTH
