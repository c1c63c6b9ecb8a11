"""One contract for every state backend: what routing relies on, whichever store holds it.

Time is injected (`now`), never slept through. Backend-specific guarantees (SQLite's durability
and its atomic strikes across real processes) follow the shared contract.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from stellwerk.errors import ConfigError
from stellwerk.failures import FailureClass
from stellwerk.policy import StatePolicy
from stellwerk.state import (
    FOREVER,
    MemoryStore,
    SQLiteStore,
    StateStore,
    credential_key,
    default_state_path,
    model_key,
    open_store,
)
from stellwerk.state.base import BudgetUse
from stellwerk.state.cooldown import STRIKE_MEMORY

MakeStore = Callable[[], StateStore]

NOW = 1_700_000_000.0
KEY = credential_key("anthropic#1", "anthropic/claude-sonnet-4-0")
BILLING, RATE = FailureClass.BILLING, FailureClass.RATE_LIMIT


def fixed(seconds: float) -> Callable[[int], float]:
    return lambda strikes: seconds


def doubling(base: float) -> Callable[[int], float]:
    return lambda strikes: base * 2 ** (strikes - 1)


async def test_fresh_store_is_empty_and_not_in_emergency(store: StateStore) -> None:
    snap = await store.snapshot(NOW)
    assert snap.now == NOW
    assert dict(snap.cooldowns) == {}
    assert not snap.emergency


async def test_strike_blocks_key_until_duration_has_passed(store: StateStore) -> None:
    cooldown = await store.strike(KEY, RATE, NOW, fixed(30), detail="429 from upstream")
    assert (cooldown.key, cooldown.until, cooldown.strikes) == (KEY, NOW + 30, 1)
    assert (cooldown.reason, cooldown.since, cooldown.detail) == (RATE, NOW, "429 from upstream")
    assert (await store.snapshot(NOW + 29.9)).blocked(KEY) == cooldown
    assert (await store.snapshot(NOW + 30)).blocked(KEY) is None


async def test_snapshot_leaves_out_expired_cooldowns(store: StateStore) -> None:
    await store.strike("cred:a#1", RATE, NOW, fixed(10))
    await store.strike("cred:b#1", BILLING, NOW, fixed(7200))
    snap = await store.snapshot(NOW + 60)
    assert set(snap.cooldowns) == {"cred:b#1"}


async def test_repeated_failures_add_strikes_and_back_off(store: StateStore) -> None:
    first = await store.strike(KEY, RATE, NOW, doubling(10))
    second = await store.strike(KEY, RATE, NOW + 5, doubling(10))
    third = await store.strike(KEY, RATE, second.until + 60, doubling(10))
    assert [first.strikes, second.strikes, third.strikes] == [1, 2, 3]
    assert second.until == NOW + 5 + 20
    assert third.until == second.until + 60 + 40
    assert third.since == NOW, "since marks the start of the run of failures"


async def test_strikes_start_over_after_a_long_quiet(store: StateStore) -> None:
    first = await store.strike(KEY, RATE, NOW, doubling(10))
    later = first.until + STRIKE_MEMORY + 1
    again = await store.strike(KEY, RATE, later, doubling(10))
    assert (again.strikes, again.until, again.since) == (1, later + 10, later)


async def test_zero_duration_records_nothing(store: StateStore) -> None:
    cooldown = await store.strike(KEY, FailureClass.CONTEXT_OVERFLOW, NOW, fixed(0))
    assert cooldown.until == NOW
    assert not cooldown.active(NOW)
    assert dict((await store.snapshot(NOW)).cooldowns) == {}
    assert (await store.strike(KEY, RATE, NOW, fixed(5))).strikes == 1


async def test_forever_lasts_until_reset(store: StateStore) -> None:
    key = credential_key("openai#1")
    cooldown = await store.strike(key, FailureClass.AUTH, NOW, fixed(FOREVER), "401")
    assert cooldown.until == FOREVER
    snap = await store.snapshot(NOW + 10 * 365 * 86400)
    assert snap.blocked(key) == cooldown
    assert await store.reset(key) == 1
    assert (await store.snapshot(NOW)).blocked(key) is None


async def test_recover_forgets_cooldown_and_strikes(store: StateStore) -> None:
    await store.strike(KEY, RATE, NOW, doubling(10))
    await store.strike(KEY, RATE, NOW + 1, doubling(10))
    await store.recover(KEY)
    assert (await store.snapshot(NOW + 1)).blocked(KEY) is None
    assert (await store.strike(KEY, RATE, NOW + 2, doubling(10))).strikes == 1


async def test_recover_of_unknown_key_is_harmless(store: StateStore) -> None:
    await store.strike(KEY, RATE, NOW, fixed(10))
    await store.recover("cred:never-failed#1")
    assert (await store.snapshot(NOW)).blocked(KEY) is not None


async def test_reset_clears_keys_with_prefix_then_everything(store: StateStore) -> None:
    keys = [
        credential_key("anthropic#1"),
        credential_key("anthropic#1", "anthropic/claude-haiku-4-5"),
        credential_key("openai#1", "openai/o3-mini"),
        model_key("openai/gpt-5.1-codex"),
    ]
    for key in keys:
        await store.strike(key, BILLING, NOW, fixed(7200))
    assert await store.reset("cred:anthropic#1") == 2
    assert set((await store.snapshot(NOW)).cooldowns) == set(keys[2:])
    assert await store.reset("cred:nobody") == 0
    assert await store.reset() == 2
    assert dict((await store.snapshot(NOW)).cooldowns) == {}


async def test_reset_takes_prefix_literally(store: StateStore) -> None:
    await store.strike("cred:a_b#1", BILLING, NOW, fixed(60))
    await store.strike("cred:axb#1", BILLING, NOW, fixed(60))
    assert await store.reset("cred:a_") == 1
    assert set((await store.snapshot(NOW)).cooldowns) == {"cred:axb#1"}


async def test_emergency_switches_and_reports_changes(store: StateStore) -> None:
    assert await store.set_emergency(True, NOW, "rate limits everywhere") is True
    assert (await store.snapshot(NOW)).emergency
    assert await store.set_emergency(True, NOW + 1) is False
    assert await store.set_emergency(False, NOW + 2, "cloud is back") is True
    assert not (await store.snapshot(NOW + 2)).emergency
    assert await store.set_emergency(False, NOW + 3) is False


async def test_emergency_keeps_since_when_and_why_it_last_changed(
    make_store: MakeStore,
) -> None:
    one, two = make_store(), make_store()
    assert (await one.snapshot(NOW)).emergency_since is None
    await one.set_emergency(True, NOW, "5 rate limits in 5m")
    await one.set_emergency(True, NOW + 10, "again")  # no change: since and why stay
    snap = await two.snapshot(NOW + 20)
    assert (snap.emergency, snap.emergency_since, snap.emergency_reason) == (
        True,
        NOW,
        "5 rate limits in 5m",
    )
    await two.set_emergency(False, NOW + 30, "the cloud answered again")
    snap = await one.snapshot(NOW + 40)
    assert (snap.emergency, snap.emergency_since) == (False, NOW + 30)
    assert snap.emergency_reason == "the cloud answered again"


async def test_count_recent_counts_events_within_the_window(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    assert await one.count_recent("rate_limit", NOW, 300) == 1
    assert await two.count_recent("rate_limit", NOW + 100, 300) == 2
    assert await one.count_recent("other", NOW + 100, 300) == 1, "names count apart"
    assert await one.count_recent("rate_limit", NOW + 350, 300) == 2, "the first has expired"
    assert await two.count_recent("rate_limit", NOW + 1000, 300) == 1


async def test_concurrent_events_all_count(store: StateStore) -> None:
    counts = await asyncio.gather(*(store.count_recent("rl", NOW, 60) for _ in range(20)))
    assert sorted(counts) == list(range(1, 21))


async def test_reset_leaves_emergency_mode_alone(store: StateStore) -> None:
    await store.set_emergency(True, NOW)
    await store.reset()
    assert (await store.snapshot(NOW)).emergency


async def test_concurrent_strikes_all_count(store: StateStore) -> None:
    results = await asyncio.gather(*(store.strike(KEY, RATE, NOW, fixed(60)) for _ in range(20)))
    assert sorted(c.strikes for c in results) == list(range(1, 21))
    assert (await store.snapshot(NOW)).cooldowns[KEY].strikes == 20


async def test_second_store_on_same_state_sees_every_change(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    assert dict((await two.snapshot(NOW)).cooldowns) == {}
    await one.strike(KEY, RATE, NOW, fixed(60))
    assert (await two.snapshot(NOW)).cooldowns[KEY].strikes == 1
    assert (await two.strike(KEY, RATE, NOW + 1, fixed(60))).strikes == 2
    assert (await one.snapshot(NOW + 1)).cooldowns[KEY].strikes == 2
    await one.set_emergency(True, NOW)
    assert (await two.snapshot(NOW)).emergency
    await two.reset()
    assert dict((await one.snapshot(NOW)).cooldowns) == {}
    await two.strike(KEY, RATE, NOW, fixed(60))
    await one.recover(KEY)
    assert (await two.snapshot(NOW)).blocked(KEY) is None


async def test_state_survives_a_restart(make_store: MakeStore, durable: str) -> None:
    first = make_store()
    await first.strike(KEY, BILLING, NOW, fixed(7200), "credit balance is too low")
    await first.strike("cred:openai#1", FailureClass.AUTH, NOW, fixed(FOREVER))
    await first.set_emergency(True, NOW, "rate limited")
    await first.close()
    snap = await make_store().snapshot(NOW + 60)
    assert snap.emergency
    assert snap.cooldowns[KEY].detail == "credit balance is too low"
    assert (snap.cooldowns[KEY].until, snap.cooldowns[KEY].reason) == (NOW + 7200, BILLING)
    assert snap.cooldowns["cred:openai#1"].until == FOREVER


# --- agent turns (one model per turn: stellwerk.affinity) ------------------------------------

TURN, OTHER = "7f" * 16, "a0" * 16
MINI, HAIKU = "openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"


async def test_a_turn_is_remembered_until_its_ttl_ends(store: StateStore) -> None:
    assert await store.turn_target(TURN, NOW) is None
    await store.remember_turn(TURN, MINI, NOW, 1800)
    assert await store.turn_target(TURN, NOW + 1799.9) == MINI
    assert await store.turn_target(TURN, NOW + 1800) is None
    assert await store.turn_target(OTHER, NOW) is None


async def test_remembering_a_turn_again_replaces_its_model_and_starts_its_ttl_again(
    store: StateStore,
) -> None:
    await store.remember_turn(TURN, MINI, NOW, 1800)
    await store.remember_turn(TURN, HAIKU, NOW + 1000, 1800)  # mini failed: haiku keeps it
    assert await store.turn_target(TURN, NOW + 2500) == HAIKU
    await store.remember_turn(OTHER, MINI, NOW, 1800)
    assert await store.turn_target(OTHER, NOW + 10) == MINI


async def test_turns_are_shared_with_a_second_store(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    await one.remember_turn(TURN, HAIKU, NOW, 1800)
    assert await two.turn_target(TURN, NOW + 1) == HAIKU
    await two.remember_turn(TURN, MINI, NOW + 2, 1800)
    assert await one.turn_target(TURN, NOW + 3) == MINI


async def test_turns_survive_a_restart(make_store: MakeStore, durable: str) -> None:
    first = make_store()
    await first.remember_turn(TURN, HAIKU, NOW, 1800)
    await first.close()
    assert await make_store().turn_target(TURN, NOW + 60) == HAIKU


async def test_turns_leave_the_cooldowns_and_the_mode_alone(store: StateStore) -> None:
    await store.strike(KEY, RATE, NOW, fixed(60))
    await store.remember_turn(TURN, MINI, NOW, 1800)
    snap = await store.snapshot(NOW)
    assert set(snap.cooldowns) == {KEY} and not snap.emergency
    assert await store.reset() == 1
    assert await store.turn_target(TURN, NOW) == MINI, "reset clears cooldowns, not turns"


async def test_the_oldest_turns_are_forgotten_beyond_the_cap(
    backend: str, store: StateStore
) -> None:
    if backend == "redis":
        pytest.skip("Redis keeps each turn for its TTL (a key with an expiry), uncapped")
    assert isinstance(store, MemoryStore | SQLiteStore)
    store.turns_kept = 3
    for n in range(5):
        await store.remember_turn(f"turn{n}", MINI, NOW + n, 1800)
    await store.remember_turn("turn2", HAIKU, NOW + 5, 1800)  # used again: now the newest
    await store.remember_turn("turn5", MINI, NOW + 6, 1800)
    kept = {n: await store.turn_target(f"turn{n}", NOW + 7) for n in range(6)}
    assert kept == {0: None, 1: None, 2: HAIKU, 3: None, 4: MINI, 5: MINI}


async def test_sqlite_keeps_its_turn_table_within_a_sixteenth_of_the_cap(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    store.turns_kept = 160  # trimmed every 10 writes
    for n in range(400):
        await store.remember_turn(f"turn{n}", MINI, NOW + n, 1800)
    await store.close()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        (count,) = conn.execute("SELECT count(*) FROM turns").fetchone()
        (oldest,) = conn.execute("SELECT min(expires) FROM turns").fetchone()
    assert 160 <= count <= 170
    assert oldest == NOW + 400 - count + 1800


async def test_sqlite_forgets_expired_turns_when_it_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    await store.remember_turn(TURN, MINI, NOW, 60)
    await store.remember_turn(OTHER, MINI, NOW + 61, 60)
    await store.close()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        assert conn.execute("SELECT turn FROM turns").fetchall() == [(OTHER,)]


# --- SQLite specifics -------------------------------------------------------------------------

_STRIKER = textwrap.dedent(
    """
    import asyncio, sys
    from stellwerk.failures import FailureClass
    from stellwerk.state import SQLiteStore

    async def main(path, key, count):
        store = SQLiteStore(path)
        for _ in range(count):
            await store.strike(key, FailureClass.RATE_LIMIT, 1000.0, lambda s: 1e6)
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_sqlite_strikes_from_several_processes_all_count(tmp_path: Path) -> None:
    path, per_worker = tmp_path / "state.db", 100
    store = SQLiteStore(path)
    cmd = [sys.executable, "-c", _STRIKER, str(path), KEY, str(per_worker)]
    workers = [subprocess.Popen(cmd) for _ in range(2)]
    mine = 0
    while mine < 20 or any(w.poll() is None for w in workers):  # strike while they strike
        await store.strike(KEY, RATE, 1000.0, fixed(1e6))
        mine += 1
    assert [w.wait(timeout=60) for w in workers] == [0, 0]
    assert (await store.snapshot(1000.0)).cooldowns[KEY].strikes == 2 * per_worker + mine
    await store.close()


