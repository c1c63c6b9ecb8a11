"""Replay captured requests through a Router on the fake providers, on a moving clock: what a day
of an agent's traffic costs under a configuration (`bench/heartbeat_cost.py`, and the tests).

The fakes cache prompts as the providers document it, so a replay measures what prompt caching
saves; the Router records each answer's usage and cost as it would in the gateway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..decision import Decision
from ..router import Router
from ..state import MemoryStore
from ..types import Usage
from ..wire import anthropic, openai
from .world import FakeWorld


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay cost: micro-dollars, the usage summed, and which models answered."""

    cost_micros: int
    usage: Usage
    models: Mapping[str, int]
    requests: int

    @property
    def cache_read_share(self) -> float:
        """The part of the input tokens read from a prompt cache."""
        return (
            self.usage.cache_read_tokens / self.usage.input_tokens
            if self.usage.input_tokens
            else 0.0
        )


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def replay(
    requests: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    *,
    every: float = 1800.0,
    count: int = 48,
    model: str = "auto",
) -> Replayed:
    """Send `count` requests, `every` seconds apart, cycling through `requests` (captures:
    `{"route", "body"}`), through a Router with `config` on a fresh FakeWorld."""
    clock = _Clock()
    decisions: list[Decision] = []
    async with FakeWorld() as world:
        for fake in world.fakes.values():
            cache = getattr(fake, "cache", None)
            if cache is not None:
                cache.clock = clock
        router = Router(world.policy(config), MemoryStore())

        async def sink(decision: Decision) -> None:
            decisions.append(decision)

        router.sink = sink
        try:
            for i in range(count):
                captured = requests[i % len(requests)]
                body = {**captured["body"], "model": model, "stream": False}
                wire = anthropic if captured.get("route") == "anthropic" else openai
                await router.complete(wire.parse_request(body))
                clock.now += every
        finally:
            await router.aclose()
    usage = Usage(
        input_tokens=sum(d.usage.input_tokens for d in decisions),
        output_tokens=sum(d.usage.output_tokens for d in decisions),
        cache_read_tokens=sum(d.usage.cache_read_tokens for d in decisions),
        cache_write_tokens=sum(d.usage.cache_write_tokens for d in decisions),
        cache_write_1h_tokens=sum(d.usage.cache_write_1h_tokens for d in decisions),
    )
    models: dict[str, int] = {}
    for d in decisions:
        models[str(d.answered_by)] = models.get(str(d.answered_by), 0) + 1
    return Replayed(sum(d.cost_micros for d in decisions), usage, models, len(decisions))


def full_context_on(model: str) -> dict[str, Any]:
    """A config that sends heartbeats to `model` with their whole context and no cache
    breakpoints: what an agent pays without Stellwerk's heartbeat handling."""
    return {"tasks": {"heartbeat": {"primary": model, "context": "full", "cache": "off"}}}


def heartbeat_day(captured: Mapping[str, Any], count: int, every: float) -> list[dict[str, Any]]:
    """A day of one agent's heartbeats from one captured OpenAI-format heartbeat: the same system
    prompt and tools each time, and in the heartbeat turn the time of each (its `HH:MM` moves by
    `every` seconds from the first one found)."""
    system, *turn = captured["body"]["messages"]  # the time is in the turn, not the system prompt
    text = json.dumps(turn)
    first = re.search(r"\b(\d\d):(\d\d)\b", text)
    day = []
    for i in range(count):
        moved = text
        if first is not None:
            minutes = int(first[1]) * 60 + int(first[2]) + round(i * every / 60)
            now = f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"
            moved = re.sub(rf"\b{first[0]}\b", now, text)
        body = {**captured["body"], "messages": [system, *json.loads(moved)]}
        day.append({**captured, "body": body})
    return day
