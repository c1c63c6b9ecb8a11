"""Budget counters, reservations and warn flags as plain data: the part every backend shares.

A counter holds the settled usage of one window and scope. A reservation holds an attempt's
estimate for each counter it touches until it is settled (the estimate is replaced by the actual
usage), released (dropped) or lapses (dropped at its TTL: the process died mid-call). Keeping
reservations apart from counters makes "exactly once" simple: settling removes the reservation
and adds the actual in one step, and a second settle finds nothing. The usage a snapshot shows is
counter plus live reservations.

`Tally` is the in-memory book (MemoryStore uses it, the SQLite store mirrors its tables in one,
an unreachable Redis's replica counts on in one). Its usage is read on every request, so it keeps
running sums of the reservations in flight per counter and window end: reading costs O(counter
keys) whatever the number of requests in flight, where summing every reservation cost ~25% of a
gateway's CPU at 64 in flight. Everything that stops counting at a known time (a counter's
window, a reservation's TTL, a flag) is forgotten by the first call at or after the earliest such
time, so a lapsed reservation stops counting exactly then.
"""

from __future__ import annotations

import math
import os
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
    """`res_` and 128 random bits in hex (os.urandom: half the cost of uuid4)."""
    return f"res_{os.urandom(16).hex()}"


def usage(
    counters: Iterable[Counter], reservations: Iterable[Reservation], now: float
) -> dict[str, BudgetUse]:
    """Live usage per counter key at `now`: settled counters plus live reservations.

    Sums plain integers and builds one `BudgetUse` per key: a frozen dataclass per reservation
    was most of the cost."""
    held: dict[str, list[int]] = {}
    for r in reservations:
        if r.expires > now and r.key_expires > now:
            sums = held.get(r.key)
            if sums is None:
                held[r.key] = [r.tokens, r.micros]
            else:
                sums[0] += r.tokens
                sums[1] += r.micros
    out = {c.key: BudgetUse(c.tokens, c.micros) for c in counters if c.expires > now}
    for key, (tokens, micros) in held.items():
        out[key] = _plus(out.get(key), tokens, micros)
    return out


def _plus(use: BudgetUse | None, tokens: int, micros: int) -> BudgetUse:
    """`use` with `tokens` and `micros` more in flight."""
    if use is None:
        return BudgetUse(tokens, micros, tokens, micros)
    return BudgetUse(
        use.tokens + tokens,
        use.micros + micros,
        use.reserved_tokens + tokens,
        use.reserved_micros + micros,
    )


class _Held:
    """The running sum of the live reservations on one counter key with one window end."""

    __slots__ = ("micros", "parts", "tokens")

    def __init__(self) -> None:
        self.tokens = 0
        self.micros = 0
        self.parts = 0