async def test_sqlite_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    store = SQLiteStore(path)
    await store.strike(KEY, RATE, NOW, fixed(5))
    await store.close()
    assert path.is_file()


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(ConfigError, match="newer Stellwerk"):
        SQLiteStore(path)


async def test_sqlite_ignores_rows_of_unknown_failure_classes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    await store.strike(KEY, RATE, NOW, fixed(60))
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute(
            "INSERT INTO cooldowns VALUES ('cred:x#1', ?, 'solar_flare', 1, ?, '')", (NOW + 60, NOW)
        )
    conn.close()
    assert set((await store.snapshot(NOW)).cooldowns) == {KEY}
    await store.close()


# --- choosing a backend -----------------------------------------------------------------------


async def test_open_store_memory() -> None:
    assert isinstance(open_store(StatePolicy(backend="memory")), MemoryStore)


async def test_open_store_sqlite_at_configured_path(tmp_path: Path) -> None:
    store = open_store(StatePolicy(backend="sqlite", path=str(tmp_path / "s.db")))
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "s.db"
    await store.close()


async def test_open_store_rejects_unknown_backend() -> None:
    with pytest.raises(ConfigError, match="state.backend"):
        open_store(StatePolicy(backend="etcd"))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STELLWERK_STATE_DIR": "/srv/sw", "XDG_STATE_HOME": "/x"}, "/srv/sw/state.db"),
        ({"XDG_STATE_HOME": "/x"}, "/x/stellwerk/state.db"),
        ({}, "~/.local/state/stellwerk/state.db"),
    ],
)
def test_default_state_path(env: dict[str, str], expected: str) -> None:
    assert default_state_path(env) == Path(expected).expanduser()


