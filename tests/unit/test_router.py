"""The router's attempt loop with scripted in-process providers: order, rotation, cooldowns.

The protocol adapters are tested against faithful fake servers elsewhere; here each provider is a
script of outcomes, so every rule of the loop is visible in a few lines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from stellwerk.config import policy_from_dict
from stellwerk.errors import AllTargetsFailed, NoRouteAvailable, ProviderError
from stellwerk.failures import FailureClass
from stellwerk.fit import minimal_context
from stellwerk.policy import Credential, ModelSpec, ProviderSpec
from stellwerk.router import Router
from stellwerk.state import MemoryStore, credential_key, model_key
from stellwerk.types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    Message,
    StreamEnd,
    TextDelta,
    TextPart,
    Usage,
)

KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
    "OPENAI_API_KEY": "sk-proj-test-0123456789abcdef",
    "OPENAI_CODEX_API_KEY": "sk-codex-test-0123456789abcdef",
    "OPENROUTER_API_KEY": "sk-or-v1-test-0123456789abcdef",
}
NOW = 1_800_000_000.0


def fail(failure: FailureClass, status: int | None = None, retry_after: float | None = None):
    return ProviderError(failure, f"scripted {failure}", status=status, retry_after=retry_after)


@dataclass
class Scripted:
    """A provider whose outcomes per model are scripted: an exception, or text to answer."""

    spec: ProviderSpec
    script: dict[str, list[object]] = field(default_factory=dict)
    calls: list[tuple[str, str | None]] = field(default_factory=list)

    def _next(self, model: ModelSpec, credential: Credential | None) -> object:
        self.calls.append((model.id, credential.id if credential else None))
        queue = self.script.get(model.id) or ["ok"]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    async def complete(self, request, model, credential) -> ChatResponse:
        outcome = self._next(model, credential)
        if isinstance(outcome, BaseException):
            raise outcome
        return ChatResponse(
            model.id, (TextPart(f"{outcome} from {model.id}"),), usage=Usage(100, 20)
        )

    async def stream(self, request, model, credential) -> AsyncIterator[Chunk]:
        outcome = self._next(model, credential)
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, tuple):  # ("break", n): n deltas, then the stream breaks
            for i in range(outcome[1]):
                yield TextDelta(f"part{i} ")
            raise fail(FailureClass.STREAM_BROKEN)
        yield TextDelta(f"{outcome} ")
        yield TextDelta(f"from {model.id}")
        yield StreamEnd("end", Usage(100, 20))


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup():
    def make(raw=None, env=KEYS):
        policy = policy_from_dict(raw or {}, env=env)
        providers = {name: Scripted(spec) for name, spec in policy.providers.items()}
        decisions = []

        async def sink(decision):
            decisions.append(decision)

        clock = Clock()
        router = Router(policy, MemoryStore(), clock=clock, providers=providers, sink=sink)
        return router, providers, decisions, clock

    return make


def simple(text="What is the capital of France?") -> ChatRequest:
    return ChatRequest.of(text, model="auto:simple")


async def test_primary_answers(setup):
    router, providers, decisions, _ = setup()
    answer = await router.complete(simple())
    assert answer.response.target == "openai/gpt-4o-mini"
    assert answer.decision.answered_by == "openai/gpt-4o-mini"
    assert answer.decision.cost_micros == 27  # 100 × $0.15 + 20 × $0.60 per Mtok, rounded up
    assert len(decisions) == 1 and decisions[0].error is None


async def test_billing_failure_falls_back_and_cools_the_key_for_the_billing_period(setup):
    router, providers, decisions, clock = setup()
    providers["openai"].script["openai/gpt-4o-mini"] = [fail(FailureClass.BILLING, 429)]
    answer = await router.complete(simple())
    assert answer.response.target == "anthropic/claude-haiku-4-5"
    assert [a.failure for a in answer.decision.attempts] == ["billing", None]
    snapshot = await router.store.snapshot(clock.now)
    assert snapshot.cooldowns[credential_key("openai#1")].until == NOW + 7200
    assert "openai/gpt-4o-mini failed: billing" in answer.decision.notices[0]


async def test_next_request_skips_the_cooling_key_and_returns_after_the_cooldown(setup):
    router, providers, _, clock = setup()
    providers["openai"].script["openai/gpt-4o-mini"] = [fail(FailureClass.BILLING, 429), "ok"]
    await router.complete(simple())
    second = await router.complete(simple())
    assert second.response.target == "anthropic/claude-haiku-4-5"
    assert second.decision.attempts[0].target == "anthropic/claude-haiku-4-5"  # no retry
    skipped = {s.target: s.reason for s in second.decision.route.skipped}
    assert skipped["openai/gpt-4o-mini"].startswith("cooldown until")
    clock.now += 7201
    third = await router.complete(simple())
    assert third.response.target == "openai/gpt-4o-mini"  # the fallback did not stick


async def test_rate_limit_rotates_to_the_next_key_before_the_next_model(setup):
    env = {**KEYS, "K2": "sk-proj-second-0123456789abcdef"}
    router, providers, _, clock = setup(
        {"providers": {"openai": {"keys": ["${OPENAI_API_KEY}", "${K2}"]}}}, env
    )
    providers["openai"].script["openai/gpt-4o-mini"] = [
        fail(FailureClass.RATE_LIMIT, 429, retry_after=12),
        "ok",
    ]
    answer = await router.complete(simple())
    assert answer.response.target == "openai/gpt-4o-mini"
    assert providers["openai"].calls == [
        ("openai/gpt-4o-mini", "openai#1"),
        ("openai/gpt-4o-mini", "openai#2"),
    ]
    snapshot = await router.store.snapshot(clock.now)
    assert snapshot.cooldowns[credential_key("openai#1", "openai/gpt-4o-mini")].until == NOW + 12


async def test_server_error_does_not_rotate_keys(setup):
    env = {**KEYS, "K2": "sk-proj-second-0123456789abcdef"}
    router, providers, _, _ = setup(
        {"providers": {"openai": {"keys": ["${OPENAI_API_KEY}", "${K2}"]}}}, env
    )
    providers["openai"].script["openai/gpt-4o-mini"] = [fail(FailureClass.SERVER, 500)]
    answer = await router.complete(simple())
    assert answer.response.target == "anthropic/claude-haiku-4-5"
    assert providers["openai"].calls == [("openai/gpt-4o-mini", "openai#1")]


async def test_invalid_request_is_the_callers_error_no_fallback_no_cooldown(setup):
    router, providers, decisions, clock = setup()
    providers["openai"].script["openai/gpt-4o-mini"] = [fail(FailureClass.INVALID_REQUEST, 400)]
    with pytest.raises(ProviderError) as info:
        await router.complete(simple())
    assert info.value.failure is FailureClass.INVALID_REQUEST
    assert providers["anthropic"].calls == []
    assert (await router.store.snapshot(clock.now)).cooldowns == {}
    assert decisions[0].error.startswith("invalid_request")


async def test_context_overflow_moves_on_without_cooldown(setup):
    router, providers, _, clock = setup()
    providers["openai"].script["openai/gpt-4o-mini"] = [fail(FailureClass.CONTEXT_OVERFLOW, 400)]
    answer = await router.complete(simple())
    assert answer.response.target == "anthropic/claude-haiku-4-5"
    assert (await router.store.snapshot(clock.now)).cooldowns == {}


async def test_model_not_found_marks_only_that_model(setup):
    router, providers, _, clock = setup()
    providers["openai"].script["openai/gpt-4o-mini"] = [fail(FailureClass.MODEL_NOT_FOUND, 404)]
    await router.complete(simple())
    snapshot = await router.store.snapshot(clock.now)
    assert set(snapshot.cooldowns) == {model_key("openai/gpt-4o-mini")}


async def test_all_targets_failed_lists_every_attempt(setup):
    router, providers, decisions, _ = setup(env={})
    for name in ("ollama",):
        for model in ("ollama/deepseek-r1", "ollama/qwen3-4b", "ollama/codellama"):
            providers[name].script[model] = [fail(FailureClass.CONNECT)]
    with pytest.raises(AllTargetsFailed) as info:
        await router.complete(simple())
    # a refused connection cools the whole (keyless) Ollama credential: its other models are
    # not tried again within the same request
    assert [a[1] for a in info.value.attempts] == ["connect"]
    assert [(s.target, s.reason) for s in decisions[0].skipped] == [
        ("ollama/qwen3-4b", "cooled down by this request"),
        ("ollama/codellama", "cooled down by this request"),
    ]
    assert len(decisions) == 1 and decisions[0].answered_by is None


async def test_no_route_when_nothing_is_configured(setup):
    router, providers, decisions, _ = setup(
        {"stack": ["openai/gpt-4o-mini"], "tasks": {"simple": {"fallbacks": []}}}, env={}
    )
    with pytest.raises(NoRouteAvailable, match="openai/gpt-4o-mini: no key"):
        await router.complete(simple())
    assert len(decisions) == 1


async def test_stream_fails_over_before_the_first_token(setup):
    router, providers, decisions, _ = setup()
    providers["openai"].script["openai/gpt-4o-mini"] = [("break", 0)]
    routed = router.stream(simple())
    text = "".join([c.text async for c in routed if isinstance(c, TextDelta)])
    assert text == "ok from anthropic/claude-haiku-4-5"
    assert routed.decision.answered_by == "anthropic/claude-haiku-4-5"
    assert [a.failure for a in routed.decision.attempts] == ["stream_broken", None]


async def test_stream_broken_after_the_first_token_ends_without_splicing(setup):
    router, providers, decisions, _ = setup()
    providers["openai"].script["openai/gpt-4o-mini"] = [("break", 2)]
    seen = []
    with pytest.raises(ProviderError) as info:
        async for chunk in router.stream(simple()):
            seen.append(chunk)
    assert info.value.after_first_token
    assert [c.text for c in seen] == ["part0 ", "part1 "]
    assert providers["anthropic"].calls == []
    assert decisions[0].usage.estimated and decisions[0].answered_by is None


async def test_heartbeat_sends_only_system_and_the_latest_turn(setup):
    router, providers, _, _ = setup()
    history = tuple(
        Message.of("user" if i % 2 == 0 else "assistant", "old " * 500) for i in range(40)
    )
    request = ChatRequest(
        messages=(
            *history,
            Message.of("user", "Read HEARTBEAT.md if it exists. reply HEARTBEAT_OK"),
        ),
        system="You are a helpful agent.",
        model="auto:heartbeat",
    )
    sent = []

    async def spy(req, model, credential):
        sent.append(req)
        return ChatResponse(model.id, (TextPart("HEARTBEAT_OK"),), usage=Usage(10, 2))

    providers["anthropic"].complete = spy  # type: ignore[method-assign]
    answer = await router.complete(request)
    assert answer.response.target == "anthropic/claude-haiku-4-5"
    assert len(sent[0].messages) == 1 and sent[0].system == "You are a helpful agent."


def test_minimal_context_keeps_tool_exchange_after_the_last_user_turn():
    from stellwerk.types import ToolCallPart, ToolResultPart

    messages = (
        Message.of("user", "old"),
        Message.of("assistant", "old answer"),
        Message.of("user", "check the inbox"),
        Message("assistant", (ToolCallPart("c1", "inbox", "{}"),)),
        Message("user", (ToolResultPart("c1", "no mail"),)),
    )
    kept = minimal_context(ChatRequest(messages=messages)).messages
    assert kept == messages[2:]


async def test_reset_clears_cooldowns_of_a_provider(setup):
    router, providers, _, clock = setup()
    providers["openai"].script["openai/gpt-4o-mini"] = [fail(FailureClass.BILLING, 402)]
    providers["anthropic"].script["anthropic/claude-haiku-4-5"] = [fail(FailureClass.AUTH, 401)]
    await router.complete(simple())
    assert len((await router.store.snapshot(clock.now)).cooldowns) == 2
    assert await router.reset("openai") == 1
    assert set((await router.store.snapshot(clock.now)).cooldowns) == {
        credential_key("anthropic#1")
    }
