"""Emergency mode end to end: into it, through it on local models, and out again.

The router runs against the fake providers on loopback with an injected clock, so the story of an
afternoon (a rate-limit storm, local answers, the cloud back after the cooldown) takes no time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from stellwerk import emergency
from stellwerk.errors import AllTargetsFailed, NoRouteAvailable
from stellwerk.router import Router
from stellwerk.state import MemoryStore, StateStore
from stellwerk.testing._server import Reply
from stellwerk.testing.ollama import CONTEXT_OVERFLOW
from stellwerk.testing.world import FakeWorld
from stellwerk.tokens import estimate_prompt
from stellwerk.types import (
    ChatRequest,
    Message,
    StreamEnd,
    TaskClass,
    TextDelta,
    Tool,
    ToolCallPart,
    ToolResultPart,
)

NOW = 1_800_000_000.0  # 08:00:00 UTC
QUESTION = ChatRequest.of("What is the capital of France?")
CLOUD_KEYS = ("cred:anthropic#1", "cred:openai#1", "cred:openai-codex#1", "cred:openrouter#1")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def world() -> AsyncIterator[FakeWorld]:
    async with FakeWorld() as w:
        yield w


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_router(world: FakeWorld, clock: Clock) -> AsyncIterator[object]:
    made: list[Router] = []

    def make(raw: dict | None = None, store: StateStore | None = None) -> Router:
        router = Router(world.policy(raw), store or MemoryStore(), clock=clock)
        made.append(router)
        return router

    yield make
    for router in made:
        await router.aclose()


async def cool_all_cloud_keys(store: StateStore, seconds: float = 7200) -> None:
    for key in CLOUD_KEYS:
        await store.strike(key, emergency.FailureClass.BILLING, NOW, lambda _: seconds)


def rate_limit_storm(world: FakeWorld) -> None:
    """The simple chain meets five 429s; the fifth starts emergency mode."""
    world.fakes["openai"].push(429)  # gpt-4o-mini
    world.fakes["anthropic"].push(429, 429)  # haiku, sonnet-4-0
    world.fakes["openrouter"].push(429)  # openrouter/auto
    world.fakes["anthropic"].push(429)  # opus


async def test_enters_when_every_cloud_target_is_cooling_down(make_router, world):
    router = make_router()
    await cool_all_cloud_keys(router.store)
    answer = await router.complete(QUESTION)
    decision = answer.decision
    assert answer.response.target == "ollama/deepseek-r1"
    assert (decision.emergency, decision.route.task) == ("on", TaskClass.EMERGENCY)
    assert decision.notices[0] == (
        "emergency mode since 08:00:00 (every cloud target is cooling down (the first is free at"
        " 10:00:00)): local models only, reduced functionality"
    )
    snapshot = await router.store.snapshot(NOW)
    assert snapshot.emergency and snapshot.emergency_since == NOW
    assert world.fakes["anthropic"].received == [] and world.fakes["openai"].received == []


async def test_a_user_without_cloud_keys_is_not_in_an_emergency(make_router):
    no_keys = {name: {"keys": []} for name in ("anthropic", "openai", "openai-codex", "openrouter")}
    router = make_router({"providers": no_keys})
    answer = await router.complete(QUESTION)
    assert answer.response.target == "ollama/deepseek-r1"
    assert answer.decision.emergency == ""
    assert not (await router.store.snapshot(NOW)).emergency


async def test_a_rate_limit_storm_enters_and_a_cloud_answer_after_the_cooldown_ends_it(
    make_router, world, clock, caplog
):
    router = make_router()
    rate_limit_storm(world)
    first = await router.complete(QUESTION)
    # the storm's own request is served too, by a local model: once the fifth 429 started the
    # mode, it tries no further cloud targets
    assert first.response.target == "ollama/deepseek-r1"
    assert [a.failure for a in first.decision.attempts] == ["rate_limit"] * 5 + [None]
    skipped = {s.target: s.reason for s in first.decision.skipped}
    assert skipped["anthropic/claude-sonnet-4-5"] == "emergency mode: local only"
    assert "emergency mode entered: local models only from here on" in first.decision.notices
    assert world.fakes["openai-codex"].received == []
    snapshot = await router.store.snapshot(clock())
    assert (snapshot.emergency, snapshot.emergency_reason) == (True, "5 rate limits in 5m")
    assert "emergency mode on: local models only (5 rate limits in 5m)" in caplog.text

    during = await router.complete(QUESTION)
    assert during.response.target == "ollama/deepseek-r1"
    assert during.decision.emergency == "on"
    assert during.decision.notices[0].startswith("emergency mode since 08:00:00 (5 rate limits")

    clock.now += 301  # every rate-limit cooldown has ended (Retry-After is capped at 5m)
    after = await router.complete(QUESTION)
    assert after.response.target == "openai/gpt-4o-mini"
    assert after.decision.emergency == "left"
    assert after.decision.notices == [
        "emergency mode: trying the cloud again",
        "emergency mode ended: the cloud answered again (openai/gpt-4o-mini)",
    ]
    snapshot = await router.store.snapshot(clock())
    assert not snapshot.emergency and snapshot.emergency_since == clock.now
    assert "emergency mode off: the cloud answered again" in caplog.text

    world.fakes["openai"].push(429)  # counting starts afresh: one rate limit is no storm
    assert (await router.complete(QUESTION)).decision.answered_by == "anthropic/claude-haiku-4-5"
    assert not (await router.store.snapshot(clock())).emergency


async def test_a_failed_retry_falls_back_and_stays_in_emergency(make_router, world, clock):
    router = make_router({"emergency": {"rate_limits": 2}})
    world.fakes["openai"].push(429)
    world.fakes["anthropic"].push(429)
    await router.complete(QUESTION)
    clock.now += 301
    for fake in ("openai", "anthropic", "openai-codex", "openrouter"):
        world.fakes[fake].push(*[429] * 8)
    retry = await router.complete(QUESTION)
    assert retry.response.target == "ollama/deepseek-r1"
    assert retry.decision.emergency == "on"
    assert retry.decision.notices[-1].startswith("emergency mode since 08:00:00 (2 rate limits")
    assert (await router.store.snapshot(clock())).emergency


async def test_switched_on_by_hand_it_stays_until_switched_off(make_router, world, clock):
    router = make_router()
    await emergency.switch(router.store, True, NOW, "by hand (test)")
    clock.now += 3600
    assert (await router.complete(QUESTION)).response.target == "ollama/deepseek-r1"
    assert await router.probe() == [], "no cloud probe while on by hand"
    await emergency.switch(router.store, False, clock(), "by hand (test)")
    assert (await router.complete(QUESTION)).response.target == "openai/gpt-4o-mini"


async def test_a_probe_that_reaches_the_cloud_ends_it(make_router, world, clock):
    router = make_router()
    rate_limit_storm(world)
    await router.complete(QUESTION)
    assert await router.probe() == [], "nothing due while the rate limits last"
    clock.now += 301
    results = await router.probe()
    assert results == [("emergency:anthropic/claude-sonnet-4-0", "ok")]
    snapshot = await router.store.snapshot(clock())
    assert not snapshot.emergency
    assert snapshot.emergency_reason == "a probe reached the cloud (anthropic/claude-sonnet-4-0)"


async def test_the_mode_is_shared_through_the_sqlite_store(make_router, world, tmp_path):
    from stellwerk.state import SQLiteStore

    gateway = make_router(store=SQLiteStore(tmp_path / "state.db"))
    cli = make_router(store=SQLiteStore(tmp_path / "state.db"))
    await emergency.switch(cli.store, True, NOW, "by hand (stellwerk emergency on)")
    assert (await gateway.complete(QUESTION)).decision.emergency == "on"


# -- reduced functionality, made explicit ----------------------------------------------------

TOOL = Tool("read_file", "Read a file from the workspace", {"type": "object", "properties": {}})


def agent_history(turns: int) -> tuple[Message, ...]:
    """A long agent session: questions, answers and tool calls with their results."""
    messages: list[Message] = []
    for i in range(turns):
        messages.append(Message.of("user", f"step {i}: " + "please look at the logs again. " * 30))
        call = ToolCallPart(f"call_{i}", "read_file", '{"path": "app.log"}')
        messages.append(Message("assistant", (call,)))
        messages.append(Message("tool", (ToolResultPart(f"call_{i}", "log line " * 120),)))
        messages.append(Message.of("assistant", f"finding {i}: " + "the cache is cold. " * 20))
    messages.append(Message.of("user", "So what is the root cause?"))
    return tuple(messages)


async def test_an_agent_request_is_fitted_to_the_local_model(make_router, world):
    router = make_router()
    await emergency.switch(router.store, True, NOW, "by hand (test)")
    request = ChatRequest(
        messages=agent_history(30), system="You are a careful SRE agent.", tools=(TOOL,)
    )
    request = replace(request, max_tokens=20_000)
    assert estimate_prompt(request) > 20_000
    answer = await router.complete(request)
    assert answer.response.target == "ollama/deepseek-r1"
    notices = answer.decision.notices
    assert notices[1] == "tools dropped: ollama/deepseek-r1 cannot call tools"
    assert notices[2] == "max_tokens capped to 8192 (ollama/deepseek-r1's limit)"
    assert notices[3].startswith("context fitted: dropped ")
    assert " of 121 messages (≈" in notices[3]
    sent = world.fakes["ollama"].received[-1].json
    assert "tools" not in sent
    assert sent["messages"][0] == {"role": "system", "content": "You are a careful SRE agent."}
    assert sent["messages"][-1]["content"] == "So what is the root cause?"
    assert sent["options"]["num_predict"] == 8192
    assert sent["options"]["num_ctx"] == 16384


async def test_a_request_that_needs_a_tool_goes_to_the_local_model_that_has_tools(
    make_router, world
):
    router = make_router()
    await emergency.switch(router.store, True, NOW, "by hand (test)")
    request = ChatRequest(messages=agent_history(3), tools=(TOOL,), tool_choice="required")
    answer = await router.complete(request)
    assert answer.response.target == "ollama/qwen3-4b"
    skipped = {s.target: s.reason for s in answer.decision.all_skipped}
    assert skipped["ollama/deepseek-r1"] == "lacks tools (the request requires a tool call)"
    assert world.fakes["ollama"].received[-1].json["tools"][0]["function"]["name"] == "read_file"


async def test_streams_are_fitted_too(make_router, world):
    router = make_router()
    await emergency.switch(router.store, True, NOW, "by hand (test)")
    request = replace(ChatRequest(messages=agent_history(30)), stream=True)
    routed = router.stream(request)
    chunks = [c async for c in routed]
    assert isinstance(chunks[-1], StreamEnd)
    assert any(isinstance(c, TextDelta) for c in chunks)
    assert routed.decision is not None and routed.decision.emergency == "on"
    assert routed.decision.notices[-1].startswith("context fitted: dropped ")
    assert len(world.fakes["ollama"].received[-1].json["messages"]) < 121


async def test_without_local_models_emergency_mode_has_no_route(make_router, world):
    router = make_router()
    await emergency.switch(router.store, True, NOW, "by hand (test)")
    await world.fakes["ollama"].stop()
    with pytest.raises(AllTargetsFailed) as caught:
        await router.complete(QUESTION)
    assert "ollama/deepseek-r1: connect" in str(caught.value)


async def test_a_context_overflow_fits_the_next_small_target(make_router, world):
    router = make_router(
        {
            "routing": {"classes": ["simple"]},
            "tasks": {"simple": {"primary": "ollama/codellama", "fallbacks": ["ollama/qwen3-4b"]}},
        }
    )
    world.fakes["ollama"].push(Reply.error(400, {"error": CONTEXT_OVERFLOW}))
    request = ChatRequest(messages=agent_history(4)[:-1] + (Message.of("user", "What now?"),))
    assert 3000 < estimate_prompt(request) < 6000, "fits both windows by the estimate"
    answer = await router.complete(request)
    assert answer.response.target == "ollama/qwen3-4b"
    assert answer.decision.fallbacks == ["ollama/codellama: context_overflow"]
    assert answer.decision.notices[-1].startswith("context fitted: dropped ")
    first, second = (r.json for r in world.fakes["ollama"].received[-2:])
    assert len(second["messages"]) < len(first["messages"])
    assert second["messages"][-1]["content"] == "What now?"


async def test_no_route_error_names_every_skipped_local_model(make_router, world):
    router = make_router()
    await emergency.switch(router.store, True, NOW, "by hand (test)")
    for key in ("cred:ollama#local",):
        await router.store.strike(key, emergency.FailureClass.CONNECT, NOW, lambda _: 60)
    with pytest.raises(NoRouteAvailable) as caught:
        await router.complete(QUESTION)
    assert "ollama/deepseek-r1" in str(caught.value)