async def test_open_store_default_path_follows_state_dir_env(tmp_path: Path) -> None:
    store = open_store(StatePolicy(), env={"STELLWERK_STATE_DIR": str(tmp_path / "sw")})
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "sw" / "state.db"
    await store.close()


# --- budgets: reserve, settle, release, warn flags ----------------------------------------------

DAILY, WEEKLY = "daily:2023-11-14|all", "weekly:2023-W46|provider:anthropic"
WINDOWS = {DAILY: NOW + 3600, WEEKLY: NOW + 86_400}  # counter key -> end of its window
TTL = 600.0


async def test_reserve_counts_the_estimate_on_every_key_as_in_flight(store: StateStore) -> None:
    await store.reserve(WINDOWS, 1000, 5000, NOW, TTL)
    budgets = (await store.snapshot(NOW)).budgets
    assert budgets[DAILY] == budgets[WEEKLY] == BudgetUse(1000, 5000, 1000, 5000)


async def test_settle_replaces_the_estimate_with_the_actual(store: StateStore) -> None:
    first = await store.reserve(WINDOWS, 1000, 5000, NOW, TTL)
    await store.reserve({DAILY: NOW + 3600}, 200, 10, NOW, TTL)
    assert await store.settle(first, 120, 700, NOW + 1)
    budgets = (await store.snapshot(NOW + 1)).budgets
    assert budgets[DAILY] == BudgetUse(320, 710, 200, 10)
    assert budgets[WEEKLY] == BudgetUse(120, 700)
    assert budgets[DAILY].settled == BudgetUse(120, 700)


