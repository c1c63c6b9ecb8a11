"""The SQLite store's mirror: its own writes are applied in memory, others' are read.

A store applies its own reserve, settle and release to its in-memory mirror instead of reading
every reservation again (the overhead benchmark's hot spot with budgets on), and reads the
cooldowns and the mode again only when someone changed them. Whenever another store (another
process) wrote in between, it must read what that store changed, so every view stays exact
however the writes interleave.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from stellwerk.failures import FailureClass
from stellwerk.state import SQLiteStore
from stellwerk.state.base import BudgetUse
from stellwerk.state.sqlite import SWEEP_EVERY

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


_OTHER = textwrap.dedent(
    """
    import asyncio, sys
    from stellwerk.failures import FailureClass
    from stellwerk.state import SQLiteStore

    async def main(path, action):
        store = SQLiteStore(path)
        if action == "cool":
            await store.strike("cred:x#1", FailureClass.BILLING, 1e9, lambda s: 2e9)
            await store.set_emergency(True, 1e9, "from elsewhere")
        else:
            await store.reset()
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def other_process(path: Path, action: str) -> None:
    subprocess.run([sys.executable, "-c", _OTHER, str(path), action], check=True, timeout=60)


async def test_another_process_cooldown_is_seen_between_own_budget_writes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    try:
        assert not (await store.snapshot(NOW)).cooldowns
        rid = await store.reserve(KEYS, 100, 10, NOW, TTL)
        other_process(path, "cool")
        assert await store.settle(rid, 5, 1, NOW)  # own write after theirs
        snap = await store.snapshot(NOW)
        assert snap.blocked("cred:x#1") is not None
        assert (snap.emergency, snap.emergency_reason) == (True, "from elsewhere")
        assert snap.budgets[DAILY] == BudgetUse(5, 1)

        await store.reserve(KEYS, 100, 10, NOW, TTL)
        other_process(path, "reset")
        await store.reserve(KEYS, 100, 10, NOW, TTL)
        snap = await store.snapshot(NOW)
        assert not snap.cooldowns
        assert snap.budgets[DAILY] == BudgetUse(205, 21, 200, 20)
    finally:
        await store.close()


async def test_own_strikes_show_at_once_between_budget_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    try:
        rid = await store.reserve(KEYS, 100, 10, NOW, TTL)
        await store.strike("cred:x#1", FailureClass.RATE_LIMIT, NOW, lambda s: 60.0)
        await store.settle(rid, 5, 1, NOW)
        assert (await store.snapshot(NOW)).blocked("cred:x#1") is not None
        await store.recover("cred:x#1")
        await store.reserve(KEYS, 100, 10, NOW, TTL)
        assert not (await store.snapshot(NOW)).cooldowns
    finally:
        await store.close()


async def test_a_settle_whose_clock_read_earlier_counts_in_the_mirror_too(tmp_path: Path) -> None:
    """Requests read the clock at different moments: a snapshot at a later `now` may already
    leave out a reservation that a settle with an earlier `now` still settles."""
    store = SQLiteStore(tmp_path / "state.db")
    try:
        rid = await store.reserve(KEYS, 100, 10, NOW, TTL)
        assert DAILY not in (await store.snapshot(NOW + TTL)).budgets
        assert await store.settle(rid, 7, 2, NOW + TTL - 1)
        use = (await store.snapshot(NOW + TTL)).budgets[DAILY]
        assert use == BudgetUse(7, 2)
        again = SQLiteStore(tmp_path / "state.db")
        assert (await again.snapshot(NOW + TTL)).budgets[DAILY] == use
        await again.close()
    finally:
        await store.close()


async def test_lapsed_reservations_leave_the_file_within_seconds(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    try:
        for second in range(300):  # one attempt a second, each dying before it settles
            await store.reserve(KEYS, 1, 1, NOW + second, 1.0)
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        (held,) = conn.execute("SELECT count(*) FROM budget_reservations").fetchone()
    conn.close()
    assert held <= SWEEP_EVERY + 1


_VERSION_2 = (  # the schema as Stellwerk wrote it before the generations
    """CREATE TABLE cooldowns (
        key TEXT PRIMARY KEY, until REAL NOT NULL, reason TEXT NOT NULL,
        strikes INTEGER NOT NULL, since REAL NOT NULL, detail TEXT NOT NULL DEFAULT '')""",
    """CREATE TABLE kv (
        name TEXT PRIMARY KEY, value TEXT NOT NULL, changed_at REAL NOT NULL,
        reason TEXT NOT NULL DEFAULT '')""",
    """CREATE TABLE budget_counters (
        key TEXT PRIMARY KEY, tokens INTEGER NOT NULL, micros INTEGER NOT NULL,
        expires REAL NOT NULL)""",
    """CREATE TABLE budget_reservations (
        id TEXT NOT NULL, key TEXT NOT NULL, tokens INTEGER NOT NULL, micros INTEGER NOT NULL,
        expires REAL NOT NULL, key_expires REAL NOT NULL, PRIMARY KEY (id, key))""",
    """CREATE TABLE budget_flags (
        key TEXT NOT NULL, threshold TEXT NOT NULL, expires REAL NOT NULL,
        PRIMARY KEY (key, threshold))""",
    "PRAGMA user_version = 2",
    "INSERT INTO cooldowns VALUES ('cred:x#1', 2e9, 'billing', 1, 1e9, '')",
    f"INSERT INTO budget_counters VALUES ('{DAILY}', 40, 4, {NOW + 86400})",
    f"INSERT INTO budget_reservations VALUES ('res_1', '{DAILY}', 100, 10, {NOW + TTL}, "
    f"{NOW + 86400})",
    "INSERT INTO kv VALUES ('emergency', '1', 1e9, 'before the upgrade')",
)


async def test_a_file_written_before_the_upgrade_keeps_its_state(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        for sql in _VERSION_2:
            conn.execute(sql)
    conn.close()
    store, other = SQLiteStore(path), SQLiteStore(path)
    try:
        snap = await store.snapshot(NOW)
        assert snap.blocked("cred:x#1") is not None and snap.emergency
        assert snap.budgets[DAILY] == BudgetUse(140, 14, 100, 10)
        assert await store.settle("res_1", 5, 1, NOW)
        await other.reset()
        await other.set_emergency(False, NOW)
        snap = await store.snapshot(NOW)
        assert not snap.cooldowns and not snap.emergency
        assert snap.budgets[DAILY] == BudgetUse(45, 5)
    finally:
        await store.close()
        await other.close()
