"""The SQLite store's mirror: its own writes are applied in memory, others' are replayed.

A store applies its own reserve, settle and release to its in-memory mirror instead of reading
every reservation again (the overhead benchmark's hot spot with budgets on), and reads the
cooldowns and the mode again only when someone changed them. Another store's (another
process's) budget writes reach the mirror through the budget log, or by reading the tables
whole when the mirror is too far behind for the log; either way every view must equal what the
tables hold, however the writes interleave.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from stellwerk.failures import FailureClass
from stellwerk.state import SQLiteStore, sqlite
from stellwerk.state.base import BudgetUse
from stellwerk.state.sqlite import LOG_KEPT, SWEEP_EVERY
from stellwerk.state.tally import Counter, Reservation, Tally, usage

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


# -- other processes' budget writes, replayed ---------------------------------------------------

WEEKLY = "weekly:2023-W46|all"
SHORT = "daily:2023-11-14|model:m"  # a window that ends ten seconds after NOW
BOTH = {DAILY: NOW + 86400, WEEKLY: NOW + 7 * 86400}


def on_file(path: Path, now: float) -> dict[str, BudgetUse]:
    """What the tables hold at `now`, summed row by row: what a full re-read shows."""
    with closing(sqlite3.connect(path)) as conn:
        counters = [Counter(*row) for row in conn.execute("SELECT * FROM budget_counters")]
        holds = [Reservation(*row) for row in conn.execute("SELECT * FROM budget_reservations")]
    return usage(counters, holds, now)


@pytest.fixture
def full_reads(monkeypatch: pytest.MonkeyPatch) -> list[Tally]:
    """Every time a store in this process reads the budget tables whole."""
    reads: list[Tally] = []

    def counted(conn: sqlite3.Connection) -> Tally:
        reads.append(load(conn))
        return reads[-1]

    load: Callable[[sqlite3.Connection], Tally] = sqlite._load_tally
    monkeypatch.setattr(sqlite, "_load_tally", counted)
    return reads


async def test_another_stores_budget_writes_reach_the_mirror_exactly(
    tmp_path: Path, full_reads: list[Tally]
) -> None:
    path = tmp_path / "state.db"
    mine, theirs = SQLiteStore(path), SQLiteStore(path)
    try:
        await mine.snapshot(NOW)
        del full_reads[:]
        kept = await mine.reserve(BOTH, 50, 5, NOW, TTL)
        mine_released = await mine.reserve(BOTH, 60, 6, NOW, TTL)
        settled = await theirs.reserve(BOTH, 100, 10, NOW, TTL)
        short = await theirs.reserve({**BOTH, SHORT: NOW + 10}, 200, 20, NOW, 5.0)
        assert (await mine.snapshot(NOW)).budgets == on_file(path, NOW)

        assert await theirs.settle(settled, 7, 2, NOW + 1)
        assert await theirs.release(mine_released)
        assert not await theirs.settle("res_unknown", 1, 1, NOW + 1)
        late = await mine.reserve(BOTH, 400, 40, NOW + 1, TTL)  # own write after theirs
        for now in (NOW + 1, NOW + 4.999):
            assert (await mine.snapshot(now)).budgets == on_file(path, now)
        assert (await mine.snapshot(NOW + 1)).budgets[DAILY] == BudgetUse(
            50 + 7 + 200 + 400, 5 + 2 + 20 + 40, 50 + 200 + 400, 5 + 20 + 40
        )

        assert not await theirs.settle(short, 9, 9, NOW + 5)  # lapsed: nothing charged
        assert await theirs.settle(late, 11, 3, NOW + 6)
        assert await mine.settle(kept, 13, 4, NOW + 6)
        for now in (NOW + 5, NOW + 9.999, NOW + 10, NOW + TTL):
            assert (await mine.snapshot(now)).budgets == on_file(path, now)
        assert (await mine.snapshot(NOW + 10)).budgets[DAILY] == BudgetUse(31, 9)
        assert not full_reads
    finally:
        await mine.close()
        await theirs.close()


async def test_a_store_too_far_behind_for_the_log_reads_the_tables_whole(
    tmp_path: Path, full_reads: list[Tally]
) -> None:
    path = tmp_path / "state.db"
    mine, theirs = SQLiteStore(path), SQLiteStore(path)
    try:
        await mine.snapshot(NOW)
        del full_reads[:]
        for behind, reads in ((LOG_KEPT, 0), (LOG_KEPT + 1, 1)):
            for write in range(behind):  # reserve, settle, reserve, ...
                if write % 2 == 0:
                    rid = await theirs.reserve(BOTH, 10, 1, NOW, TTL)
                else:
                    await theirs.settle(rid, 3, 2, NOW)
            assert (await mine.snapshot(NOW)).budgets == on_file(path, NOW)
            assert len(full_reads) == reads
    finally:
        await mine.close()
        await theirs.close()
    with closing(sqlite3.connect(path)) as conn:
        (logged,) = conn.execute("SELECT count(*) FROM budget_log").fetchone()
    assert LOG_KEPT <= logged < 2 * LOG_KEPT  # the log stays small however many writes


async def test_a_log_missing_a_write_is_not_replayed(
    tmp_path: Path, full_reads: list[Tally]
) -> None:
    path = tmp_path / "state.db"
    mine, theirs = SQLiteStore(path), SQLiteStore(path)
    try:
        await mine.snapshot(NOW)
        del full_reads[:]
        first = await theirs.reserve(BOTH, 100, 10, NOW, TTL)
        await theirs.reserve(BOTH, 200, 20, NOW, TTL)
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("DELETE FROM budget_log WHERE id = ?", (first,))
        assert (await mine.snapshot(NOW)).budgets[DAILY] == BudgetUse(300, 30, 300, 30)
        assert len(full_reads) == 1
    finally:
        await mine.close()
        await theirs.close()


_SPENDS = textwrap.dedent(
    """
    import asyncio, sys
    from stellwerk.state import SQLiteStore

    async def main(path, now, settle, release):
        store = SQLiteStore(path)
        keys = {"daily:2023-11-14|all": now + 86400, "weekly:2023-W46|all": now + 7 * 86400}
        await store.settle(settle, 7, 2, now)
        await store.release(release)
        await store.reserve(keys, 300, 30, now, 5.0)
        rid = await store.reserve(keys, 400, 40, now, 600.0)
        await store.settle(rid, 17, 4, now)
        await store.reserve(keys, 500, 50, now, 600.0)
        await store.close()

    asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]))
    """
)


async def test_another_processes_budget_writes_are_replayed_into_the_mirror(
    tmp_path: Path, full_reads: list[Tally]
) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    try:
        settled = await store.reserve(BOTH, 100, 10, NOW, TTL)
        released = await store.reserve(BOTH, 200, 20, NOW, TTL)
        await store.snapshot(NOW)
        del full_reads[:]
        argv = [sys.executable, "-c", _SPENDS, str(path), repr(NOW), settled, released]
        subprocess.run(argv, check=True, timeout=60)
        use = (await store.snapshot(NOW)).budgets
        assert use == on_file(path, NOW)
        assert use[WEEKLY] == BudgetUse(7 + 17 + 300 + 500, 2 + 4 + 30 + 50, 800, 80)
        assert (await store.snapshot(NOW + 5)).budgets == on_file(path, NOW + 5)
        assert (await store.snapshot(NOW + 5)).budgets[WEEKLY] == BudgetUse(524, 56, 500, 50)
        assert not full_reads
    finally:
        await store.close()
