"""Routing state in this process only: for tests, demos and `state.backend: memory`.

It forgets everything on restart and is not shared between processes. It applies the same rules
(`state.cooldown`) as the durable backends and passes the same contract tests, so a test that runs
against it says something about production.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping

from ..failures import FailureClass
from .base import TURNS_KEPT, Cooldown, Snapshot
from .cooldown import forgotten, next_cooldown
from .events import recent
from .tally import Tally


class MemoryStore:
    """A `StateStore` held in dicts, guarded by one asyncio.Lock."""

    def __init__(self) -> None:
        self._cooldowns: dict[str, Cooldown] = {}
        self._emergency = False
        self._emergency_since: float | None = None
        self._emergency_reason = ""
        self._events: dict[str, list[float]] = {}
        self._lock = asyncio.Lock()
        self._tally = Tally()
        self._turns: OrderedDict[str, tuple[str, float]] = OrderedDict()  # turn -> target, end
        self.turns_kept = TURNS_KEPT

    async def snapshot(self, now: float) -> Snapshot:
        """Active cooldowns and the mode at `now`."""
        active = {k: c for k, c in self._cooldowns.items() if c.active(now)}
        return Snapshot(
            now=now,
            cooldowns=active,
            emergency=self._emergency,
            emergency_since=self._emergency_since,
            emergency_reason=self._emergency_reason,
            budgets=self._tally.usage(now),
        )

    async def strike(
        self,
        key: str,
        reason: FailureClass,
        now: float,
        duration: Callable[[int], float],
        detail: str = "",
    ) -> Cooldown:
        """Record one failure on `key` and return the cooldown it causes."""
        async with self._lock:
            cooldown = next_cooldown(self._cooldowns.get(key), key, reason, now, duration, detail)
            if cooldown.until > now:
                self._cooldowns[key] = cooldown
            self._forget_old(now)
            return cooldown

    async def recover(self, key: str) -> None:
        """A success on `key`: forget its strikes and any cooldown."""
        async with self._lock:
            self._cooldowns.pop(key, None)

    async def reset(self, prefix: str = "") -> int:
        """Clear every cooldown whose key starts with `prefix`; return how many."""
        async with self._lock:
            doomed = [k for k in self._cooldowns if k.startswith(prefix)]
            for key in doomed:
                del self._cooldowns[key]
            return len(doomed)

    async def set_emergency(self, on: bool, now: float, reason: str = "") -> bool:
        """Switch emergency mode; True if it changed."""
        async with self._lock:
            if on == self._emergency:
                return False
            self._emergency = on
            self._emergency_since, self._emergency_reason = now, reason
            return True

    async def count_recent(self, name: str, now: float, window: float) -> int:
        """Record one event `name` at `now`; how many happened in the last `window` seconds."""
        async with self._lock:
            times = recent([*self._events.get(name, ()), now], now, window)
            self._events[name] = times
            return len(times)

    async def reserve(
        self, keys: Mapping[str, float], tokens: int, micros: int, now: float, ttl: float
    ) -> str:
        """Add an estimate to every budget counter in `keys`; return the reservation id."""
        async with self._lock:
            return self._tally.reserve(keys, tokens, micros, now, ttl)

    async def settle(self, reservation: str, tokens: int, micros: int, now: float) -> bool:
        """Replace a live reservation's estimate with the actual usage (once)."""
        async with self._lock:
            return self._tally.settle(reservation, tokens, micros, now)

    async def release(self, reservation: str) -> bool:
        """Drop a reservation's estimate."""
        async with self._lock:
            return self._tally.release(reservation)

    async def mark_warned(self, key: str, threshold: str, now: float, expires: float) -> bool:
        """True only the first time for (`key`, `threshold`) until `expires`."""
        async with self._lock:
            return self._tally.mark_warned(key, threshold, now, expires)

    async def remember_turn(self, turn: str, target: str, now: float, ttl: float) -> None:
        """Remember the turn's target until `now + ttl`; the oldest turns go beyond the cap."""
        turns = self._turns
        turns[turn] = (target, now + ttl)
        turns.move_to_end(turn)
        while len(turns) > self.turns_kept:
            turns.popitem(last=False)

    async def turn_target(self, turn: str, now: float) -> str | None:
        """The turn's target, None if unknown or expired."""
        found = self._turns.get(turn)
        if found is None or found[1] <= now:
            return None
        return found[0]

    async def close(self) -> None:
        """Nothing to release."""

    def _forget_old(self, now: float) -> None:
        for key in [k for k, c in self._cooldowns.items() if forgotten(c, now)]:
            del self._cooldowns[key]
