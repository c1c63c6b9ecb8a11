"""Through the gateway: emergency mode by hand and its notices, the health watch, and heartbeats
that stay small and cheap on an agent with a long history, also after a fallback."""

from __future__ import annotations

import asyncio

from stellwerk.health import HealthWatch
from stellwerk.state.base import health_key
from stellwerk.testing.anthropic import CREDIT_TOO_LOW, anthropic_error
from stellwerk.tokens import estimate_prompt
from stellwerk.types import ChatRequest, Message

NOW = 1_800_000_000.0
DEFAULT: dict = {}  # the built-in strategy, pointed at the fakes
HEARTBEAT = (
    "Read HEARTBEAT.md if it exists (workspace context). Follow it strictly. Do not infer or"
    " repeat old tasks from prior chats. If nothing needs attention, reply HEARTBEAT_OK."
)
ANTHROPIC_HEARTBEAT = [{"role": "user", "content": [{"type": "text", "text": HEARTBEAT}]}]
SYSTEM = "You are Molty, a personal assistant running inside OpenClaw. Be brief."


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def long_history(turns: int = 100) -> list[dict]:
    """An agent conversation of about 100k tokens."""
    messages = []
    for i in range(turns):
        messages.append({"role": "user", "content": f"task {i}: " + "check the deploy logs. " * 70})
        messages.append({"role": "assistant", "content": f"done {i}: " + "all green here. " * 90})
    return messages


def heartbeat_body() -> dict:
    messages = [{"role": "system", "content": SYSTEM}, *long_history()]
    return {"model": "auto", "messages": [*messages, {"role": "user", "content": HEARTBEAT}]}


# -- emergency mode by hand ------------------------------------------------------------------


async def test_emergency_switched_on_through_the_api_marks_every_answer(make_gateway, world):
    gw = await make_gateway(DEFAULT)
    response = await gw.client.post("/api/emergency", json={"on": True})
    assert response.status == 200
    body = await response.json()
    assert (body["emergency"], body["changed"], body["reason"]) == (
        True,
        True,
        "by hand (status API)",
    )
    assert body["since"] is not None

    answer = await gw.chat({"model": "auto"})
    assert answer.status == 200
    assert answer.headers["x-stellwerk-model"] == "ollama/deepseek-r1"
    assert answer.headers["x-stellwerk-mode"] == "emergency"
    assert "emergency mode since" in answer.headers["x-stellwerk-notice"]
    assert "local models only" in answer.headers["x-stellwerk-notice"]
    assert world.fakes["openai"].received == []

    status = await (await gw.client.get("/api/status")).json()
    assert (status["mode"], status["emergency_reason"]) == ("emergency", "by hand (status API)")

    again = await (await gw.client.post("/api/emergency", json={"on": True})).json()
    assert again["changed"] is False
    off = await (await gw.client.post("/api/emergency", json={"on": False})).json()
    assert (off["emergency"], off["changed"]) == (False, True)
    normal = await gw.chat({"model": "auto"})
    assert "x-stellwerk-mode" not in normal.headers


async def test_the_emergency_api_needs_an_admin_key_and_a_clear_body(make_gateway):
    gw = await make_gateway(
        DEFAULT, api_keys=["client-key-0123456789"], admin_keys=["admin-key-0123456789"]
    )
    denied = await gw.client.post("/api/emergency", json={"on": True})
    assert denied.status == 401
    client = {"authorization": "Bearer client-key-0123456789"}
    refused = await gw.client.post("/api/emergency", json={"on": True}, headers=client)
    assert refused.status == 403  # a client key reads, never acts
    auth = {"authorization": "Bearer admin-key-0123456789"}
    bad = await gw.client.post("/api/emergency", json={"on": "yes"}, headers=auth)
    assert bad.status == 400
    assert "expected" in (await bad.json())["error"]["message"]
    ok = await gw.client.post("/api/emergency", json={"on": True}, headers=auth)
    assert ok.status == 200


async def test_an_anthropic_client_gets_the_notice_headers_too(make_gateway):
    gw = await make_gateway(DEFAULT)
    await gw.client.post("/api/emergency", json={"on": True})
    response = await gw.messages({"model": "auto", "stream": True})
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-stellwerk-mode"] == "emergency"
    assert b"event: message_stop" in await response.read()


