"""`stellwerk demo`: an agent's working day, routed for real against fake providers on loopback.

No keys and no network: every provider of the default strategy is a fake server on 127.0.0.1
(`stellwerk.testing`), speaking its real protocol. The clock is simulated, so a 12-hour day with a
heartbeat every 30 minutes runs in seconds. On the way, Anthropic runs out of credit (a 2 h
billing cooldown), OpenAI rate-limits a burst of requests, and OpenAI-Codex is overloaded once;
the report shows which model served each class, every fallback with its reason, and the cost
against sending everything to the default primary (anthropic/claude-sonnet-4-0).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .config import find_config, read_config_file
from .decision import Decision
from .errors import StellwerkError
from .router import Router
from .state import MemoryStore
from .testing._server import Reply
from .testing.anthropic import CREDIT_TOO_LOW, anthropic_error
from .testing.world import FakeWorld
from .types import ChatRequest, Message

Echo = Callable[..., Any]
DAY = datetime(2026, 11, 26, 8, 0, tzinfo=UTC).timestamp()
BASELINE = "anthropic/claude-sonnet-4-0"

SYSTEM = "You are Ada, a personal assistant agent with access to the user's workspace."
HEARTBEAT = (
    "Read HEARTBEAT.md if it exists (workspace context). Follow it strictly. Do not infer or "
    "repeat old tasks from prior chats. If nothing needs attention, reply HEARTBEAT_OK."
)
WORK: list[tuple[str, str]] = [
    ("08:10", "What time zone is Lisbon in?"),
    (
        "08:40",
        "Write a Python function that parses an ISO 8601 duration like PT1H30M into "
        "seconds, with type hints and a few unit tests using pytest.",
    ),
    (
        "09:20",
        "Draft a warm but firm email to our landlord asking for the heating repair that "
        "was promised three weeks ago, and propose two dates for a visit.",
    ),
    ("10:15", "How many litres are in a US gallon?"),
    (
        "11:00",
        "A train leaves at 9:40 and travels 210 km at 84 km/h, then waits 12 minutes and "
        "covers 96 km at 64 km/h. When does it arrive? Reason step by step.",
    ),
    (
        "11:45",
        "Fix this bug: my TypeScript reducer mutates state.items with push() and React "
        "does not re-render. Show the corrected reducer.\n```ts\ncase 'add': "
        "state.items.push(action.item); return state;\n```",
    ),
    (
        "13:30",
        "Write a short story (about 400 words) about a signal box operator on the last "
        "night before the line is automated.",
    ),
    ("14:00", "What is the boiling point of water at sea level in Fahrenheit?"),
    ("14:05", "Who wrote the novel Middlemarch?"),
    ("14:10", "What does HTTP status 418 mean?"),
    (
        "15:20",
        "Compare event sourcing and CRUD for an invoicing system: trade-offs in audit, "
        "schema evolution, reporting and team skills. Recommend one.",
    ),
    (
        "16:30",
        "Implement an LRU cache class in Go with Get and Put in O(1), and explain the "
        "data structures.",
    ),
    (
        "17:10",
        "If 3 machines make 3 widgets in 3 minutes, how long do 100 machines need for "
        "100 widgets? Explain the reasoning.",
    ),
    ("18:40", "What is the capital of Canada?"),
]


@dataclass
class Row:
    at: str
    decision: Decision


def run_demo(config_path: str | os.PathLike[str] | None = None, echo: Echo = print) -> None:
    """Run the day and print progress and the report."""
    asyncio.run(_run(config_path, echo))


async def _run(config_path: str | os.PathLike[str] | None, echo: Echo) -> None:
    async with FakeWorld(default=Reply.ok("Done: here is the answer you asked for.")) as world:
        raw = _user_config(config_path)
        policy = world.policy(raw)
        clock = _Clock(DAY)
        rows: list[Row] = []

        async def sink(decision: Decision) -> None:
            rows.append(Row(clock.hhmm(), decision))

        echo(
            "Stellwerk demo: one agent day (08:00-20:00, simulated) against fake providers "
            "on 127.0.0.1\n"
        )
        async with Router(policy, MemoryStore(), clock=clock, sink=sink) as router:
            injected: set[str] = set()
            for at, kind, text in _schedule():
                clock.set(at)
                if at not in injected:
                    injected.add(at)
                    _inject(world, at, echo)
                await _send(router, kind, text, echo, clock)
        echo("")
        for line in report(rows, policy_models=policy.models):
            echo(line)


def _user_config(config_path: str | os.PathLike[str] | None) -> dict[str, Any]:
    found = find_config(config_path)
    raw = read_config_file(found) if found else {}
    raw.pop("providers", None)  # the demo's providers are the fakes
    raw["state"] = {"backend": "memory"}
    return raw


def _schedule() -> list[tuple[str, str, str]]:
    beats = [(f"{h:02d}:{m:02d}", "heartbeat", HEARTBEAT) for h in range(8, 20) for m in (0, 30)]
    work = [(at, "work", text) for at, text in WORK]
    return sorted(beats + work)


def _inject(world: FakeWorld, at: str, echo: Echo) -> None:
    """The day's incidents, scripted into the fakes at their time."""
    if at == "10:00":
        echo("  ! 10:00 Anthropic: credit balance too low (billing, 400)")
        world.fakes["anthropic"].push(anthropic_error(400, "invalid_request_error", CREDIT_TOO_LOW))
    if at == "14:00":
        echo("  ! 14:00 OpenAI: rate-limit storm (429 with Retry-After)")
        world.fakes["openai"].push(*[429] * 3)
    if at == "16:30":
        echo("  ! 16:30 OpenAI-Codex: overloaded (503)")
        world.fakes["openai-codex"].push(503)


