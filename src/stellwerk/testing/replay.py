"""Replay captured requests through a Router on the fake providers, on a moving clock: what a day
of an agent's traffic costs under a configuration (`bench/heartbeat_cost.py`, and the tests).

The fakes cache prompts as the providers document it, so a replay measures what prompt caching
saves; the Router records each answer's usage and cost as it would in the gateway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..decision import Decision
from ..router import Router
from ..state import MemoryStore
from ..types import Usage
from ..wire import anthropic, openai
from .world import FakeWorld


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay cost: micro-dollars, the usage summed, which models answered, the cost per
    class, and every decision (their reasons say why each model was taken)."""

    cost_micros: int
    usage: Usage
    models: Mapping[str, int]
    requests: int
    by_task: Mapping[str, int] = field(default_factory=dict)
    decisions: tuple[Decision, ...] = ()

    @property
    def cache_read_share(self) -> float:
        """The part of the input tokens read from a prompt cache."""
        total = self.usage.input_tokens
        return self.usage.cache_read_tokens / total if total else 0.0


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
    count: int | None = None,
    model: str | None = None,
    times: Sequence[float] | None = None,
) -> Replayed:
    """Send captured requests (`{"route", "body"}`) through a Router with `config` on a fresh
    FakeWorld whose prompt caches and the Router share one clock: `count` of them (default: each
    once, cycling when more), `every` seconds apart or at the offsets `times` (seconds from the
    start). `model` replaces each body's model (default: the body's own, else `auto`)."""
    clock = _Clock()
    start = clock.now
    decisions: list[Decision] = []
    count = len(requests) if count is None else count
    async with FakeWorld() as world:
        for fake in world.fakes.values():
            cache = getattr(fake, "cache", None)
            if cache is not None:
                cache.clock = clock
        router = Router(world.policy(config), MemoryStore(), clock=clock)

        async def sink(decision: Decision) -> None:
            decisions.append(decision)

        router.sink = sink
        try:
            for i in range(count):
                clock.now = start + (times[i] if times is not None else i * every)
                captured = requests[i % len(requests)]
                chosen = model or captured["body"].get("model") or "auto"
                body = {**captured["body"], "model": chosen, "stream": False}
                wire = anthropic if captured.get("route") == "anthropic" else openai
                await router.complete(wire.parse_request(body))
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
    by_task: dict[str, int] = {}
    for d in decisions:
        models[str(d.answered_by)] = models.get(str(d.answered_by), 0) + 1
        by_task[d.task] = by_task.get(d.task, 0) + d.cost_micros
    total = sum(d.cost_micros for d in decisions)
    return Replayed(total, usage, models, len(decisions), by_task, tuple(decisions))


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
        body = {**captured["body"], "model": "auto", "messages": [system, *json.loads(moved)]}
        day.append({**captured, "body": body})
    return day


# -- a day of one agent session ---------------------------------------------------------------

TASKS = {  # written for this replay: what a user asks their agent, by class
    "simple": (
        "What is the capital of Australia?",
        "How many days does a leap year have?",
        "Which time zone is Tokyo in?",
        "Say hello in five words.",
    ),
    "complex": (
        "Write a short essay on why railway interlocking made signalling safe.",
        "Draft a friendly email to my landlord about the broken heater, with two options.",
        "Compare three ways to organise a small team's on-call rota and recommend one.",
        "Write a bedtime story about a signal box that learns to count trains.",
    ),
    "reasoning": (
        "Prove that the square root of 2 is irrational.",
        "A train leaves at 15:00 at 80 km/h, another at 16:00 at 100 km/h on the same track. "
        "When does the second one catch up?",
        "If all signal boxes are buildings and some buildings are red, must some signal boxes "
        "be red? Explain.",
        "How many ways can 5 trains be ordered on 5 platforms if two must be adjacent?",
    ),
    "code": (
        "Fix the bug in utils.py where dates are parsed in the wrong time zone.",
        "Write a Python function that merges two sorted lists, with tests.",
        "Refactor the retry loop in client.py to use exponential backoff.",
        "Add type hints to parser.py and make mypy pass.",
    ),
}


def _filler(kind: str, n: int, chars: int) -> str:
    words = f"{kind} {n} signal route block track points interlocking lever frame".split()
    text = " ".join(words)
    return (text + " ") * (chars // (len(text) + 1) + 1)


def agent_day(
    turn: Mapping[str, Any],
    heartbeat: Mapping[str, Any],
    *,
    tasks_per_class: int = 11,
    seed: int = 7,
) -> tuple[list[dict[str, Any]], list[float]]:
    """One OpenClaw session's day as the OpenAI-format requests the agent sends, with their
    times: 48 heartbeats 30 minutes apart (in the main session, with its history) and
    `tasks_per_class` human tasks of each class at seeded times, the code tasks as tool loops (a
    first request and its continuation with the tool's result). The session grows: every task
    and its answer stay in the history. `turn` and `heartbeat` are captures
    (`agent_turn.json`'s and `heartbeat.json`'s request): their system prompt, tools, framing
    and heartbeat prompt are used. Models are `auto:<class>`: classified perfectly."""
    import random

    body = turn["body"]
    system, framed, context = body["messages"][0], body["messages"][1], body["messages"][-1]
    stamp = re.match(r"\[[^\]]*\] ", framed["content"])
    runtime = framed["content"][framed["content"].index("\n\nRuntime:") :]
    beat_turn = heartbeat["body"]["messages"][1]["content"]
    rng = random.Random(seed)
    plan = [(i * 1800.0, "heartbeat", i) for i in range(48)]
    for kind in ("simple", "complex", "reasoning", "code"):
        plan += [(rng.uniform(300, 86000), kind, n) for n in range(tasks_per_class)]
    plan.sort()
    history: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    times: list[float] = []

    def send(at: float, kind: str, messages: list[dict[str, Any]]) -> None:
        times.append(max(at, times[-1] + 1 if times else at))
        out = {**body, "model": f"auto:{kind}", "messages": [system, *messages, context]}
        requests.append({"route": "openai", "body": out})

    for at, kind, n in plan:
        hhmm = f"{int(at // 3600) % 24:02d}:{int(at % 3600 // 60):02d}"
        if kind == "heartbeat":
            send(
                at, kind, [*history, {"role": "user", "content": re.sub(r"11:34", hhmm, beat_turn)}]
            )
            continue
        prefix = stamp.group(0).replace("11:33", hhmm) if stamp else ""
        ask = {"role": "user", "content": prefix + TASKS[kind][n % 4] + runtime}
        send(at, kind, [*history, ask])
        history.append(ask)
        if kind == "code":
            call_id = f"call_{n:04d}day"
            call = {
                "id": call_id,
                "type": "function",
                "function": {"name": "read", "arguments": json.dumps({"path": f"src/m{n}.py"})},
            }
            history.append({"role": "assistant", "content": None, "tool_calls": [call]})
            history.append(
                {"role": "tool", "tool_call_id": call_id, "content": _filler("code", n, 3000)}
            )
            send(at + 20, kind, history)
        history.append({"role": "assistant", "content": _filler(kind, n, 1500)})
    return requests, times


def all_on(model: str) -> dict[str, Any]:
    """Every class to `model` with the whole context and 5-minute breakpoints: an agent that
    talks to that model directly with its own cache markers."""
    classes = ("heartbeat", "simple", "complex", "code", "reasoning")
    return {"tasks": {c: {"primary": model, "context": "full", "cache": "5m"} for c in classes}}