# -- the health watch ------------------------------------------------------------------------


async def test_a_stopped_ollama_is_skipped_at_once_and_used_again_when_it_returns(
    make_gateway, world
):
    gw = await make_gateway(DEFAULT)
    router, ollama = gw.router, world.fakes["ollama"]
    watch = HealthWatch(lambda: router.policy, router.store, router.clock)
    await gw.client.post("/api/emergency", json={"on": True})
    try:
        assert await watch.check() == {"ollama": True}
        port = ollama.port
        await ollama.stop()
        assert await watch.check() == {"ollama": False}
        down = await gw.chat({"model": "auto"})
        assert down.status == 503
        assert "ollama down (health check)" in (await down.json())["error"]["message"]
        await ollama.start(port)
        assert await watch.check() == {"ollama": True}
        snapshot = await router.store.snapshot(router.clock())
        assert health_key("ollama") not in snapshot.cooldowns
        back = await gw.chat({"model": "auto"})
        assert back.headers["x-stellwerk-model"] == "ollama/deepseek-r1"
    finally:
        await watch.aclose()


async def test_the_gateway_runs_the_watch_in_the_background(make_gateway, world):
    gw = await make_gateway({"health": {"interval": "50ms"}})
    await world.fakes["ollama"].stop()
    for _ in range(200):
        snapshot = await gw.router.store.snapshot(gw.router.clock())
        if health_key("ollama") in snapshot.cooldowns:
            break
        await asyncio.sleep(0.01)
    assert snapshot.cooldowns[health_key("ollama")].until > snapshot.now


# -- heartbeats ------------------------------------------------------------------------------


async def test_a_heartbeat_on_a_long_history_stays_small_and_cheap_also_after_a_fallback(
    make_gateway, world
):
    gw = await make_gateway(DEFAULT)
    clock = gw.router.clock = Clock()
    body = heartbeat_body()
    history_tokens = estimate_prompt(
        ChatRequest(tuple(Message.of(m["role"], m["content"]) for m in body["messages"][1:]))
    )
    assert history_tokens > 100_000

    first = await gw.chat(body)
    assert first.status == 200
    assert first.headers["x-stellwerk-task"] == "heartbeat"
    assert first.headers["x-stellwerk-model"] == "anthropic/claude-haiku-4-5"
    sent = world.fakes["anthropic"].received[-1].json
    assert sent["system"] == SYSTEM
    assert sent["messages"] == ANTHROPIC_HEARTBEAT
    (decision,) = await gw.wait_decisions(1)
    assert decision.usage.input_tokens < 2_000, "a few hundred tokens, not 100k"

    world.fakes["anthropic"].push(anthropic_error(400, "invalid_request_error", CREDIT_TOO_LOW))
    fallback = await gw.chat(body)
    assert fallback.headers["x-stellwerk-model"] == "ollama/deepseek-r1"
    assert "anthropic/claude-haiku-4-5: billing" in fallback.headers["x-stellwerk-fallback"]
    local = world.fakes["ollama"].received[-1].json
    assert local["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": HEARTBEAT},
    ]

    clock.now += 600  # still cooling down: the heartbeat stays local, still minimal
    during = await gw.chat(body)
    assert during.headers["x-stellwerk-model"] == "ollama/deepseek-r1"
    assert len(world.fakes["ollama"].received[-1].json["messages"]) == 2

    clock.now += 2 * 3600  # the billing cooldown is over: back on the cheap cloud model
    anthropic_before = len(world.fakes["anthropic"].received)
    after = await gw.chat(body)
    assert after.headers["x-stellwerk-model"] == "anthropic/claude-haiku-4-5"
    assert len(world.fakes["anthropic"].received) == anthropic_before + 1
    assert world.fakes["anthropic"].received[-1].json["messages"] == ANTHROPIC_HEARTBEAT


async def test_a_heartbeat_in_emergency_mode_keeps_its_minimal_context(make_gateway, world):
    gw = await make_gateway(DEFAULT)
    await gw.client.post("/api/emergency", json={"on": True})
    response = await gw.chat(heartbeat_body())
    assert response.headers["x-stellwerk-model"] == "ollama/deepseek-r1"
    assert response.headers["x-stellwerk-mode"] == "emergency"
    assert len(world.fakes["ollama"].received[-1].json["messages"]) == 2