async def test_settle_counts_once(store: StateStore) -> None:
    rid = await store.reserve(WINDOWS, 1000, 5000, NOW, TTL)
    assert await store.settle(rid, 120, 700, NOW)
    assert not await store.settle(rid, 120, 700, NOW)
    assert not await store.release(rid)
    assert (await store.snapshot(NOW)).budgets[DAILY] == BudgetUse(120, 700)


async def test_settle_or_release_of_an_unknown_reservation_does_nothing(store: StateStore) -> None:
    assert not await store.settle("res_unknown", 50, 50, NOW)
    assert not await store.release("res_unknown")
    assert (await store.snapshot(NOW)).budgets == {}


async def test_release_drops_the_estimate(store: StateStore) -> None:
    rid = await store.reserve(WINDOWS, 1000, 5000, NOW, TTL)
    assert await store.release(rid)
    assert not await store.settle(rid, 120, 700, NOW)
    assert (await store.snapshot(NOW)).budgets == {}


async def test_an_unsettled_reservation_lapses_after_its_ttl(store: StateStore) -> None:
    rid = await store.reserve(WINDOWS, 1000, 5000, NOW, TTL)
    assert (await store.snapshot(NOW + TTL - 1)).budgets[DAILY].reserved_tokens == 1000
    assert (await store.snapshot(NOW + TTL)).budgets == {}
    assert not await store.settle(rid, 120, 700, NOW + TTL), "too late: it no longer counts"
    await store.reserve({DAILY: NOW + 3600}, 1, 1, NOW + TTL + 1, TTL)  # a write cleans up
    assert (await store.snapshot(NOW + TTL + 1)).budgets[DAILY] == BudgetUse(1, 1, 1, 1)


