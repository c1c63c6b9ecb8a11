"""A conversation with tools survives a fallback from Anthropic to OpenAI to Ollama intact."""

from __future__ import annotations

import json

import pytest

from stellwerk.router import Router
from stellwerk.state import MemoryStore
from stellwerk.testing._server import Reply, ToolCall
from stellwerk.testing.world import FakeWorld
from stellwerk.types import (
    ChatRequest,
    Message,
    TextPart,
    Tool,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
)

WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
HISTORY = (
    Message.of("user", "What's the weather in Oslo and in Bergen?"),
    Message(
        "assistant",
        (
            TextPart("Let me look both up."),
            ToolCallPart("call_oslo", "get_weather", '{"city": "Oslo"}'),
            ToolCallPart("call_bergen", "get_weather", '{"city": "Bergen"}'),
        ),
    ),
    Message(
        "tool",
        (ToolResultPart("call_oslo", "-3 °C, snow"), ToolResultPart("call_bergen", "4 °C, rain")),
    ),
)
CHAIN = {
    "stack": ["anthropic/claude-haiku-4-5", "openai/gpt-4o-mini", "ollama/qwen3-4b"],
    "tasks": {
        "simple": {
            "primary": "anthropic/claude-haiku-4-5",
            "fallbacks": ["openai/gpt-4o-mini", "ollama/qwen3-4b"],
        }
    },
}


@pytest.fixture
async def world():
    async with FakeWorld() as w:
        yield w


def _request(stream: bool = False) -> ChatRequest:
    return ChatRequest(messages=HISTORY, tools=(WEATHER,), model="auto:simple", stream=stream)


def _assert_history_sent_in_each_format(world: FakeWorld) -> None:
    anthropic = world.fakes["anthropic"].received[0].json
    assistant = anthropic["messages"][1]["content"]
    assert [b["type"] for b in assistant] == ["text", "tool_use", "tool_use"]
    assert assistant[1] == {
        "type": "tool_use",
        "id": "call_oslo",
        "name": "get_weather",
        "input": {"city": "Oslo"},
    }
    results = anthropic["messages"][2]["content"]
    assert [(b["type"], b["tool_use_id"]) for b in results] == [
        ("tool_result", "call_oslo"),
        ("tool_result", "call_bergen"),
    ]
    assert anthropic["tools"][0]["input_schema"] == WEATHER.parameters

    openai = world.fakes["openai"].received[0].json
    calls = openai["messages"][1]["tool_calls"]
    assert [(c["id"], c["function"]["name"]) for c in calls] == [
        ("call_oslo", "get_weather"),
        ("call_bergen", "get_weather"),
    ]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Oslo"}
    tool_msgs = [m for m in openai["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_msgs] == [
        ("call_oslo", "-3 °C, snow"),
        ("call_bergen", "4 °C, rain"),
    ]

    ollama = world.fakes["ollama"].received[0].json
    calls = ollama["messages"][1]["tool_calls"]
    assert calls[0]["function"] == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    tool_msgs = [m for m in ollama["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_msgs] == ["-3 °C, snow", "4 °C, rain"]
    assert ollama["tools"][0]["function"]["name"] == "get_weather"


async def test_tool_conversation_survives_two_fallbacks(world):
    world.fakes["anthropic"].push(529)
    world.fakes["openai"].push(500)
    world.fakes["ollama"].push(Reply.tools(ToolCall("get_weather", {"city": "Tromsø"})))
    async with Router(world.policy(CHAIN), MemoryStore()) as router:
        answer = await router.complete(_request())
    assert answer.decision.answered_by == "ollama/qwen3-4b"
    assert [a.failure for a in answer.decision.attempts] == ["overloaded", "server", None]
    call = answer.response.tool_calls[0]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Tromsø"})
    assert answer.response.stop_reason == "tool_use"
    _assert_history_sent_in_each_format(world)


async def test_streamed_tool_call_after_fallbacks(world):
    world.fakes["anthropic"].push(529)
    world.fakes["openai"].push(500)
    world.fakes["ollama"].push(Reply.tools(ToolCall("get_weather", {"city": "Tromsø"})))
    async with Router(world.policy(CHAIN), MemoryStore()) as router:
        routed = router.stream(_request(stream=True))
        chunks = [c async for c in routed]
    starts = [c for c in chunks if isinstance(c, ToolCallStart)]
    assert [s.name for s in starts] == ["get_weather"]
    assert routed.decision.answered_by == "ollama/qwen3-4b"
    _assert_history_sent_in_each_format(world)
