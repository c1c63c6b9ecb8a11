"""Prompt caching through the gateway: the client's breakpoints reach Anthropic unchanged,
Stellwerk places its own for clients that place none, OpenAI's cache key passes through, and
cache reads and writes are counted and priced at their own prices.

The fake Anthropic API caches prefixes as Anthropic documents it (`testing.anthropic.PromptCache`),
on a clock the tests move. The requests are the real OpenClaw agent's, from
`../shared/clients/openclaw/captures/` (see test_openclaw.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..conftest import capture
from .conftest import Gateway, MakeGateway
from .test_openclaw import HAIKU, send, upstream

SONNET = "anthropic/claude-sonnet-4-0"


@pytest.fixture
async def agent(make_gateway: MakeGateway) -> Gateway:
    return await make_gateway({})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(agent: Gateway) -> Clock:
    clock = Clock()
    agent.world.fakes["anthropic"].cache.clock = clock  # type: ignore[attr-defined]
    return clock


def marks(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """Where the breakpoints are: ("tools", i), ("system", i) or ("messages", i, j)."""
    found: list[tuple[str, Any]] = []
    for i, tool in enumerate(body.get("tools") or []):
        if "cache_control" in tool:
            found.append(("tools", i))
    system = body.get("system")
    for i, block in enumerate(system if isinstance(system, list) else []):
        if "cache_control" in block:
            found.append(("system", i))
    for i, message in enumerate(body["messages"]):
        content = message["content"]
        for j, block in enumerate(content if isinstance(content, list) else []):
            if "cache_control" in block:
                found.append(("messages", (i, j)))
    return found


async def test_an_anthropic_clients_breakpoints_reach_anthropic_unchanged(agent, clock):
    (request,) = capture("agent_turn_anthropic")
    client = request["body"]
    await send(agent, request, model=SONNET)
    sent = upstream(agent, "anthropic")
    assert sent["system"] == client["system"]  # two blocks, the marker on block 0
    assert sent["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    # the marked message block is the human's turn, still marked (Anthropic's consecutive user
    # turns arrive merged into one, so positions shift; the blocks do not change)
    marked = [
        block["text"]
        for message in sent["messages"]
        for block in message["content"]
        if "cache_control" in block
    ]
    assert len(marked) == 1 and "Reply briefly via the anthropic route." in marked[0]
    assert len(marks(sent)) == len(marks(client)) == 3
    # the same turn again: the prefix is read from the cache, and priced as a read
    await send(agent, request, model=SONNET)
    first, second = await agent.wait_decisions(2)
    assert first.usage.cache_write_tokens > 0 and first.usage.cache_read_tokens == 0
    assert second.usage.cache_read_tokens >= first.usage.cache_write_tokens * 0.9
    assert second.cost_micros < first.cost_micros / 3
    model = agent.router.policy.models[SONNET]
    assert second.cost_micros == model.cost_of(second.usage)


async def test_ttl_and_every_marker_pass_through_as_sent(agent, clock):
    (request,) = capture("agent_turn_anthropic")
    body = json.loads(json.dumps(request["body"]))
    body["system"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    await send(agent, {**request, "body": body}, model=SONNET)
    sent = upstream(agent, "anthropic")
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    (decision,) = await agent.wait_decisions(1)
    assert decision.usage.cache_write_1h_tokens > 0


async def test_stellwerk_marks_an_openai_clients_heartbeat_for_one_hour(agent, clock):
    (request,) = capture("heartbeat")
    await send(agent, request)
    sent = upstream(agent, "anthropic")
    assert marks(sent) == [("system", 0)]  # the prefix only: the next turn has a new time
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    clock.now += 30 * 60  # the next heartbeat, half an hour later: the system prompt is warm
    await send(agent, request)
    first, second = await agent.wait_decisions(2)
    assert first.answered_by == second.answered_by == HAIKU
    assert second.usage.cache_read_tokens > 0.9 * first.usage.cache_write_tokens
    assert second.cost_micros < first.cost_micros / 5


async def test_a_five_minute_cache_goes_cold_between_heartbeats(make_gateway, clock):
    gw = await make_gateway({"tasks": {"heartbeat": {"cache": "5m"}}})
    gw.world.fakes["anthropic"].cache.clock = clock  # type: ignore[attr-defined]
    (request,) = capture("heartbeat")
    await send(gw, request)
    assert upstream(gw, "anthropic")["system"][0]["cache_control"] == {"type": "ephemeral"}
    clock.now += 30 * 60
    await send(gw, request)
    _, second = await gw.wait_decisions(2)
    assert second.usage.cache_read_tokens == 0 and second.usage.cache_write_tokens > 0


async def test_a_conversation_is_marked_at_its_end_for_the_next_request_to_read(agent, clock):
    first, continuation = capture("agent_turn_toolcall")
    await send(agent, first, model="anthropic/claude-sonnet-4-0")
    sent = upstream(agent, "anthropic")
    assert marks(sent)[0] == ("system", 0)
    assert marks(sent)[-1][0] == "messages"  # the last block of the last message
    await send(agent, continuation, model="anthropic/claude-sonnet-4-0")
    one, two = await agent.wait_decisions(2)
    # the continuation reads the whole first request from the cache, not just the prefix
    assert two.usage.cache_read_tokens >= one.usage.cache_write_tokens * 0.95


async def test_no_breakpoints_when_the_class_says_off_or_the_prompt_is_short(make_gateway):
    gw = await make_gateway({"tasks": {"heartbeat": {"cache": "off"}}})
    (request,) = capture("heartbeat")
    await send(gw, request)
    assert marks(upstream(gw, "anthropic")) == []
    short = {"route": "openai", "body": {"messages": [{"role": "user", "content": "Hi"}]}}
    await send(gw, short, model="anthropic/claude-sonnet-4-0")
    sent = upstream(gw, "anthropic")
    assert marks(sent) == [] and "system" not in sent


async def test_openai_prompt_cache_key_passes_through(agent):
    (request,) = capture("agent_turn")
    await send(agent, request, prompt_cache_key="openclaw-main")
    assert upstream(agent, "openai")["prompt_cache_key"] == "openclaw-main"
    await send(agent, request, prompt_cache_key="openclaw-main", model="auto:code")
    assert upstream(agent, "openai-codex")["prompt_cache_key"] == "openclaw-main"
    await send(agent, request)
    assert "prompt_cache_key" not in upstream(agent, "openai")


async def test_openai_cached_tokens_are_read_and_priced_as_cache_reads(agent):
    (request,) = capture("agent_turn")
    await send(agent, request)
    await send(agent, request)  # OpenAI caches by itself: the same prefix again is read
    first, second = await agent.wait_decisions(2)
    assert first.usage.cache_read_tokens == 0
    assert second.usage.cache_read_tokens > 0.9 * second.usage.input_tokens
    model = agent.router.policy.models["openai/gpt-4o-mini"]
    assert model.cache_read_price == model.input_price // 2
    assert second.cost_micros == model.cost_of(second.usage) < first.cost_micros


async def test_tool_calls_reach_openai_in_the_same_bytes_from_either_client_format(agent):
    """An Anthropic client's tool_use `input` object is written as OpenAI's models write
    arguments, so a session that crosses formats keeps OpenAI's prefix cache at its tool calls."""
    call = {"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {"path": ".", "n": 2}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}
    anthropic_body = {
        "model": "openai/gpt-4o-mini",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "List the files."},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [result]},
        ],
    }
    assert (await agent.client.post("/v1/messages", json=anthropic_body)).status == 200
    sent = upstream(agent, "openai")["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert sent == '{"path":".","n":2}'


async def test_models_with_extended_retention_are_asked_for_it(agent):
    (request,) = capture("agent_turn")
    await send(agent, request, model="auto:code")
    assert upstream(agent, "openai-codex")["prompt_cache_retention"] == "24h"
    await send(agent, request)  # gpt-4o-mini offers no extended retention
    assert "prompt_cache_retention" not in upstream(agent, "openai")
    model = agent.router.policy.models["openai-codex/gpt-5.3-codex"]
    assert model.cache_retention == "24h"