async def test_counters_end_with_their_window(store: StateStore) -> None:
    rid = await store.reserve(WINDOWS, 10, 10, NOW, TTL)
    await store.settle(rid, 10, 10, NOW)
    assert set((await store.snapshot(NOW + 3599)).budgets) == {DAILY, WEEKLY}
    assert set((await store.snapshot(NOW + 3600)).budgets) == {WEEKLY}
    tomorrow = {"daily:2023-11-15|all": NOW + 3600 + 86_400}
    await store.reserve(tomorrow, 1, 1, NOW + 3600, TTL)
    assert set((await store.snapshot(NOW + 3600)).budgets) == {WEEKLY, *tomorrow}


async def test_a_reservation_stops_counting_on_a_window_that_ends_but_still_settles(
    store: StateStore,
) -> None:
    rid = await store.reserve(WINDOWS, 100, 50, NOW, 7200)  # outlives the daily window
    assert set((await store.snapshot(NOW + 3599)).budgets) == {DAILY, WEEKLY}
    assert (await store.snapshot(NOW + 3600)).budgets == {WEEKLY: BudgetUse(100, 50, 100, 50)}
    assert await store.settle(rid, 30, 20, NOW + 3601)
    assert (await store.snapshot(NOW + 3601)).budgets == {WEEKLY: BudgetUse(30, 20)}


