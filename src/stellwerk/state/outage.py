"""What a Redis-backed replica routes on while Redis is unreachable, and what it owes Redis after.

Routing fails open: a replica whose Redis went away keeps answering requests from the state it
last read (cooldowns, emergency mode, budget counters) and counts on locally from there, with the
same rules as every store (`cooldown.next_cooldown`, `tally.Tally`). Every change it makes
meanwhile (a strike, a recovery, a reset, a mode switch, a rate-limit event, a settled budget
charge, a warn flag) is also put in a journal: the same operation, ready to run against Redis.
When Redis answers again the journal is replayed in order, once, and the book is dropped.

Replaying is safe to repeat: events carry ids, warn flags and resets are idempotent, and a settle
made during the outage is replayed in the store's `sure` mode, which remembers it was applied. A
strike replayed twice (its first try reached Redis but the answer did not) counts one extra
strike, which only lengthens one backoff step.

What the outage costs, by design: other replicas' changes made during it are not seen until it
ends (each replica routes on its own view), and budgets can overshoot by what the replicas spend
in that time, since none sees the others' spending.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping

from ..failures import FailureClass
from .base import TURNS_KEPT, Cooldown, Snapshot
from .cooldown import forgotten, next_cooldown
from .events import recent
from .lua import Known, Mode
from .tally import Tally

Replay = Callable[[], Awaitable[object]]
"""One journal entry: the operation, as it will run against Redis."""


class Book:
    """The local state of one replica during an outage, seeded with what it last read."""

    def __init__(self, known: Known) -> None:
        self.cooldowns: dict[str, Cooldown] = dict(known.cooldowns)
        self.mode = known.mode
        self.tally = Tally(known.counters, known.holds)
        self.events: dict[str, list[float]] = {}
        self.journal: deque[Replay] = deque()
        self.turns: OrderedDict[str, tuple[str, float]] = OrderedDict()  # remembered meanwhile

    def owe(self, replay: Replay) -> None:
        """Remember an operation to run against Redis when it is back."""
        self.journal.append(replay)

    def snapshot(self, now: float, degraded: str) -> Snapshot:
        known = Known(
            self.cooldowns,
            self.mode,
            tuple(self.tally.counters.values()),
            tuple(r for rs in self.tally.reservations.values() for r in rs),
        )
        return known.snapshot(now, degraded)

    def strike(
        self,
        key: str,
        reason: FailureClass,
        now: float,
        duration: Callable[[int], float],
        detail: str,
    ) -> Cooldown:
        cooldown = next_cooldown(self.cooldowns.get(key), key, reason, now, duration, detail)
        if cooldown.until > now:
            self.cooldowns[key] = cooldown
        for old in [k for k, c in self.cooldowns.items() if forgotten(c, now)]:
            del self.cooldowns[old]
        return cooldown

    def recover(self, key: str) -> None:
        self.cooldowns.pop(key, None)

    def reset(self, prefix: str) -> int:
        doomed = [k for k in self.cooldowns if k.startswith(prefix)]
        for key in doomed:
            del self.cooldowns[key]
        return len(doomed)

    def set_emergency(self, on: bool, now: float, reason: str) -> bool:
        if on == self.mode.on:
            return False
        self.mode = Mode(on, now, reason)
        return True

    def count_recent(self, name: str, now: float, window: float) -> int:
        times = recent([*self.events.get(name, ()), now], now, window)
        self.events[name] = times
        return len(times)

    def reserve(
        self, rid: str, keys: Mapping[str, float], tokens: int, micros: int, now: float, ttl: float
    ) -> None:
        self.tally.reserve(keys, tokens, micros, now, ttl, rid)

    def settle(self, rid: str, keys: Mapping[str, float], tokens: int, micros: int) -> None:
        """Charge the actual usage to `keys` (the counters the reservation was made on)."""
        self.tally.settled(rid, keys, tokens, micros)

    def release(self, rid: str) -> None:
        self.tally.release(rid)

    def mark_warned(self, key: str, threshold: str, now: float, expires: float) -> bool:
        return self.tally.mark_warned(key, threshold, now, expires)

    def remember_turn(self, turn: str, target: str, now: float, ttl: float) -> None:
        self.turns[turn] = (target, now + ttl)
        self.turns.move_to_end(turn)
        while len(self.turns) > TURNS_KEPT:
            self.turns.popitem(last=False)

    def turn_target(self, turn: str, now: float) -> str | None:
        """Only the turns remembered during the outage: the others are in Redis."""
        found = self.turns.get(turn)
        return found[0] if found is not None and found[1] > now else None
