"""The running gateway probes cooled keys by itself and ends their cooldown when they work."""

from __future__ import annotations

import asyncio

from stellwerk.failures import FailureClass
from stellwerk.state import credential_key

from .conftest import CONFIG


async def _wait_until_gone(store, key: str, clock) -> bool:
    for _ in range(100):
        if key not in (await store.snapshot(clock())).cooldowns:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_gateway_probes_a_cooled_key_and_routing_returns(make_gateway, world):
    gw = await make_gateway({**CONFIG, "cooldowns": {"probe": {"every": "0.5s"}}})
    router = gw.router
    key = credential_key("openai#1", "openai/gpt-4o-mini")
    # a server-error cooldown of an hour that began a second ago: its probe is due
    await router.store.strike(key, FailureClass.SERVER, router.clock() - 1, lambda s: 3600)
    assert await _wait_until_gone(router.store, key, router.clock)
    probe = world.fakes["openai"].received[-1]
    assert probe.json["model"] == "gpt-4o-mini"
    assert probe.json["messages"][-1]["content"] == "ping"


async def test_billing_cooldowns_are_not_probed_by_default(make_gateway, world):
    gw = await make_gateway({**CONFIG, "cooldowns": {"probe": {"every": "0.5s"}}})
    router = gw.router
    key = credential_key("openai#1")
    await router.store.strike(key, FailureClass.BILLING, router.clock() - 1, lambda s: 3600)
    await asyncio.sleep(0.4)  # several probe rounds
    assert key in (await router.store.snapshot(router.clock())).cooldowns
    assert world.fakes["openai"].received == []