async def test_reservations_lapse_one_by_one_at_their_own_ttl(store: StateStore) -> None:
    for ttl in (10, 20, 30):
        await store.reserve(WINDOWS, ttl, 1, NOW, ttl)
    for at, left in [(NOW + 9.9, 60), (NOW + 10, 50), (NOW + 19.9, 50), (NOW + 20, 30)]:
        assert (await store.snapshot(at)).budgets[DAILY].reserved_tokens == left, at
    assert (await store.snapshot(NOW + 30)).budgets == {}


async def test_concurrent_reserves_and_settles_add_up_exactly(store: StateStore) -> None:
    async def attempt(i: int) -> None:
        rid = await store.reserve(WINDOWS, 1000, 1000, NOW, TTL)
        await asyncio.sleep(0)
        if i % 5 == 0:
            await store.release(rid)  # a failed attempt
        else:
            await store.settle(rid, i, 2 * i, NOW)

    await asyncio.gather(*(attempt(i) for i in range(60)))
    settled = sum(i for i in range(60) if i % 5)
    budgets = (await store.snapshot(NOW)).budgets
    assert budgets[DAILY] == budgets[WEEKLY] == BudgetUse(settled, 2 * settled)


async def test_mark_warned_is_true_once_per_key_and_threshold(store: StateStore) -> None:
    end = NOW + 3600
    assert await store.mark_warned(DAILY, "warn", NOW, end)
    assert not await store.mark_warned(DAILY, "warn", NOW + 1, end)
    assert await store.mark_warned(DAILY, "downgrade", NOW + 2, end)
    assert await store.mark_warned(WEEKLY, "warn", NOW + 3, NOW + 86_400)
    assert await store.mark_warned(DAILY, "warn", end, end + 86_400), "the flag ended with it"


async def test_budgets_and_flags_outlive_the_store(make_store: MakeStore, durable: str) -> None:
    first = make_store()
    rid = await first.reserve(WINDOWS, 1000, 5000, NOW, TTL)
    done = await first.reserve(WINDOWS, 1000, 5000, NOW, TTL)
    await first.settle(done, 100, 200, NOW)
    assert await first.mark_warned(DAILY, "warn", NOW, NOW + 3600)
    await first.close()
    second = make_store()  # a restart, or another process
    assert (await second.snapshot(NOW)).budgets[DAILY] == BudgetUse(1100, 5200, 1000, 5000)
    assert await second.settle(rid, 30, 40, NOW)
    assert (await second.snapshot(NOW)).budgets[DAILY] == BudgetUse(130, 240)
    assert not await second.mark_warned(DAILY, "warn", NOW, NOW + 3600)


async def test_sqlite_sees_another_stores_settle(tmp_path: Path) -> None:
    one, two = SQLiteStore(tmp_path / "state.db"), SQLiteStore(tmp_path / "state.db")
    assert (await two.snapshot(NOW)).budgets == {}
    rid = await one.reserve(WINDOWS, 10, 10, NOW, TTL)
    await one.settle(rid, 7, 3, NOW)
    assert (await two.snapshot(NOW)).budgets[DAILY] == BudgetUse(7, 3)
    assert await one.mark_warned(DAILY, "warn", NOW, NOW + 3600)
    assert not await two.mark_warned(DAILY, "warn", NOW, NOW + 3600)
    await one.close()
    await two.close()


_SPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from stellwerk.state import SQLiteStore

    async def main(path, count):
        store = SQLiteStore(path)
        keys = {"daily:2023-11-14|all": 1e12}
        for i in range(count):
            rid = await store.reserve(keys, 500, 500, 1000.0, 600.0)
            await store.settle(rid, 3, 5, 1000.0)
        await store.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_sqlite_settles_from_several_processes_all_count(tmp_path: Path) -> None:
    path, per_worker = tmp_path / "state.db", 100
    store = SQLiteStore(path)
    workers = [
        subprocess.Popen([sys.executable, "-c", _SPENDER, str(path), str(per_worker)])
        for _ in range(2)
    ]
    keys, mine = {"daily:2023-11-14|all": 1e12}, 0
    while mine < 20 or any(w.poll() is None for w in workers):
        rid = await store.reserve(keys, 500, 500, 1000.0, 600.0)
        await store.settle(rid, 3, 5, 1000.0)
        mine += 1
    assert [w.wait(timeout=60) for w in workers] == [0, 0]
    total = 2 * per_worker + mine
    assert (await store.snapshot(1000.0)).budgets["daily:2023-11-14|all"] == BudgetUse(
        3 * total, 5 * total
    )
    await store.close()
