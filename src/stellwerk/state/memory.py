"""Routing state in this process only: for tests, demos and `state.backend: memory`.

It forgets everything on restart and is not shared between processes. It applies the same rules
(`state.cooldown`) as the durable backends and passes the same contract tests, so a test that runs
against it says something about production.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..failures import FailureClass
from .base import Cooldown, Snapshot
from .cooldown import forgotten, next_cooldown


class MemoryStore:
    """A `StateStore` held in dicts, guarded by one asyncio.Lock."""

    def __init__(self) -> None:
        self._cooldowns: dict[str, Cooldown] = {}
        self._emergency = False
        self._lock = asyncio.Lock()

    async def snapshot(self, now: float) -> Snapshot:
        """Active cooldowns and the mode at `now`."""
        active = {k: c for k, c in self._cooldowns.items() if c.active(now)}
        return Snapshot(now=now, cooldowns=active, emergency=self._emergency)

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
            return True

    async def close(self) -> None:
        """Nothing to release."""

    def _forget_old(self, now: float) -> None:
        for key in [k for k, c in self._cooldowns.items() if forgotten(c, now)]:
            del self._cooldowns[key]
