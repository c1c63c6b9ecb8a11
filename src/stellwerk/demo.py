"""`stellwerk demo`: an agent's working day through the real gateway, against fake providers.

No keys and no network: every provider of the default strategy is a fake server on 127.0.0.1
(`stellwerk.testing`) speaking its real protocol, and the gateway itself listens on 127.0.0.1 and
is called over HTTP in OpenAI's format, as an agent would. The clock is simulated, so a 12-hour
day with a heartbeat every 30 minutes runs in seconds. On the way: Anthropic runs out of credit
(a 2 h billing cooldown), OpenAI-Codex is overloaded once, a rate-limit storm drives the router
into emergency mode and out again, a long conversation is fitted into a small local model's
window, and a daily budget crosses 80 % and 90 %. The report shows which model served each
class, every fallback with its reason, the cost against sending everything to the default
primary, and what the heartbeats cost.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from .config import find_config, read_config_file
from .decision import Decision
from .policy import ModelSpec
from .router import Router
from .server import create_app
from .state import MemoryStore
from .testing._server import Reply
from .testing.anthropic import CREDIT_TOO_LOW, RATE_LIMITED, anthropic_error
from .testing.world import FakeWorld
from .tokens import estimate_message
from .types import Message

Echo = Callable[..., Any]
DAY = datetime(2026, 11, 26, 8, 0, tzinfo=UTC).timestamp()
BASELINE = "anthropic/claude-sonnet-4-0"
DAILY_BUDGET_USD = 0.0041

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
    ("14:01", "Who wrote the novel Middlemarch?"),
    ("14:02", "Summarise the meeting notes we discussed so far into five bullet points."),
    ("14:03", "What does HTTP status 418 mean?"),
    ("14:20", "What is the capital of Canada?"),
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
    (
        "16:45",
        "Write a detailed project plan for migrating our wiki to a new platform, with "
        "phases, risks and a rollback strategy.",
    ),
    ("18:40", "What is the capital of Peru?"),
    ("19:10", "Design a database schema for a small library: books, members, loans, holds."),
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
        policy = world.policy(_demo_config(config_path))
        clock = _Clock(DAY)
        rows: list[Row] = []

        async def sink(decision: Decision) -> None:
            rows.append(Row(clock.hhmm(), decision))

        echo(
            "Stellwerk demo: one agent day (08:00-20:00, simulated) through the gateway, "
            "against fake providers on 127.0.0.1"
        )
        echo(f"daily budget ${DAILY_BUDGET_USD}: warn at 80 %, premium models dropped at 90 %\n")
        async with Router(policy, MemoryStore(), clock=clock, sink=sink) as router:
            async with _Gateway(router) as gateway:
                incidents = set()
                for at, kind, text in _schedule():
                    clock.set(at)
                    if at not in incidents:
                        incidents.add(at)
                        _inject(world, at, echo)
                    await gateway.send(kind, text, clock, echo)
        echo("")
        for line in report(rows, policy.models):
            echo(line)


def _demo_config(config_path: str | os.PathLike[str] | None) -> dict[str, Any]:
    found = find_config(config_path)
    raw = read_config_file(found) if found else {}
    for private in ("providers", "state", "ledger", "gateway"):
        raw.pop(private, None)  # the demo's providers are the fakes; nothing is written to disk
    raw["state"] = {"backend": "memory"}
    raw.setdefault("budgets", {})["limits"] = [{"window": "daily", "usd": DAILY_BUDGET_USD}]
    raw["budgets"].pop("webhook", None)
    raw["health"] = {"interval": 0}
    return raw


def _schedule() -> list[tuple[str, str, str]]:
    beats = [(f"{h:02d}:{m:02d}", "heartbeat", HEARTBEAT) for h in range(8, 20) for m in (0, 30)]
    work = [(at, "work", text) for at, text in WORK]
    return sorted(beats + work, key=lambda item: (item[0], item[1] != "heartbeat"))


def _inject(world: FakeWorld, at: str, echo: Echo) -> None:
    """The day's incidents, scripted into the fakes at their time (once each)."""
    if at == "10:00":
        echo("  ! 10:00 Anthropic: credit balance too low (billing, 400)")
        world.fakes["anthropic"].push(anthropic_error(400, "invalid_request_error", CREDIT_TOO_LOW))
    if at == "14:00":
        echo(
            "  ! 14:00 rate-limit storm: OpenAI, Anthropic and OpenRouter answer 429, "
            "Retry-After 10 min"
        )
        wait = {"retry-after": "600"}
        openai, openrouter = world.fakes["openai"], world.fakes["openrouter"]
        openai.push(*[replace(openai.error_reply(429), headers=wait)] * 2)
        openrouter.push(replace(openrouter.error_reply(429), headers=wait))
        world.fakes["anthropic"].push(
            *[anthropic_error(429, "rate_limit_error", RATE_LIMITED, wait)] * 3
        )
    if at == "11:45":
        echo("  ! 11:45 OpenAI-Codex: overloaded (503)")
        world.fakes["openai-codex"].push(503)


