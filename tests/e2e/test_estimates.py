"""Token estimates err on the safe side: never below what the providers count.

Whether a prompt fits a window, and what a budget reserves, is decided on `stellwerk.tokens`
before the call. Here realistic prompts go to every fake provider, and the prompt tokens each
reports (counted from the whole request body it received, as real providers count more than the
text) must not exceed the estimate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stellwerk.router import Router
from stellwerk.state import MemoryStore
from stellwerk.testing.world import FakeWorld
from stellwerk.tokens import estimate_prompt
from stellwerk.types import ChatRequest, Message, Tool, ToolCallPart, ToolResultPart

CODE = '''
def merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping intervals."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out
'''
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city"],
    },
)


def conversation() -> tuple[Message, ...]:
    turns = []
    for i in range(12):
        turns.append(Message.of("user", f"Question {i}: how do I rotate the logs on day {i}?"))
        turns.append(Message.of("assistant", "Use logrotate with a daily rule and compress. " * 6))
    return (*turns, Message.of("user", "And how do I test the config without waiting a day?"))


def with_tools() -> tuple[Message, ...]:
    call = ToolCallPart("call_1", "get_weather", '{"city": "Lisbon"}')
    return (
        Message.of("user", "What is the weather in Lisbon, and should I take a jacket?"),
        Message("assistant", (call,)),
        Message("tool", (ToolResultPart("call_1", '{"temp": 14, "wind": "strong"}'),)),
    )


PROMPTS = {
    "question": ChatRequest.of("What is the capital of Australia?", system="Be brief."),
    "conversation": ChatRequest(conversation(), system="You are a Linux admin assistant."),
    "code": ChatRequest.of(f"Review this function for bugs:\n{CODE}"),
    "tools": ChatRequest(with_tools(), tools=(WEATHER,)),
    "german": ChatRequest.of(
        "Schreibe eine kurze Zusammenfassung über die Geschichte der Stadt München. " * 8
    ),
}
TARGETS = [
    "anthropic/claude-haiku-4-5",
    "openai/gpt-4o-mini",
    "openrouter/auto",
    "ollama/qwen3-4b",
]


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    async with FakeWorld() as world:
        router = Router(world.policy(), MemoryStore())
        yield router
        await router.aclose()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(PROMPTS))
async def test_the_estimate_is_never_below_the_providers_count(router, target, name):
    request = PROMPTS[name]
    answer = await router.complete(ChatRequest(**{**_fields(request), "model": target}))
    reported = answer.decision.usage.input_tokens
    assert answer.response.target == target
    assert not answer.decision.usage.estimated, "the fake reported a count"
    assert estimate_prompt(request) >= reported, f"{name} on {target}"


def _fields(request: ChatRequest) -> dict[str, object]:
    return {f: getattr(request, f) for f in request.__dataclass_fields__}


@pytest.mark.parametrize(
    ("text", "at_least"),
    [("東京都の天気は晴れです。" * 50, 600), ("Grüße aus München, schöne Größe! " * 20, 220)],
)
def test_characters_beyond_ascii_count_more(text, at_least):
    """Real tokenizers give a CJK character about one token; 3 characters a token would not."""
    from stellwerk.tokens import estimate_text

    assert estimate_text(text) >= at_least
