"""Every failure class × streaming and not × each protocol, through the router and real fakes.

Each case: the primary's fake answers with the provider's real failure, the fallback's fake
answers normally. The assertions are what a user notices: which target answered, what each fake
received, and what is cooling down afterwards.
"""

from __future__ import annotations

import pytest

from stellwerk.errors import ProviderError
from stellwerk.failures import FailureClass
from stellwerk.router import Router
from stellwerk.state import MemoryStore, cooldown_keys
from stellwerk.testing._server import Reply
from stellwerk.testing.anthropic import CREDIT_TOO_LOW, PROMPT_TOO_LONG, anthropic_error
from stellwerk.testing.ollama import CONTEXT_OVERFLOW
from stellwerk.testing.world import FakeWorld
from stellwerk.types import ChatRequest, TextDelta

# failure class -> (provider fake name, Reply factory) per protocol, with the real bodies
ANTHROPIC = {
    "billing": lambda f: anthropic_error(400, "invalid_request_error", CREDIT_TOO_LOW),
    "rate_limit": lambda f: f.error_reply(429),
    "overloaded": lambda f: f.error_reply(529),
    "server": lambda f: f.error_reply(500),
    "auth": lambda f: f.error_reply(401),
    "model_not_found": lambda f: f.error_reply(404),
    "context_overflow": lambda f: anthropic_error(400, "invalid_request_error", PROMPT_TOO_LONG),
    "invalid_request": lambda f: f.error_reply(400),
}
OPENAI = {
    "billing": lambda f: f.error("insufficient_quota"),
    "rate_limit": lambda f: f.error("rate_limit"),
    "overloaded": lambda f: f.error("engine_overloaded"),
    "server": lambda f: f.error("server_error"),
    "auth": lambda f: f.error("invalid_api_key"),
    "model_not_found": lambda f: f.error("model_not_found"),
    "context_overflow": lambda f: f.error("context_length_exceeded"),
    "invalid_request": lambda f: f.error("invalid_request"),
}
OLLAMA = {
    "rate_limit": lambda f: f.error_reply(429),
    "overloaded": lambda f: f.error_reply(503),
    "server": lambda f: f.error_reply(500),
    "auth": lambda f: f.error_reply(401),
    "model_not_found": lambda f: f.error_reply(404),
    "context_overflow": lambda f: Reply.error(400, {"error": CONTEXT_OVERFLOW}),
    "invalid_request": lambda f: f.error_reply(400),
}
COMMON = {
    "timeout": lambda f: Reply.hang(3.0),
    "stream_broken": lambda f: Reply.ok("never finished", break_after=0),
    "connect": None,  # the primary's server is stopped: connection refused
}
# primary, fallback, the primary's failures
PROTOCOLS = {
    "anthropic": ("anthropic/claude-haiku-4-5", "openai/gpt-4o-mini", ANTHROPIC),
    "openai-chat": ("openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", OPENAI),
    "openai-responses": ("openai-codex/gpt-5.3-codex", "anthropic/claude-haiku-4-5", OPENAI),
    "ollama": ("ollama/qwen3-4b", "openai/gpt-4o-mini", OLLAMA),
}
CASES = [
    pytest.param(proto, failure, stream, id=f"{proto}-{failure}-{'stream' if stream else 'plain'}")
    for proto, (_, _, table) in PROTOCOLS.items()
    for failure in [*table, *COMMON]
    for stream in (False, True)
    if not (failure == "stream_broken" and not stream)
]


@pytest.fixture
async def world():
    async with FakeWorld() as w:
        yield w


def _config(primary: str, fallback: str) -> dict:
    provider = primary.split("/")[0]
    return {
        "stack": [primary, fallback],
        "tasks": {"simple": {"primary": primary, "fallbacks": [fallback]}},
        "providers": {provider: {"read_timeout": 0.3}},
    }


async def _run(router: Router, stream: bool) -> tuple[str, str | None]:
    request = ChatRequest.of("What is the capital of Peru?", model="auto:simple")
    if not stream:
        answer = await router.complete(request)
        return answer.response.text, answer.decision.answered_by
    routed = router.stream(request)
    text = "".join([c.text async for c in routed if isinstance(c, TextDelta)])
    assert routed.decision is not None
    return text, routed.decision.answered_by


@pytest.mark.parametrize(("proto", "failure", "stream"), CASES)
async def test_failure_falls_back_and_cools_down_as_the_table_says(world, proto, failure, stream):
    primary, fallback, table = PROTOCOLS[proto]
    policy = world.policy(_config(primary, fallback))
    primary_fake = world.fakes[policy.models[primary].provider]
    fallback_fake = world.fakes[policy.models[fallback].provider]
    make = {**table, **COMMON}[failure]
    if make is None:
        await primary_fake.stop()
    else:
        primary_fake.push(make(primary_fake))
    store = MemoryStore()
    decisions = []

    async def sink(decision):
        decisions.append(decision)

    async with Router(policy, store, sink=sink) as router:
        if failure == "invalid_request":
            with pytest.raises(ProviderError) as info:
                await _run(router, stream)
            assert info.value.failure is FailureClass.INVALID_REQUEST
            assert fallback_fake.received == []  # the caller's own error: no fallback
            answered = None
        else:
            text, answered = await _run(router, stream)
            assert answered == fallback
            assert text  # the fallback's answer reached the caller
            assert len(fallback_fake.received) == 1
            assert fallback_fake.received[0].model == policy.models[fallback].upstream
        snapshot = await store.snapshot(router.clock())

    assert len(decisions) == 1
    attempts = decisions[0].attempts
    assert attempts[0].target == primary and attempts[0].failure == failure
    target = policy.models[primary]
    provider = policy.providers[target.provider]
    credential = provider.credentials[0].id if provider.credentials else None
    expected = set(cooldown_keys(FailureClass(failure), provider, credential, primary))
    assert set(snapshot.cooldowns) == expected
    if answered is not None:
        assert decisions[0].answered_by == fallback


async def test_stream_broken_after_first_token_is_not_spliced(world):
    primary, fallback = "anthropic/claude-haiku-4-5", "openai/gpt-4o-mini"
    policy = world.policy(_config(primary, fallback))
    world.fakes["anthropic"].push(Reply.ok("one two three four", break_after=2))
    async with Router(policy, MemoryStore()) as router:
        routed = router.stream(ChatRequest.of("Who painted Guernica?", model="auto:simple"))
        seen = []
        with pytest.raises(ProviderError) as info:
            async for chunk in routed:
                seen.append(chunk)
    assert info.value.after_first_token
    assert "".join(c.text for c in seen if isinstance(c, TextDelta)) == "one two "
    assert world.fakes["openai"].received == []
    assert routed.decision.usage.estimated
