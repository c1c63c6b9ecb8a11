"""The SQLite store's budget mirror: its own writes are applied in memory, others' are read.

A store applies its own reserve, settle and release to its in-memory mirror instead of reading
every reservation again (the overhead benchmark's hot spot with budgets on). Whenever another
store (another process) wrote in between, it must read the tables again, so every view stays
exact however the writes interleave.
"""

from __future__ import annotations

from pathlib import Path

from stellwerk.state import SQLiteStore
from stellwerk.state.base import BudgetUse

NOW, TTL = 1_700_000_000.0, 600.0
DAILY = "daily:2023-11-14|all"
KEYS = {DAILY: NOW + 86400}


async def test_interleaved_writes_of_two_stores_add_up_in_both_views(tmp_path: Path) -> None:
    one, two = SQLiteStore(tmp_path / "state.db"), SQLiteStore(tmp_path / "state.db")
    try:
        await one.snapshot(NOW)
        await two.snapshot(NOW)
        a = await one.reserve(KEYS, 100, 10, NOW, TTL)
        b = await two.reserve(KEYS, 200, 20, NOW, TTL)
        c = await one.reserve(KEYS, 400, 40, NOW, TTL)  # `two` wrote in between: `one` reads
        expected = BudgetUse(700, 70, 700, 70)
        assert (await one.snapshot(NOW)).budgets[DAILY] == expected
        assert (await two.snapshot(NOW)).budgets[DAILY] == expected

        assert await two.settle(a, 5, 1, NOW)  # settles `one`'s reservation
        assert await one.release(c)
        assert await one.settle(b, 7, 2, NOW)
        assert not await two.settle(b, 7, 2, NOW)  # once only, whoever tries
        for store in (one, two):
            assert (await store.snapshot(NOW)).budgets[DAILY] == BudgetUse(12, 3)
    finally:
        await one.close()
        await two.close()


async def test_own_writes_alone_need_no_reread_and_stay_exact(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    try:
        held = [await store.reserve(KEYS, 10, 1, NOW, TTL) for _ in range(50)]
        for rid in held[:20]:
            assert await store.settle(rid, 3, 2, NOW)
        for rid in held[20:30]:
            assert await store.release(rid)
        use = (await store.snapshot(NOW)).budgets[DAILY]
        assert use == BudgetUse(60 + 200, 40 + 20, 200, 20)
        again = SQLiteStore(tmp_path / "state.db")  # what a fresh reader sees agrees
        assert (await again.snapshot(NOW)).budgets[DAILY] == use
        await again.close()
    finally:
        await store.close()
