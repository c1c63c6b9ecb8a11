"""The state every replica must agree on: cooldowns, disabled credentials, emergency mode.

Routing reads one `Snapshot` per request (taken with `now`), so the planner stays pure. Stores
implement `StateStore`; memory and SQLite pass the same contract tests (Redis follows). Keys are
strings so every backend can hold them flat:

- `cred:<credential id>`                   a credential (billing, auth, connect failures)
- `cred:<credential id>|<model id>`        a credential for one model (rate limits, overloads)
- `model:<model id>`                       a model everywhere (model_not_found)

Aggregators are never keyed by provider: there is no provider-wide key at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..failures import FailureClass

FOREVER = float("inf")


def credential_key(credential_id: str, model_id: str | None = None) -> str:
    return f"cred:{credential_id}|{model_id}" if model_id else f"cred:{credential_id}"


def model_key(model_id: str) -> str:
    return f"model:{model_id}"


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
class Snapshot:
    """What routing needs to know about shared state at one instant."""

    now: float
    cooldowns: Mapping[str, Cooldown] = field(default_factory=dict)
    emergency: bool = False

    def blocked(self, *keys: str) -> Cooldown | None:
        """The active cooldown that lasts longest among `keys`, or None."""
        found = [c for k in keys if (c := self.cooldowns.get(k)) and c.active(self.now)]
        return max(found, key=lambda c: c.until) if found else None


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
        """Set emergency mode; returns whether it changed."""
        ...

    async def close(self) -> None: ...
