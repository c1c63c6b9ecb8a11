"""Budget counters, reservations and warn flags as plain data: the part every backend shares.

A counter holds the settled usage of one window and scope. A reservation holds an attempt's
estimate for each counter it touches until it is settled (the estimate is replaced by the actual
usage), released (dropped) or lapses (dropped at its TTL: the process died mid-call). Keeping
reservations apart from counters makes "exactly once" simple: settling removes the reservation
and adds the actual in one step, and a second settle finds nothing. The usage a snapshot shows is
counter plus live reservations. `Tally` is the in-memory book (MemoryStore uses it; the SQLite
store keeps the same rows in tables and sums them with `usage`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .base import BudgetUse


@dataclass(frozen=True, slots=True)
class Counter:
    key: str
    tokens: int
    micros: int
    expires: float  # the end of the counter's window


@dataclass(frozen=True, slots=True)
class Reservation:
    """One attempt's estimate on one counter (an attempt has one per counter it touches)."""

    id: str
    key: str
    tokens: int
    micros: int
    expires: float  # when the reservation lapses
    key_expires: float  # when the counter it belongs to expires


def new_reservation_id() -> str:
    return f"res_{uuid.uuid4().hex}"


def usage(
    counters: Iterable[Counter], reservations: Iterable[Reservation], now: float
) -> dict[str, BudgetUse]:
    """Live usage per counter key at `now`: settled counters plus live reservations."""
    out: dict[str, BudgetUse] = {}
    for c in counters:
        if c.expires > now:
            out[c.key] = BudgetUse(c.tokens, c.micros)
    for r in reservations:
        if r.expires > now and r.key_expires > now:
            u = out.get(r.key, BudgetUse())
            out[r.key] = BudgetUse(
                u.tokens + r.tokens,
                u.micros + r.micros,
                u.reserved_tokens + r.tokens,
                u.reserved_micros + r.micros,
            )
    return out


class Tally:
    """Counters, reservations and warn flags in dicts. Not locked: the caller serialises."""

    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}
        self.reservations: dict[str, tuple[Reservation, ...]] = {}
        self.flags: dict[tuple[str, str], float] = {}

    def usage(self, now: float) -> dict[str, BudgetUse]:
        held = (r for rs in self.reservations.values() for r in rs)
        return usage(self.counters.values(), held, now)

    def reserve(
        self, keys: Mapping[str, float], tokens: int, micros: int, now: float, ttl: float
    ) -> str:
        self.forget(now)
        rid = new_reservation_id()
        self.reservations[rid] = tuple(
            Reservation(rid, key, tokens, micros, now + ttl, end) for key, end in keys.items()
        )
        return rid

    def settle(self, rid: str, tokens: int, micros: int, now: float) -> bool:
        held = self.reservations.pop(rid, ())
        if not held or held[0].expires <= now:
            return False
        for r in held:
            c = self.counters.get(r.key) or Counter(r.key, 0, 0, r.key_expires)
            self.counters[r.key] = Counter(r.key, c.tokens + tokens, c.micros + micros, c.expires)
        return True

    def release(self, rid: str) -> bool:
        return self.reservations.pop(rid, None) is not None

    def mark_warned(self, key: str, threshold: str, now: float, expires: float) -> bool:
        self.forget(now)
        if (key, threshold) in self.flags:
            return False
        self.flags[(key, threshold)] = expires
        return True

    def forget(self, now: float) -> None:
        """Drop counters and flags whose window ended, and lapsed reservations."""
        for key in [k for k, c in self.counters.items() if c.expires <= now]:
            del self.counters[key]
        for rid in [i for i, rs in self.reservations.items() if rs[0].expires <= now]:
            del self.reservations[rid]
        for flag in [f for f, end in self.flags.items() if end <= now]:
            del self.flags[flag]