async def _send(router: Router, kind: str, text: str, echo: Echo, clock: _Clock) -> None:
    request = ChatRequest(
        messages=(*(_history() if kind == "heartbeat" else ()), Message.of("user", text)),
        system=SYSTEM,
        model="auto",
    )
    try:
        answer = await router.complete(request)
    except StellwerkError as exc:
        echo(f"{clock.hhmm()}  {kind:<9} FAILED: {exc}")
        return
    d = answer.decision
    fallback = f"  (after {', '.join(d.fallbacks)})" if d.fallbacks else ""
    echo(
        f"{clock.hhmm()}  {d.task:<9} → {d.answered_by:<28} "
        f"{d.usage.total_tokens:>6} tok  ${d.cost_micros / 1e6:.4f}{fallback}"
    )


def _history() -> tuple[Message, ...]:
    """An agent's long conversation (~100k tokens) that a heartbeat must not drag along."""
    turn = "Earlier work on the quarterly report, notes and drafts. " * 60
    return tuple(Message.of("user" if i % 2 == 0 else "assistant", turn) for i in range(120))


class _Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def set(self, hhmm: str) -> None:
        hours, minutes = (int(x) for x in hhmm.split(":"))
        self.now = DAY + (hours - 8) * 3600 + minutes * 60

    def hhmm(self) -> str:
        return datetime.fromtimestamp(self.now, UTC).strftime("%H:%M")


def report(rows: list[Row], policy_models: Any) -> list[str]:
    """The closing report: per class, fallbacks, cost against the all-Sonnet baseline."""
    baseline = policy_models[BASELINE]
    lines = ["Per class: which model served", "-" * 76]
    by_task: dict[str, list[Decision]] = defaultdict(list)
    for row in rows:
        by_task[row.decision.task].append(row.decision)
    for task, decisions in sorted(by_task.items()):
        served = Counter(d.answered_by or "no answer" for d in decisions)
        cost = sum(d.cost_micros for d in decisions)
        models = ", ".join(f"{m} ×{n}" for m, n in served.most_common())
        lines.append(f"  {task:<10} {len(decisions):>3} req  ${cost / 1e6:>8.4f}  {models}")
    lines += ["", "Fallbacks", "-" * 76]
    for row in rows:
        for failure in row.decision.fallbacks:
            lines.append(
                f"  {row.at}  {row.decision.task:<10} {failure:<44} → {row.decision.answered_by}"
            )
    actual = sum(r.decision.cost_micros for r in rows)
    base = sum(
        baseline.cost_micros(r.decision.usage.input_tokens, r.decision.usage.output_tokens)
        for r in rows
    )
    beats = [r.decision for r in rows if r.decision.task == "heartbeat"]
    beat_tokens = sum(d.usage.total_tokens for d in beats)
    history = _history_tokens()
    naive = len(beats) * baseline.cost_micros(history, 0)
    lines += [
        "",
        "Cost",
        "-" * 76,
        f"  routed:                 ${actual / 1e6:.4f}",
        f"  all on {BASELINE}: ${base / 1e6:.4f}  (same token counts)",
        f"  saved:                  ${(base - actual) / 1e6:.4f} "
        f"({(1 - actual / base) * 100 if base else 0:.0f} %)",
        f"  heartbeats:             {len(beats)} runs, {beat_tokens} tokens, "
        f"${sum(d.cost_micros for d in beats) / 1e6:.4f}",
        f"    the agent's history (~{history // 1000}k tokens) was left out of each; sent along "
        f"to {BASELINE} they would have cost ${naive / 1e6:.2f}",
    ]
    return lines


def _history_tokens() -> int:
    from .tokens import estimate_message

    return sum(estimate_message(m) for m in _history())
