"""The decision: what happened to one request, built up while it runs, recorded once at the end.

It carries what a user needs to trust the router: the class and why, the planned chain, every
skipped target with its reason, every attempt with its failure class, the target that answered,
the usage and cost. Credentials appear by id (`anthropic#1`), never by value.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .plan import RoutePlan, Skip
from .types import Usage

if TYPE_CHECKING:
    from .warmth import Choice


def new_request_id() -> str:
    """`req_`, the time in milliseconds and 48 random bits, 24 hex digits in all.

    Ids sort by time, so the ledger's `request_id` index grows at its end, like its `ts` index:
    a random id put each insert on a random page of a b-tree larger than the page cache, which
    was most of what a ledger row cost to write. A lookup by id stays an index search. 48 bits
    keep ids made in the same millisecond apart (by any number of processes: `random` is seeded
    anew in a forked child); nothing trusts an id's secrecy."""
    return f"req_{int(time.time() * 1000) & 0xFFFFFFFFFFFF:012x}{random.getrandbits(48):012x}"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call to one target with one credential."""

    target: str
    credential: str | None
    failure: str | None  # a FailureClass value, or None for success
    status: int | None
    latency_ms: float
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class Decision:
    """Everything decided and tried for one request."""

    request_id: str
    task: str
    confidence: float
    reason: str
    source: str
    route: RoutePlan
    started: float = field(default_factory=time.time)
    attempts: list[Attempt] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)  # left out while running (after planning)
    answered_by: str | None = None
    upstream_model: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_micros: int = 0
    notices: list[str] = field(default_factory=list)
    emergency: str = ""  # on | retry (the cloud tried again) | left (and it answered); emergency.py
    budget_notice: str | None = None  # a budget threshold first crossed here: `warn 83% daily`
    error: str | None = None
    finished: float | None = None
    client: str = "library"  # openai | anthropic (the gateway's formats) | library | cli
    partial: str | None = None  # target whose stream stopped after its first token (usage est.)
    prompt: str | None = None  # the last user turn, kept only with `ledger.store_content`
    answer: str | None = None  # the answer text, kept only with `ledger.store_content`
    turn: str = ""  # the agent turn this request belongs to (`affinity.turn_id`); "": none
    continuation: bool = False  # it continues its turn after tool calls (not its first request)
    calls_tools: bool = False  # the answer calls tools: the turn goes on (a continuation follows)
    # cache-aware routing (`warmth.py`): the session whose warm caches were read, what they held,
    # and the choice they made (None: nothing was warm)
    session: str = ""
    estimate: int = 0  # the prompt's tokens as Stellwerk estimated them when it planned
    warm: dict[str, tuple[int, float, float]] = field(default_factory=dict)
    cache: Choice | None = None
    remembered: bool = False  # the turn and warm caches were written with the settlement

    @classmethod
    def rejected(
        cls, request_id: str, route: RoutePlan, client: str, error: str, now: float
    ) -> Decision:
        """The record of a request refused before it could be routed (bad input, bad key)."""
        decision = cls(request_id, "rejected", 0.0, error, "rejected", route, now, client=client)
        decision.error = error
        decision.finished = now
        return decision

    @property
    def fallbacks(self) -> list[str]:
        """Why each failed attempt before the answer failed: `target: failure`."""
        return [f"{a.target}: {a.failure}" for a in self.attempts if not a.ok]

    @property
    def all_skipped(self) -> list[Skip]:
        """Targets left out by the plan and, later, by what this request's failures cooled."""
        return [*self.route.skipped, *self.skipped]

    @property
    def summary(self) -> str:
        """One line a user reads under the answer."""
        if self.answered_by is None:
            return f"no answer ({self.error or 'not finished'})"
        first = self.route.chain[0] if self.route.chain else None
        text = f"answered by {self.answered_by} ({self.task}: {self.reason})"
        if self.answered_by != first:
            why = self._why_not_first(first)
            text += f"; {why}" if why else ""
        return text

    def _why_not_first(self, first: str | None) -> str:
        parts = [f"{a.target} failed: {a.failure}" for a in self.attempts if not a.ok]
        parts += [f"{s.target} skipped: {s.reason}" for s in self.all_skipped]
        return "; ".join(parts[:4]) if first else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "client": self.client,
            "task": self.task,
            "confidence": round(self.confidence, 3),
            "reason": self.reason,
            "source": self.source,
            "mode": str(self.route.mode),
            "routed_as": str(self.route.task),
            "chain": list(self.route.chain),
            "skipped": [{"target": s.target, "reason": s.reason} for s in self.all_skipped],
            "shadow": list(self.route.shadow) if self.route.shadow else None,
            "attempts": [
                {
                    "target": a.target,
                    "credential": a.credential,
                    "failure": a.failure,
                    "status": a.status,
                    "latency_ms": round(a.latency_ms, 2),
                    "message": a.message,
                }
                for a in self.attempts
            ],
            "answered_by": self.answered_by,
            "partial": self.partial,
            "upstream_model": self.upstream_model,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "cache_read_tokens": self.usage.cache_read_tokens,
                "cache_write_tokens": self.usage.cache_write_tokens,
                "cache_write_1h_tokens": self.usage.cache_write_1h_tokens,
                "estimated": self.usage.estimated,
            },
            "cost_micros": self.cost_micros,
            "notices": list(self.notices),
            "budget_notice": self.budget_notice,
            "error": self.error,
            "turn": self.turn or None,
            "continuation": self.continuation,
            "cache": self.cache.to_json() if self.cache is not None else None,
        }
