"""Probes end a cooldown early when the key works again, and leave billing alone by default."""

from __future__ import annotations

import pytest

from stellwerk.failures import FailureClass
from stellwerk.probe import due_probes
from stellwerk.router import Router
from stellwerk.state import FOREVER, Cooldown, MemoryStore, Snapshot, credential_key, model_key
from stellwerk.testing.world import FakeWorld
from stellwerk.types import ChatRequest

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def world():
    async with FakeWorld() as w:
        yield w


def _cooldown(key: str, reason: FailureClass, since: float, until: float) -> Cooldown:
    return Cooldown(key, until, reason, 1, since)


@pytest.mark.parametrize(
    ("key", "reason", "age", "raw", "expected"),
    [
        ("cred:openai#1|openai/gpt-4o-mini", FailureClass.SERVER, 301, {}, "openai/gpt-4o-mini"),
        ("cred:openai#1|openai/gpt-4o-mini", FailureClass.SERVER, 299, {}, None),  # not yet due
        ("cred:openai#1", FailureClass.BILLING, 3600, {}, None),  # billing: off by default
        (
            "cred:openai#1",
            FailureClass.BILLING,
            3600,
            {"cooldowns": {"probe": {"billing": True}}},
            "openai/gpt-4o-mini",
        ),  # the cheapest
        ("cred:anthropic#1", FailureClass.AUTH, 3600, {}, None),  # needs reset
        ("model:openai/o1", FailureClass.MODEL_NOT_FOUND, 3600, {}, None),
        ("cred:ollama#local", FailureClass.CONNECT, 400, {}, "ollama/codellama"),  # free: by id
        (
            "cred:openai#1|openai/gpt-4o-mini",
            FailureClass.SERVER,
            3600,
            {"cooldowns": {"probe": {"every": 0}}},
            None,
        ),  # probes switched off
    ],
)
def test_which_probes_are_due(world, key, reason, age, raw, expected):
    policy = world.policy(raw)
    until = FOREVER if reason in (FailureClass.AUTH, FailureClass.MODEL_NOT_FOUND) else NOW + 60
    snapshot = Snapshot(NOW, {key: _cooldown(key, reason, NOW - age, until)})
    due = due_probes(snapshot, policy)
    assert [d.model.id for d in due] == ([expected] if expected else [])


async def test_successful_probe_ends_the_cooldown_and_routing_returns(world):
    clock = Clock()
    store = MemoryStore()
    world.fakes["openai"].push(world.fakes["openai"].error("server_error"))
    async with Router(world.policy(), store, clock=clock) as router:
        first = await router.complete(ChatRequest.of("What is 2+2?", model="auto:simple"))
        assert first.decision.answered_by == "anthropic/claude-haiku-4-5"
        key = credential_key("openai#1", "openai/gpt-4o-mini")
        clock.now += 301
        # the breaker cooldown was 30 s; re-strike it to a long one to see the probe end it
        await store.strike(key, FailureClass.SERVER, clock.now, lambda s: 3600)
        assert await router.probe() == [(key, "ok")]
        probe_request = world.fakes["openai"].received[-1].json
        assert probe_request["max_completion_tokens"] == 8 or probe_request.get("max_tokens") == 8
        assert key not in (await store.snapshot(clock.now)).cooldowns
        again = await router.complete(ChatRequest.of("What is 3+3?", model="auto:simple"))
        assert again.decision.answered_by == "openai/gpt-4o-mini"


async def test_failed_probe_keeps_the_key_cooling(world):
    clock = Clock()
    store = MemoryStore()
    key = credential_key("openai#1", "openai/gpt-4o-mini")
    await store.strike(key, FailureClass.SERVER, NOW - 400, lambda s: 3600)
    world.fakes["openai"].push(world.fakes["openai"].error("server_error"))
    async with Router(world.policy(), store, clock=clock) as router:
        assert await router.probe() == [(key, "server")]
    snapshot = await store.snapshot(clock.now)
    assert snapshot.cooldowns[key].strikes == 2
    assert model_key("openai/gpt-4o-mini") not in snapshot.cooldowns
