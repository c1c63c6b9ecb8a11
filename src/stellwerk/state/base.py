"""The state every replica must agree on: cooldowns, disabled credentials, emergency mode, budgets.

Routing reads one `Snapshot` per request (taken with `now`), so the planner stays pure. Stores
implement `StateStore`; memory, SQLite and Redis pass the same contract tests. Keys are
strings so every backend can hold them flat:

- `cred:<credential id>`                   a credential (billing, auth, connect failures)
- `cred:<credential id>|<model id>`        a credential for one model (rate limits, overloads)
- `model:<model id>`                       a model everywhere (model_not_found)

Aggregators are never keyed by provider: there is no provider-wide key at all.

Agent turns (`remember_turn`, `turn_target`) are a bounded table of turn id -> target id with a
TTL: which model a tool loop started on, so its continuations stay there.

Budget counters are keyed by window and scope (`daily:2026-11-26|all`,
`weekly:2026-W48|provider:anthropic`; built in `stellwerk.budget`) and expire with their window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..failures import FailureClass

FOREVER = float("inf")

TURNS_KEPT = 10_000
"""Agent turns a memory or SQLite store remembers at most (`remember_turn`); the turns that
would expire first are forgotten first. Redis keeps each for its TTL."""


def credential_key(credential_id: str, model_id: str | None = None) -> str:
    return f"cred:{credential_id}|{model_id}" if model_id else f"cred:{credential_id}"


def credential_parts(key: str) -> tuple[str, str, str] | None:
    """A `credential_key`'s provider, credential id and model id ("" for none): `cred:openai#2|M`
    is `("openai", "openai#2", "M")`; None for any other key."""
    kind, _, body = key.partition(":")
    if kind != "cred":
        return None
    credential_id, _, model_id = body.partition("|")
    return credential_id.rpartition("#")[0], credential_id, model_id


def model_key(model_id: str) -> str:
    return f"model:{model_id}"


def health_key(provider: str) -> str:
    """A local provider the gateway's health watch found down (`stellwerk.health`)."""
    return f"health:{provider}"


@dataclass(frozen=True, slots=True)
class Cooldown:
    """One key is blocked until `until` (epoch seconds; FOREVER until reset) because of `reason`."""

    key: str
    until: float
    reason: FailureClass
    strikes: int = 1  # consecutive failures; drives exponential backoff
    since: float = 0.0
    detail: str = ""

    def active(self, now: float) -> bool:
        return now < self.until


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """What one budget counter (`daily:2026-11-26|all`) holds: settled plus reserved in flight."""

    tokens: int = 0
    micros: int = 0
    reserved_tokens: int = 0  # the part of `tokens` reserved by attempts still running
    reserved_micros: int = 0

    @property
    def settled(self) -> BudgetUse:
        """The usage without what is still in flight."""
        return BudgetUse(self.tokens - self.reserved_tokens, self.micros - self.reserved_micros)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What routing needs to know about shared state at one instant."""

    now: float
    cooldowns: Mapping[str, Cooldown] = field(default_factory=dict)
    emergency: bool = False
    emergency_since: float | None = None  # when the mode last changed (entered, or left)
    emergency_reason: str = ""  # why it last changed
    budgets: Mapping[str, BudgetUse] = field(default_factory=dict)  # live counters by key
    degraded: str = ""  # non-empty: the store is unreachable and routing fails open (why)

    def blocked(self, *keys: str) -> Cooldown | None:
        """The active cooldown that lasts longest among `keys`, or None."""
        cooldowns = self.cooldowns
        if not cooldowns:  # the common case: the planner asks for every target of the chain
            return None
        longest = None
        for key in keys:
            c = cooldowns.get(key)
            if c is None or not c.active(self.now):
                continue
            if longest is None or c.until > longest.until:
                longest = c
        return longest


class StateStore(Protocol):
    """Shared routing state. Every method is atomic across processes using the same store."""

    async def snapshot(self, now: float) -> Snapshot:
        """Active cooldowns and the mode at `now` (expired cooldowns are left out)."""
        ...

    async def strike(
        self,
        key: str,
        reason: FailureClass,
        now: float,
        duration: Callable[[int], float],
        detail: str = "",
    ) -> Cooldown:
        """Record one failure on `key`: strikes+1 (reset to 1 if the last cooldown expired long
        ago), `until = now + duration(strikes)`. Returns the new cooldown."""
        ...

    async def recover(self, key: str) -> None:
        """A success on `key`: forget its strikes and any cooldown."""
        ...

    async def reset(self, prefix: str = "") -> int:
        """Clear the cooldowns whose key starts with `prefix` (all when empty); return how many."""
        ...

    async def set_emergency(self, on: bool, now: float, reason: str = "") -> bool:
        """Set emergency mode; returns whether it changed (only a change records `now` and
        `reason` as the snapshot's `emergency_since` and `emergency_reason`)."""
        ...

    async def count_recent(self, name: str, now: float, window: float) -> int:
        """Record one event `name` at `now`; return how many were recorded in the last `window`
        seconds, this one included (e.g. rate limits across providers, for emergency mode)."""
        ...

    async def reserve(
        self, keys: Mapping[str, float], tokens: int, micros: int, now: float, ttl: float
    ) -> str:
        """Add an estimate to every budget counter in `keys` (key -> the end of its window, when
        the counter expires) in one step; return the reservation's id. The reservation lapses
        (its estimate no longer counts) at `now + ttl` unless settled or released before."""
        ...

    async def settle(self, reservation: str, tokens: int, micros: int, now: float) -> bool:
        """Replace a live reservation's estimate with the actual usage; False (and no change)
        if it is unknown, already settled or released, or lapsed."""
        ...

    async def release(self, reservation: str) -> bool:
        """Drop a reservation's estimate (the attempt failed); False if there was none."""
        ...

    async def mark_warned(self, key: str, threshold: str, now: float, expires: float) -> bool:
        """True only the first time for (`key`, `threshold`) until `expires`, across processes."""
        ...

    async def remember_turn(self, turn: str, target: str, now: float, ttl: float) -> None:
        """Remember that `target` answers the agent turn `turn` until `now + ttl` (a later call
        for the same turn replaces the target and starts the TTL again; see `affinity.py`).
        Memory and SQLite keep at most `TURNS_KEPT` turns, forgetting the oldest first."""
        ...

    async def turn_target(self, turn: str, now: float) -> str | None:
        """The target remembered for `turn`, None if there is none or it expired by `now`."""
        ...

    async def close(self) -> None: ...