class Tally:
    """Counters, reservations and warn flags in dicts, plus running sums of what is in flight.

    Read `counters`, `reservations` and `flags` freely but change them only through the methods,
    which keep the sums. Not locked: the caller serialises."""

    def __init__(self, counters: Iterable[Counter] = (), holds: Iterable[Reservation] = ()) -> None:
        self.counters: dict[str, Counter] = {}
        self.reservations: dict[str, tuple[Reservation, ...]] = {}
        self.flags: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, float], _Held] = {}  # by counter key and its window end
        self._sums: dict[str, tuple[_Held, ...]] = {}  # by reservation id, one per part
        self._due = math.inf  # the earliest time at which something stops counting
        for c in counters:
            self.counters[c.key] = c
            self._due = min(self._due, c.expires)
        parts: dict[str, list[Reservation]] = {}
        for r in holds:
            parts.setdefault(r.id, []).append(r)
        for rid, held in parts.items():
            self._hold(rid, tuple(held))

    def usage(self, now: float) -> dict[str, BudgetUse]:
        """Live usage per counter key at `now`, in O(counter keys)."""
        self.forget(now)
        out = {key: BudgetUse(c.tokens, c.micros) for key, c in self.counters.items()}
        for (key, _), held in self._held.items():
            out[key] = _plus(out.get(key), held.tokens, held.micros)
        return out

    def reserve(
        self,
        keys: Mapping[str, float],
        tokens: int,
        micros: int,
        now: float,
        ttl: float,
        rid: str | None = None,
    ) -> str:
        """Hold an estimate on every counter in `keys` (key -> its window's end) until `now +
        ttl`; return the reservation id (`rid` when the caller already chose one)."""
        self.forget(now)
        rid = rid or new_reservation_id()
        self.hold(rid, keys, tokens, micros, now + ttl)
        return rid

    def hold(
        self, rid: str, keys: Mapping[str, float], tokens: int, micros: int, expires: float
    ) -> None:
        """Hold reservation `rid` on every counter in `keys` until `expires`: a reservation
        made elsewhere (another process's, replayed from the SQLite store's budget log)."""
        held = tuple(Reservation(rid, k, tokens, micros, expires, end) for k, end in keys.items())
        self._hold(rid, held)

    def settle(self, rid: str, tokens: int, micros: int, now: float) -> bool:
        """Replace a live reservation's estimate with the actual usage; False if it is unknown
        or lapsed (and then nothing is charged)."""
        held = self._drop(rid)
        if not held or held[0].expires <= now:
            return False
        self.charge({r.key: r.key_expires for r in held}, tokens, micros)
        return True

    def settled(self, rid: str, keys: Mapping[str, float] | None, tokens: int, micros: int) -> None:
        """A settle decided elsewhere (in the SQLite tables, or by Redis): drop reservation
        `rid` and charge the counters the store charged (`keys`; None: it charged nothing)."""
        self.release(rid)
        if keys is not None:
            self.charge(keys, tokens, micros)

    def charge(self, keys: Mapping[str, float], tokens: int, micros: int) -> None:
        """Add settled usage to the counters in `keys` (key -> its window's end)."""
        for key, end in keys.items():
            c = self.counters.get(key)
            if c is None:
                self.counters[key] = Counter(key, tokens, micros, end)
                self._due = min(self._due, end)
            else:
                self.counters[key] = Counter(key, c.tokens + tokens, c.micros + micros, c.expires)

    def release(self, rid: str) -> bool:
        return bool(self._drop(rid))

    def mark_warned(self, key: str, threshold: str, now: float, expires: float) -> bool:
        self.forget(now)
        if (key, threshold) in self.flags:
            return False
        self.flags[(key, threshold)] = expires
        self._due = min(self._due, expires)
        return True

    def forget(self, now: float) -> None:
        """Drop counters and flags whose window ended and reservations that lapsed, and stop
        counting reservations on ended windows. Free until the earliest of those times."""
        if now < self._due:
            return
        for key in [k for k, c in self.counters.items() if c.expires <= now]:
            del self.counters[key]
        for rid in [i for i, rs in self.reservations.items() if rs[0].expires <= now]:
            self._drop(rid)
        for window in [w for w in self._held if w[1] <= now]:
            del self._held[window]  # its reservations stay until they lapse: they may settle
        for flag in [f for f, end in self.flags.items() if end <= now]:
            del self.flags[flag]
        ends = (
            *(c.expires for c in self.counters.values()),
            *(rs[0].expires for rs in self.reservations.values()),
            *(end for _, end in self._held),
            *self.flags.values(),
        )
        self._due = min(ends, default=math.inf)

    def _hold(self, rid: str, held: tuple[Reservation, ...]) -> None:
        self._drop(rid)
        if not held:
            return
        sums = []
        for r in held:
            window = (r.key, r.key_expires)
            s = self._held.get(window)
            if s is None:
                s = self._held[window] = _Held()
                self._due = min(self._due, r.key_expires)
            s.tokens += r.tokens
            s.micros += r.micros
            s.parts += 1
            sums.append(s)
        self.reservations[rid] = held
        self._sums[rid] = tuple(sums)
        self._due = min(self._due, held[0].expires)

    def _drop(self, rid: str) -> tuple[Reservation, ...]:
        """Remove a reservation and its part of the sums; what it held (empty if unknown)."""
        held = self.reservations.pop(rid, ())
        for r, s in zip(held, self._sums.pop(rid, ()), strict=True):
            s.tokens -= r.tokens
            s.micros -= r.micros
            s.parts -= 1
            window = (r.key, r.key_expires)
            if s.parts == 0 and self._held.get(window) is s:
                del self._held[window]
        return held
