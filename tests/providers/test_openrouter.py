"""The OpenRouter adapter against the fake OpenRouter: attribution, resolved model, cost, errors.

OpenRouter speaks Chat Completions under `/api/v1`, picks the model for `openrouter/auto` and says
which one it picked, reports the cost of every call in `usage.cost`, and has error answers of its
own (`{"error": {"message", "code"}}`, 402 for credits, 403 for per-key spend caps).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest

from stellwerk.config import policy_from_dict
from stellwerk.errors import ProviderError
from stellwerk.failures import FailureClass
from stellwerk.policy import Policy
from stellwerk.providers._http import new_session
from stellwerk.providers.openai import OpenRouterProvider
from stellwerk.testing._server import Reply
from stellwerk.testing.openai import FakeOpenRouter, raw_stream, sse
from stellwerk.types import ChatRequest, Chunk, StreamEnd, TextDelta, ThinkingDelta

KEY = "sk-or-v1-0123456789abcdef0123456789abcdef"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    server = FakeOpenRouter(key=KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    client = new_session()
    yield client
    await client.close()


@pytest.fixture
def policy(fake: FakeOpenRouter) -> Policy:
    return policy_from_dict(
        {}, env={"OPENROUTER_API_KEY": KEY, "OPENROUTER_BASE_URL": fake.base_url}
    )


@pytest.fixture
def provider(policy: Policy, session: aiohttp.ClientSession) -> OpenRouterProvider:
    return OpenRouterProvider(policy.providers["openrouter"], session)


async def collect(provider: OpenRouterProvider, policy: Policy, model: str) -> list[Chunk]:
    spec = policy.models[model]
    stream = provider.stream(ChatRequest.of("hi"), spec, provider.spec.credentials[0])
    return [chunk async for chunk in stream]


async def test_sends_attribution_headers_and_asks_for_usage(
    fake: FakeOpenRouter, policy: Policy, provider: OpenRouterProvider
) -> None:
    model = policy.models["openrouter/auto"]
    await provider.complete(ChatRequest.of("hi"), model, provider.spec.credentials[0])
    sent = fake.received[-1]
    assert sent.path == "/api/v1/chat/completions"
    assert sent.headers["HTTP-Referer"] == "https://github.com/stellwerk/stellwerk"
    assert sent.headers["X-Title"] == "Stellwerk"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.json["model"] == "openrouter/auto"
    assert sent.json["usage"] == {"include": True}
    assert sent.json["max_tokens"] == 4096 and "max_completion_tokens" not in sent.json


async def test_configured_headers_take_precedence(
    fake: FakeOpenRouter, policy: Policy, session: aiohttp.ClientSession
) -> None:
    spec = dataclasses.replace(policy.providers["openrouter"], headers={"X-Title": "My Agent"})
    provider = OpenRouterProvider(spec, session)
    await provider.complete(
        ChatRequest.of("hi"), policy.models["openrouter/auto"], spec.credentials[0]
    )
    assert fake.received[-1].headers["X-Title"] == "My Agent"


@pytest.mark.parametrize(
    ("model", "resolved"),
    [
        ("openrouter/auto", "anthropic/claude-3.5-haiku"),
        ("openrouter/free", "meta-llama/llama-3.3-70b-instruct:free"),
    ],
)
async def test_records_the_resolved_model_and_the_reported_cost(
    model: str, resolved: str, fake: FakeOpenRouter, policy: Policy, provider: OpenRouterProvider
) -> None:
    fake.push(Reply.ok("hi", cost=0.001234))
    response = await provider.complete(
        ChatRequest.of("hi"), policy.models[model], provider.spec.credentials[0]
    )
    assert response.target == model
    assert response.upstream_model == resolved
    assert response.cost_micros == 1234


async def test_streaming_records_the_resolved_model_and_cost(
    fake: FakeOpenRouter, policy: Policy, provider: OpenRouterProvider
) -> None:
    fake.push(Reply.ok("streamed answer", usage=(100, 10), cost=0.00012))
    chunks = await collect(provider, policy, "openrouter/auto")
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)) == "streamed answer"
    end = chunks[-1]
    assert isinstance(end, StreamEnd)
    assert (end.upstream_model, end.cost_micros) == ("anthropic/claude-3.5-haiku", 120)
    assert (end.usage.input_tokens, end.usage.output_tokens) == (100, 10)


async def test_cost_follows_the_usage_when_not_scripted(
    fake: FakeOpenRouter, policy: Policy, provider: OpenRouterProvider
) -> None:
    fake.push(Reply.ok("hi", usage=(1_000_000, 0)))
    response = await provider.complete(
        ChatRequest.of("hi"), policy.models["openrouter/auto"], provider.spec.credentials[0]
    )
    assert response.cost_micros == 800_000  # $0.80 per million input tokens


async def test_reasoning_arrives_as_thinking(
    fake: FakeOpenRouter, policy: Policy, provider: OpenRouterProvider
) -> None:
    fake.push(Reply.ok("yes", thinking="let me think"))
    chunks = await collect(provider, policy, "openrouter/auto")
    assert "".join(c.text for c in chunks if isinstance(c, ThinkingDelta)) == "let me think"


async def test_keep_alive_comments_are_skipped(
    fake: FakeOpenRouter, policy: Policy, provider: OpenRouterProvider
) -> None:
    chunk = {
        "id": "gen-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "anthropic/claude-3.5-haiku",
        "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}],
    }
    body = b": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\n" + sse(chunk) + sse("[DONE]")
    fake.push(raw_stream(body))
    chunks = await collect(provider, policy, "openrouter/auto")
    assert chunks[0] == TextDelta("ok") and isinstance(chunks[-1], StreamEnd)


async def test_error_during_generation_ends_the_stream(
    fake: FakeOpenRouter, policy: Policy, provider: OpenRouterProvider
) -> None:
    first = {
        "id": "gen-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "anthropic/claude-3.5-haiku",
        "choices": [{"index": 0, "delta": {"content": "Par"}, "finish_reason": None}],
    }
    failed = {
        **first,
        "error": {"code": 502, "message": "Provider disconnected unexpectedly"},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }
    fake.push(raw_stream(sse(first) + sse(failed)))
    chunks: list[Chunk] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in provider.stream(
            ChatRequest.of("hi"), policy.models["openrouter/auto"], provider.spec.credentials[0]
        ):
            chunks.append(chunk)
    assert chunks == [TextDelta("Par")]
    assert caught.value.failure == FailureClass.SERVER
    assert caught.value.after_first_token and not caught.value.fallback


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("name", "expected", "retry_after"),
    [
        ("insufficient_credits", FailureClass.BILLING, None),
        ("cannot_afford", FailureClass.BILLING, None),
        ("key_limit_daily", FailureClass.RATE_LIMIT, None),
        ("key_limit_total", FailureClass.BILLING, None),
        ("free_models_per_day", FailureClass.RATE_LIMIT, None),
        ("upstream_rate_limited", FailureClass.RATE_LIMIT, 7.0),
        ("user_not_found", FailureClass.AUTH, None),
        ("no_endpoints", FailureClass.MODEL_NOT_FOUND, None),
        ("context_length_exceeded", FailureClass.CONTEXT_OVERFLOW, None),
        ("invalid_request", FailureClass.INVALID_REQUEST, None),
        ("server_error", FailureClass.SERVER, None),
        ("provider_error", FailureClass.SERVER, None),
        ("no_providers", FailureClass.SERVER, None),
    ],
)
async def test_error_answers_are_classified(
    name: str,
    expected: FailureClass,
    retry_after: float | None,
    stream: bool,
    fake: FakeOpenRouter,
    policy: Policy,
    provider: OpenRouterProvider,
) -> None:
    fake.push(fake.error(name))
    model = policy.models["openrouter/auto"]
    with pytest.raises(ProviderError) as caught:
        if stream:
            await collect(provider, policy, model.id)
        else:
            await provider.complete(ChatRequest.of("hi"), model, provider.spec.credentials[0])
    assert caught.value.failure == expected
    assert caught.value.retry_after == retry_after
    assert caught.value.upstream_status == fake.errors[name][0]
    assert caught.value.target == "openrouter/auto"


async def test_wrong_key_is_auth(policy: Policy, session: aiohttp.ClientSession) -> None:
    async with FakeOpenRouter(key="sk-or-v1-right") as server:
        assert isinstance(server, FakeOpenRouter)
        env = {"OPENROUTER_API_KEY": KEY, "OPENROUTER_BASE_URL": server.base_url}
        spec = policy_from_dict({}, env=env).providers["openrouter"]
        provider = OpenRouterProvider(spec, session)
        with pytest.raises(ProviderError) as caught:
            await provider.complete(
                ChatRequest.of("hi"), policy.models["openrouter/auto"], spec.credentials[0]
            )
    assert caught.value.failure == FailureClass.AUTH
    assert "User not found." in str(caught.value) and KEY not in str(caught.value)
