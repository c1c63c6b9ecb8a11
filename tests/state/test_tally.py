"""The in-memory budget book keeps running sums; they must always equal summing every row.

`Tally.usage` adds up counters and per-window sums of the reservations in flight instead of
visiting every reservation. A random run of reserves, settles, releases and clock steps (with
windows ending and reservations lapsing along the way) is checked against `tally.usage`, which
sums the same rows from scratch, after every step.
"""

from __future__ import annotations

import random

import pytest

from stellwerk.state.base import BudgetUse
from stellwerk.state.tally import Counter, Reservation, Tally, usage

NOW = 1_700_000_000.0
ENDS = {"daily:a|all": NOW + 40, "daily:a|model:m": NOW + 40, "weekly:w|all": NOW + 400}


class Rows:
    """The same book kept the obvious way: every row, nothing ever summed ahead."""

    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}
        self.held: dict[str, list[Reservation]] = {}

    def usage(self, now: float) -> dict[str, BudgetUse]:
        return usage(self.counters.values(), [r for rs in self.held.values() for r in rs], now)

    def settle(self, rid: str, tokens: int, micros: int, now: float) -> bool:
        held = self.held.pop(rid, [])
        if not held or held[0].expires <= now:
            return False
        for r in held:
            c = self.counters.get(r.key) or Counter(r.key, 0, 0, r.key_expires)
            self.counters[r.key] = Counter(r.key, c.tokens + tokens, c.micros + micros, c.expires)
        return True


@pytest.mark.parametrize("seed", range(8))
def test_running_sums_equal_summing_every_row(seed: int) -> None:
    rng = random.Random(seed)
    tally, rows, now, rids = Tally(), Rows(), NOW, []
    for _ in range(400):
        step = rng.random()
        if step < 0.4:
            keys = {k: end for k, end in ENDS.items() if rng.random() < 0.6}
            tokens, micros, ttl = rng.randrange(1, 500), rng.randrange(0, 50), rng.uniform(0, 60)
            rid = tally.reserve(keys, tokens, micros, now, ttl)
            rows.held[rid] = [
                Reservation(rid, k, tokens, micros, now + ttl, e) for k, e in keys.items()
            ]
            rids.append(rid)
        elif step < 0.65 and rids:
            rid, tokens, micros = rng.choice(rids), rng.randrange(0, 300), rng.randrange(0, 30)
            assert tally.settle(rid, tokens, micros, now) == rows.settle(rid, tokens, micros, now)
        elif step < 0.8 and rids:
            rid = rng.choice(rids)
            held, released = rows.held.pop(rid, []), tally.release(rid)
            if held and held[0].expires > now:  # a lapsed one may or may not be gone already
                assert released
            else:
                assert not released or held
        else:
            now += rng.choice([0.0, 0.5, 3.0, 10.0])
        assert tally.usage(now) == rows.usage(now), now
        again = Tally(
            tally.counters.values(), [r for rs in tally.reservations.values() for r in rs]
        )
        assert again.usage(now) == rows.usage(now), "a book loaded from the rows agrees"


def test_a_lapsed_reservation_stops_counting_exactly_at_its_expiry() -> None:
    tally = Tally()
    tally.reserve({"daily:a|all": NOW + 3600}, 100, 10, NOW, 60)
    tally.reserve({"daily:a|all": NOW + 3600}, 1, 1, NOW, 600)
    assert tally.usage(NOW + 59.999)["daily:a|all"] == BudgetUse(101, 11, 101, 11)
    assert tally.usage(NOW + 60)["daily:a|all"] == BudgetUse(1, 1, 1, 1)


def test_warn_flags_end_with_their_window() -> None:
    tally = Tally()
    assert tally.mark_warned("daily:a|all", "warn", NOW, NOW + 10)
    assert not tally.mark_warned("daily:a|all", "warn", NOW + 9, NOW + 10)
    assert tally.mark_warned("daily:a|all", "warn", NOW + 10, NOW + 20)