class _Gateway:
    """The real gateway app on a loopback port, and an HTTP client for it."""

    def __init__(self, router: Router) -> None:
        self._runner = web.AppRunner(create_app(router), access_log=None, handle_signals=False)
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> _Gateway:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        await self._runner.cleanup()

    async def send(self, kind: str, text: str, clock: _Clock, echo: Echo) -> None:
        assert self._session is not None
        history = _history() if kind == "heartbeat" or "discussed so far" in text else []
        body = {
            "model": "auto",
            "max_tokens": 200,
            "messages": [
                {"role": "system", "content": SYSTEM},
                *history,
                {"role": "user", "content": text},
            ],
        }
        async with self._session.post(self.url, json=body) as response:
            data = await response.json()
            headers = response.headers
        echo(_progress(clock.hhmm(), response.status, headers, data))


def _progress(at: str, status: int, headers: Mapping[str, str], data: Any) -> str:
    task = headers.get("x-stellwerk-task", "?")
    if status != 200:
        message = data.get("error", {}).get("message", "") if isinstance(data, dict) else ""
        return f"{at}  {task:<9} FAILED {status}: {message[:90]}"
    usage = data.get("usage", {})
    line = (
        f"{at}  {task:<9} → {headers.get('x-stellwerk-model', '?'):<28} "
        f"{usage.get('total_tokens', 0):>5} tok"
    )
    extras = _fallbacks(headers.get("x-stellwerk-fallback", ""))
    if "x-stellwerk-mode" in headers:
        extras.append(f"mode {headers['x-stellwerk-mode']}")
    if "x-stellwerk-budget" in headers:
        extras.append(f"budget {headers['x-stellwerk-budget']}")
    if "context fitted" in headers.get("x-stellwerk-notice", ""):
        extras.append("context fitted to the local window")
    return line + (f"  ({'; '.join(extras)})" if extras else "")


def _fallbacks(header: str) -> list[str]:
    """What `x-stellwerk-fallback` says: why the first choice was skipped, and what failed."""
    entries = [e.strip() for e in header.split(",") if e.strip()]
    failed = [e for e in entries if "skipped" not in e]
    parts = [f"first choice {entries[0]}"] if entries and "skipped" in entries[0] else []
    return parts + (["after " + ", ".join(failed)] if failed else [])


def _history() -> list[dict[str, str]]:
    """An agent's long conversation (~100k tokens) that a heartbeat must not drag along."""
    turn = "Earlier work on the quarterly report, notes and drafts. " * 60
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": turn} for i in range(120)]


def _history_tokens() -> int:
    return sum(estimate_message(Message.of("user", m["content"])) for m in _history())


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


def report(rows: list[Row], models: Mapping[str, ModelSpec]) -> list[str]:
    """The closing report: per class, fallbacks, cost against the all-Sonnet baseline."""
    lines = ["Per class: which model served", "-" * 78]
    by_task: dict[str, list[Decision]] = defaultdict(list)
    for row in rows:
        by_task[row.decision.task].append(row.decision)
    for task, decisions in sorted(by_task.items()):
        served = Counter(d.answered_by or "no answer" for d in decisions)
        cost = sum(d.cost_micros for d in decisions)
        names = ", ".join(f"{m} ×{n}" for m, n in served.most_common())
        lines.append(f"  {task:<10} {len(decisions):>3} req  ${cost / 1e6:>7.4f}  {names}")
    lines += ["", "Fallbacks and skips (why the first choice did not answer)", "-" * 78]
    for row in rows:
        for failure in row.decision.fallbacks:
            lines.append(
                f"  {row.at}  {row.decision.task:<10} {failure:<42} → {row.decision.answered_by}"
            )
    return lines + _cost_lines(rows, models)


def _cost_lines(rows: list[Row], models: Mapping[str, ModelSpec]) -> list[str]:
    baseline = models[BASELINE]
    actual = sum(r.decision.cost_micros for r in rows)
    base = sum(
        baseline.cost_micros(r.decision.usage.input_tokens, r.decision.usage.output_tokens)
        for r in rows
    )
    beats = [r.decision for r in rows if r.decision.task == "heartbeat"]
    history = _history_tokens()
    naive = len(beats) * baseline.cost_micros(history, 0)
    saved = (1 - actual / base) * 100 if base else 0.0
    return [
        "",
        "Cost",
        "-" * 78,
        f"  routed:                               ${actual / 1e6:.4f}",
        f"  all on {BASELINE} (same tokens): ${base / 1e6:.4f}   saved {saved:.0f} %",
        f"  heartbeats: {len(beats)} runs, {sum(d.usage.total_tokens for d in beats)} tokens, "
        f"${sum(d.cost_micros for d in beats) / 1e6:.4f}",
        f"    each left the agent's ~{history // 1000}k-token history out; sent along to "
        f"{BASELINE} they would have cost ${naive / 1e6:.2f}",
    ]
