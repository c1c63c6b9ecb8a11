"""The real OpenClaw agent's requests through the gateway, from the captures in
`../shared/clients/openclaw/captures/` (what OpenClaw 2026.9.6 sent; read there, never copied).

OpenClaw sends a ~40k-character system prompt and the same 11-12 tools with every request,
frames the human's words with a timestamp and a `Runtime:` line, and appends an internal-context
user message after them. What a user notices: heartbeats on the cheap heartbeat model with
minimal context, a greeting on the simple model, a tool loop that keeps its class.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from stellwerk.config import policy_from_dict
from stellwerk.explain import Explainer
from stellwerk.state.base import Snapshot

from ..conftest import capture
from .conftest import Gateway, MakeGateway

HAIKU, MINI = "anthropic/claude-haiku-4-5", "openai/gpt-4o-mini"


def body(request: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**request["body"], "model": "auto", "stream": False, **changes}


async def send(gw: Gateway, request: dict[str, Any], **changes: Any) -> Any:
    path = "/v1/messages" if request["route"] == "anthropic" else "/v1/chat/completions"
    response = await gw.client.post(path, json=body(request, **changes))
    assert response.status == 200, await response.text()
    return response


def upstream(gw: Gateway, provider: str) -> Any:
    """The last request body the fake `provider` received."""
    return gw.world.fakes[provider].received[-1].json


@pytest.fixture
async def agent(make_gateway: MakeGateway) -> Gateway:
    """A gateway on the default strategy (the 13-model stack and the class table)."""
    return await make_gateway({})


@pytest.mark.parametrize("name", ["heartbeat", "heartbeat_event"])
async def test_heartbeats_go_to_haiku_with_only_the_heartbeat_turn(agent, name):
    (request,) = capture(name)
    response = await send(agent, request)
    assert response.headers["x-stellwerk-task"] == "heartbeat"
    assert response.headers["x-stellwerk-model"] == HAIKU
    sent = upstream(agent, "anthropic")
    # the heartbeat prompt and OpenClaw's context message (one user turn for Anthropic), no
    # earlier poll or answer; the system prompt and the tools stay
    assert [m["role"] for m in sent["messages"]] == ["user"]
    texts = [block["text"] for block in sent["messages"][0]["content"]]
    assert "If nothing needs attention, reply NO_REPLY" in texts[0]
    assert "OPENCLAW_INTERNAL_CONTEXT" in texts[1]
    assert "heartbeat poll" not in "".join(texts)
    assert "OpenClaw" in json.dumps(sent["system"])
    assert len(sent["tools"]) == len(request["body"]["tools"])


@pytest.mark.parametrize("name", ["agent_turn", "agent_exec"])
async def test_a_greeting_goes_to_the_simple_model_with_its_context(agent, name):
    (request,) = capture(name)
    response = await send(agent, request)
    assert response.headers["x-stellwerk-task"] == "simple"
    assert response.headers["x-stellwerk-model"] == MINI
    sent = upstream(agent, "openai")
    assert len(sent["messages"]) == len(request["body"]["messages"])  # as sent: full context
    assert len(sent["tools"]) == len(request["body"]["tools"])


async def test_a_tool_loop_keeps_its_class_on_the_continuation(agent):
    first, continuation = capture("agent_turn_toolcall")
    tasks = []
    for request in (first, continuation):
        response = await send(agent, request)
        tasks.append((response.headers["x-stellwerk-task"], response.headers["x-stellwerk-model"]))
    assert tasks[0] == tasks[1]
    assert tasks[0][0] not in {"heartbeat", "code"}  # "List the files": not the poll before it
    decisions = await agent.wait_decisions(2)
    assert "continues a tool loop" in decisions[1].reason
    assert "continues a tool loop" not in decisions[0].reason


async def test_the_anthropic_route_with_polls_in_its_history_is_not_a_heartbeat(agent):
    (request,) = capture("agent_turn_anthropic")
    response = await send(agent, request)
    assert response.headers["x-stellwerk-task"] not in {"heartbeat", "code"}


async def test_a_poll_as_the_latest_turn_is_a_heartbeat_by_its_framing(agent):
    first, _ = capture("agent_turn_toolcall")
    messages = first["body"]["messages"]
    poll = {**first, "body": {**first["body"], "messages": [*messages[:2], messages[-1]]}}
    response = await send(agent, poll)
    assert response.headers["x-stellwerk-task"] == "heartbeat"
    decisions = await agent.wait_decisions(1)
    assert decisions[0].reason == "heartbeat (openclaw-heartbeat-poll framing)"


async def test_retried_and_queued_turns_keep_the_class_of_their_words(agent):
    requests = capture("fallback")
    tasks = {(await send(agent, r)).headers["x-stellwerk-task"] for r in requests}
    assert tasks == {"simple"}


def test_route_explains_what_the_gateway_does():
    """`stellwerk route --jsonl` reads the same whole requests to the same decision."""
    env = {
        "ANTHROPIC_API_KEY": "k",
        "OPENAI_API_KEY": "k",
        "OPENAI_CODEX_API_KEY": "k",
        "OPENROUTER_API_KEY": "k",
    }
    explainer = Explainer(policy_from_dict({}, env=env), Snapshot(now=0.0))
    for name, task, first, kept in [
        ("heartbeat_event", "heartbeat", HAIKU, 2),
        ("agent_turn", "simple", MINI, 2),
    ]:
        (request,) = capture(name)
        line = json.dumps({**body(request), "format": "openai"})
        result = explainer.explain_line(line)
        assert (result["task"], result["chain"][0]) == (task, first)
        assert result["context"]["messages"] == kept
        assert "ollama/codellama" not in result["chain"]
    # tools count as in the gateway: a model that cannot call them is left out
    tools = [{"type": "function", "function": {"name": "exec", "parameters": {}}}]
    short = {"messages": [{"role": "user", "content": "hi"}], "tools": tools, "model": "auto:code"}
    result = explainer.explain_line(json.dumps(short))
    skipped = {s["target"]: s["reason"] for s in result["skipped"]}
    assert "tools" in skipped["ollama/codellama"]


def typed(request: dict[str, Any], directive: str) -> list[dict[str, Any]]:
    """The capture's messages with `directive` typed at the start of the human's words."""
    messages = [dict(m) for m in request["body"]["messages"]]
    (at,) = [i for i, m in enumerate(messages) if "] Say hello" in str(m["content"])]
    messages[at]["content"] = messages[at]["content"].replace("] Say", f"] {directive}\nSay", 1)
    return messages


async def test_a_directive_picks_the_model_and_never_reaches_it(agent):
    (request,) = capture("agent_turn")
    messages = typed(request, "/model haiku")
    response = await send(agent, {**request, "body": {**request["body"], "messages": messages}})
    assert response.headers["x-stellwerk-model"] == HAIKU
    sent = json.dumps(upstream(agent, "anthropic")["messages"])
    assert "/model haiku" not in sent and "Say hello in five words." in sent


async def test_an_unknown_alias_in_a_directive_is_told_in_a_notice(agent):
    (request,) = capture("agent_turn")
    messages = typed(request, "/model haiku-9")
    response = await send(agent, {**request, "body": {**request["body"], "messages": messages}})
    assert response.headers["x-stellwerk-model"] == MINI  # classified as if it were not there
    assert (
        "directive '/model haiku-9' ignored: unknown model"
        in response.headers["x-stellwerk-notice"]
    )
    assert "/model haiku-9" not in json.dumps(upstream(agent, "openai")["messages"])


async def test_the_session_header_keeps_two_sessions_turns_apart(agent):
    (request,) = capture("agent_turn")
    path, body_ = "/v1/chat/completions", body(request)
    for session in ("a", "b", "a"):
        response = await agent.client.post(
            path, json=body_, headers={"x-stellwerk-session": session}
        )
        assert response.status == 200
    a, b, again = await agent.wait_decisions(3)
    assert a.turn == again.turn != b.turn
