"""What the Redis store promises beyond the shared contract: one round trip per snapshot, keys
that expire on their own, atomic writes from several processes, and failing open when Redis is
unreachable, with the counts made meanwhile written back exactly once when it returns.

Runs against real redis-servers (tests/conftest.py). Outage tests start a server of their own and
stop it; the store retries at once (`retry_every=0`), so no test waits for a reconnect timer.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from stellwerk.config import policy_from_dict
from stellwerk.errors import ConfigError
from stellwerk.failures import FailureClass
from stellwerk.policy import masked_url
from stellwerk.state import FOREVER, credential_key, open_store
from stellwerk.state.base import BudgetUse
from stellwerk.state.cooldown import STRIKE_MEMORY
from stellwerk.state.redis import RedisStore
from stellwerk.testing.servers import RedisServer

NOW = 1_700_000_000.0
KEY = credential_key("anthropic#1")
RATE, BILLING = FailureClass.RATE_LIMIT, FailureClass.BILLING
DAILY = "daily:2023-11-14|all"
WINDOWS = {DAILY: NOW + 3600}


def fixed(seconds: float) -> Callable[[int], float]:
    return lambda strikes: seconds


@pytest.fixture
async def stores(redis_server: RedisServer, redis_prefix: str) -> AsyncIterator[Any]:
    opened: list[RedisStore] = []

    def make(url: str = redis_server.url, **kwargs: Any) -> RedisStore:
        store = RedisStore(url, prefix=redis_prefix, **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def back(store: RedisStore, now: float = NOW) -> None:
    """Keep asking until the store reads Redis again (its reconnect runs in the background)."""
    for _ in range(500):
        if not (await store.snapshot(now)).degraded:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still degraded: {store.degraded}")


# -- one round trip, keys that expire ------------------------------------------------------------


async def test_a_snapshot_is_one_round_trip(stores: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store = stores()
    await store.strike(KEY, RATE, NOW, fixed(60))
    rid = await store.reserve(WINDOWS, 10, 10, NOW, 600)
    await store.settle(rid, 5, 5, NOW)
    await store.reserve(WINDOWS, 10, 10, NOW, 600)
    await store.set_emergency(True, NOW, "test")
    await store.snapshot(NOW)  # the script is loaded now
    sent: list[object] = []
    real = store._client.execute_command

    async def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return await real(*args, **kwargs)

    monkeypatch.setattr(store._client, "execute_command", counting)
    snap = await store.snapshot(NOW)
    assert sent == ["EVALSHA"]
    assert snap.blocked(KEY) and snap.emergency
    assert snap.budgets[DAILY] == BudgetUse(15, 15, 10, 10)


async def test_an_unchanged_state_is_not_sent_again_but_a_lost_one_is_noticed(
    stores: Any, raw: Redis, redis_prefix: str
) -> None:
    store = stores()
    await store.strike(KEY, RATE, NOW, fixed(60))
    first = await store.snapshot(NOW)
    assert await store._remote._snapshot(args=[redis_prefix, repr(NOW), "nope"]) != "="
    again = await store.snapshot(NOW + 61)
    assert first.blocked(KEY) is not None and again.blocked(KEY) is None, "time still counts"
    for key in await raw.keys(f"{redis_prefix}*"):  # Redis restarted without its data
        await raw.delete(key)
    assert dict((await store.snapshot(NOW)).cooldowns) == {}


async def test_cooldowns_expire_after_the_strike_memory_and_forever_never(
    stores: Any, raw: Redis, redis_prefix: str
) -> None:
    store = stores()
    await store.strike(KEY, RATE, NOW, fixed(60))
    await store.strike("cred:openai#1", FailureClass.AUTH, NOW, fixed(FOREVER))
    ttl = await raw.pttl(f"{redis_prefix}cd:{KEY}")
    assert (60 + STRIKE_MEMORY - 1) * 1000 < ttl <= (60 + STRIKE_MEMORY) * 1000
    assert await raw.pttl(f"{redis_prefix}cd:cred:openai#1") == -1


async def test_budget_counters_reservations_and_flags_expire_on_their_own(
    stores: Any, raw: Redis, redis_prefix: str
) -> None:
    store = stores()
    held = await store.reserve(WINDOWS, 10, 10, NOW, 600)
    assert 599_000 < await raw.pttl(f"{redis_prefix}hold:{held}") <= 600_000
    await store.settle(held, 5, 5, NOW)
    assert 3_599_000 < await raw.pttl(f"{redis_prefix}budget:{DAILY}") <= 3_600_000
    await store.mark_warned(DAILY, "warn", NOW, NOW + 120)
    assert 119_000 < await raw.pttl(f"{redis_prefix}warned:{DAILY}|warn") <= 120_000


async def test_expired_keys_leave_the_snapshot_and_the_indexes(
    stores: Any, raw: Redis, redis_prefix: str
) -> None:
    store = stores()
    await store.strike(KEY, RATE, NOW, fixed(60))
    rid = await store.reserve(WINDOWS, 10, 10, NOW, 600)
    await store.settle(rid, 5, 5, NOW)
    await raw.delete(f"{redis_prefix}cd:{KEY}", f"{redis_prefix}budget:{DAILY}")  # as a TTL would
    snap = await store.snapshot(NOW)
    assert (dict(snap.cooldowns), dict(snap.budgets)) == ({}, {})
    assert await raw.smembers(f"{redis_prefix}cooldowns") == set()
    assert await raw.smembers(f"{redis_prefix}budgets") == set()


async def test_prefixes_keep_two_deployments_apart(stores: Any, redis_server: RedisServer) -> None:
    mine, theirs = stores(), RedisStore(redis_server.url, prefix="someone-else:")
    try:
        await theirs.strike(KEY, BILLING, NOW, fixed(7200))
        assert dict((await mine.snapshot(NOW)).cooldowns) == {}
        assert await mine.reset() == 0
        assert (await theirs.snapshot(NOW)).blocked(KEY)
    finally:
        await theirs.reset()
        await theirs.close()


async def test_cache_reuses_the_last_read_but_sees_its_own_writes(stores: Any) -> None:
    cached, other = stores(cache=3600.0), stores()
    await cached.snapshot(NOW)
    await other.strike(KEY, RATE, NOW, fixed(60))
    assert (await cached.snapshot(NOW)).blocked(KEY) is None, "within the cache time"
    await cached.strike("cred:x#1", RATE, NOW, fixed(60))
    assert set((await cached.snapshot(NOW)).cooldowns) == {KEY, "cred:x#1"}


# -- several processes -------------------------------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from stellwerk.failures import FailureClass
    from stellwerk.state.redis import RedisStore

    async def main(url, prefix, count):
        store = RedisStore(url, prefix=prefix)
        keys = {"daily:2023-11-14|all": 1e12}
        for _ in range(count):
            await store.strike("cred:a#1", FailureClass.RATE_LIMIT, 1000.0, lambda s: 1e6)
            rid = await store.reserve(keys, 500, 500, 1000.0, 600.0)
            await store.settle(rid, 3, 5, 1000.0)
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_strikes_and_settles_from_several_processes_all_count(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    per_worker, keys = 50, {"daily:2023-11-14|all": 1e12}
    store = RedisStore(redis_server.url, prefix=redis_prefix)
    cmd = [sys.executable, "-c", _WORKER, redis_server.url, redis_prefix, str(per_worker)]
    workers = [subprocess.Popen(cmd) for _ in range(2)]
    mine = 0
    while mine < 20 or any(w.poll() is None for w in workers):
        await store.strike("cred:a#1", RATE, 1000.0, fixed(1e6))
        rid = await store.reserve(keys, 500, 500, 1000.0, 600.0)
        await store.settle(rid, 3, 5, 1000.0)
        mine += 1
    assert [w.wait(timeout=60) for w in workers] == [0, 0]
    total = 2 * per_worker + mine
    snap = await store.snapshot(1000.0)
    assert snap.cooldowns["cred:a#1"].strikes == total
    assert snap.budgets["daily:2023-11-14|all"] == BudgetUse(3 * total, 5 * total)
    await store.close()


# -- Redis unreachable: fail open, count locally, write back once ---------------------------------


async def test_an_outage_serves_the_last_known_state_and_writes_back_what_happened(
    new_redis: Callable[..., RedisServer], redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = new_redis()
    one = RedisStore(server.url, prefix=redis_prefix, retry_every=0)
    two = RedisStore(server.url, prefix=redis_prefix, retry_every=0)
    await one.strike(KEY, BILLING, NOW, fixed(7200), "credit balance is too low")
    before = await one.reserve(WINDOWS, 100, 100, NOW, 600)
    await one.snapshot(NOW)
    server.stop()

    snap = await one.snapshot(NOW + 1)
    assert "unreachable" in snap.degraded and "routing on the last known state" in snap.degraded
    assert snap.blocked(KEY) is not None, "the last known cooldown still holds"
    assert await one.settle(before, 40, 40, NOW + 1), "a reservation made before the outage"
    during = await one.reserve(WINDOWS, 100, 100, NOW + 2, 600)
    assert (await one.snapshot(NOW + 2)).budgets[DAILY] == BudgetUse(140, 140, 100, 100)
    assert await one.settle(during, 60, 60, NOW + 3)
    await one.strike("cred:openai#1", RATE, NOW + 3, fixed(30))
    assert await one.count_recent("rate_limit", NOW + 3, 300) == 1
    assert await one.set_emergency(True, NOW + 3, "rate limits")
    assert await one.mark_warned(DAILY, "warn", NOW + 3, NOW + 3600)
    snap = await one.snapshot(NOW + 4)
    assert snap.emergency and snap.blocked("cred:openai#1") is not None
    assert snap.budgets[DAILY] == BudgetUse(100, 100)
    assert any("unreachable" in r.message for r in caplog.records if r.levelname == "ERROR")

    server.start()
    await back(one, NOW + 5)
    snap = await two.snapshot(NOW + 5)  # another replica sees what `one` did meanwhile
    assert snap.budgets[DAILY] == BudgetUse(100, 100)
    assert snap.emergency and snap.emergency_reason == "rate limits"
    assert set(snap.cooldowns) == {KEY, "cred:openai#1"}
    assert await two.count_recent("rate_limit", NOW + 5, 300) == 2
    assert not await two.mark_warned(DAILY, "warn", NOW + 5, NOW + 3600)
    assert any("answers again" in r.message for r in caplog.records)
    await one.close()
    await two.close()


async def test_turns_remembered_during_an_outage_are_known_meanwhile_and_written_back(
    new_redis: Callable[..., RedisServer], redis_prefix: str
) -> None:
    server = new_redis()
    one = RedisStore(server.url, prefix=redis_prefix, retry_every=0)
    two = RedisStore(server.url, prefix=redis_prefix, retry_every=0)
    await one.remember_turn("before", "openai/gpt-4o-mini", NOW, 1800)
    server.stop()
    assert await one.turn_target("before", NOW + 1) is None, "planned afresh while away"
    await one.remember_turn("during", "anthropic/claude-haiku-4-5", NOW + 1, 1800)
    assert await one.turn_target("during", NOW + 2) == "anthropic/claude-haiku-4-5"
    server.start()
    await back(one, NOW + 3)
    assert await two.turn_target("during", NOW + 3) == "anthropic/claude-haiku-4-5"
    await one.close()
    await two.close()


async def test_a_turn_is_one_key_that_expires_with_its_ttl(stores: Any, raw: Redis) -> None:
    store = stores()
    await store.remember_turn("t1", "openai/gpt-4o-mini", NOW, 1800)
    name = f"{store.prefix}turn:t1"
    assert 1_799_000 < await raw.pttl(name) <= 1_800_000
    version = await raw.get(f"{store.prefix}version")
    await store.remember_turn("t1", "openai/gpt-4o-mini", NOW + 1, 1800)
    assert await raw.get(f"{store.prefix}version") == version, "snapshots do not read turns"


async def test_counts_of_two_replicas_during_an_outage_add_up(
    new_redis: Callable[..., RedisServer], redis_prefix: str
) -> None:
    server = new_redis()
    replicas = [RedisStore(server.url, prefix=redis_prefix, retry_every=0) for _ in range(2)]
    for store in replicas:
        rid = await store.reserve(WINDOWS, 10, 10, NOW, 600)
        await store.settle(rid, 1, 1, NOW)
    server.stop()
    for i, store in enumerate(replicas):
        for _ in range(5 + i):
            rid = await store.reserve(WINDOWS, 10, 10, NOW, 600)
            await store.settle(rid, 1, 1, NOW)
            await store.strike(KEY, RATE, NOW, fixed(60))
    server.start()
    for store in replicas:
        await back(store)
    snap = await replicas[0].snapshot(NOW)
    assert snap.budgets[DAILY] == BudgetUse(2 + 5 + 6, 2 + 5 + 6)
    assert snap.cooldowns[KEY].strikes == 5 + 6
    for store in replicas:
        await store.close()


async def test_a_reservation_made_during_the_outage_settles_after_it(
    new_redis: Callable[..., RedisServer], redis_prefix: str
) -> None:
    server = new_redis()
    store = RedisStore(server.url, prefix=redis_prefix, retry_every=0)
    await store.snapshot(NOW)
    server.stop()
    settled = await store.reserve(WINDOWS, 10, 10, NOW, 600)
    released = await store.reserve(WINDOWS, 10, 10, NOW, 600)
    server.start()
    await back(store)
    assert await store.settle(settled, 7, 7, NOW)
    assert await store.release(released)
    assert not await store.settle(settled, 7, 7, NOW), "once"
    assert (await store.snapshot(NOW)).budgets[DAILY] == BudgetUse(7, 7)
    await store.close()


async def test_a_replayed_settle_counts_once(stores: Any) -> None:
    store = stores()
    rid = await store.reserve(WINDOWS, 10, 10, NOW, 600)
    for _ in range(3):  # the answer to the first replay was lost, so it is replayed again
        await store._remote.settle(rid, 4, 4, NOW, "sure", WINDOWS)
    local = "res_made_during_an_outage"
    for _ in range(3):
        await store._remote.settle(local, 2, 2, NOW, "sure", WINDOWS)
    assert (await store.snapshot(NOW)).budgets[DAILY] == BudgetUse(6, 6)


async def test_a_redis_that_hangs_counts_as_unreachable_after_the_timeout(
    new_redis: Callable[..., RedisServer], redis_prefix: str
) -> None:
    server = new_redis()
    store = RedisStore(server.url, prefix=redis_prefix, retry_every=0, timeout=0.1)
    await store.strike(KEY, BILLING, NOW, fixed(7200))
    await store.snapshot(NOW)
    server.pause()
    try:
        snap = await store.snapshot(NOW)
        assert "TimeoutError" in snap.degraded and snap.blocked(KEY) is not None
        await store.recover(KEY)
    finally:
        server.resume()
    await back(store)
    assert (await store.snapshot(NOW)).blocked(KEY) is None, "the recovery was written back"
    await store.close()


async def test_a_store_that_starts_without_redis_serves_and_catches_up(
    new_redis: Callable[..., RedisServer], redis_prefix: str
) -> None:
    server = new_redis()
    server.stop()
    store = RedisStore(server.url, prefix=redis_prefix, retry_every=0, timeout=0.2)
    snap = await store.snapshot(NOW)
    assert snap.degraded and dict(snap.cooldowns) == {}
    await store.strike(KEY, BILLING, NOW, fixed(7200))
    server.start()
    await back(store)
    assert (await store.snapshot(NOW)).blocked(KEY) is not None
    await store.close()


async def test_close_writes_back_what_an_outage_left(
    new_redis: Callable[..., RedisServer], redis_prefix: str
) -> None:
    server = new_redis()
    store = RedisStore(server.url, prefix=redis_prefix, retry_every=3600)
    await store.snapshot(NOW)
    server.stop()
    await store.strike(KEY, BILLING, NOW, fixed(7200))
    server.start()
    await store.close()  # the reconnect timer has not run: closing writes back
    again = RedisStore(server.url, prefix=redis_prefix)
    assert (await again.snapshot(NOW)).blocked(KEY) is not None
    await again.close()


# -- configuration ---------------------------------------------------------------------------


async def test_open_store_follows_the_state_config(redis_server: RedisServer) -> None:
    raw = {"state": {"backend": "redis", "prefix": "team-a:", "cache": "250ms"}}
    policy = policy_from_dict(raw, env={"STELLWERK_REDIS_URL": redis_server.url})
    store = open_store(policy.state)
    assert isinstance(store, RedisStore)
    assert (store.url, store.prefix, store.cache) == (redis_server.url, "team-a:", 0.25)
    await store.close()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"backend": "redis"}, "state.url: backend redis needs a URL"),
        ({"backend": "redis", "url": "http://cache:6379"}, "state.url: expected a redis://"),
        ({"cache": "soon"}, "state.cache"),
        ({"backend": "etcd"}, "state.backend"),
    ],
)
def test_state_config_errors_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        policy_from_dict({"state": raw}, env={})


def test_urls_in_logs_and_status_hide_the_password() -> None:
    assert masked_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert masked_url("redis://app:s3:cr@t@cache/1") == "redis://app:***@cache/1"
    assert masked_url("postgresql://app:pw@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert masked_url("redis://cache:6379/0") == "redis://cache:6379/0"
    assert masked_url("postgresql://app@db/x") == "postgresql://app@db/x"


async def test_an_outage_message_never_shows_the_password(
    new_redis: Callable[..., RedisServer], redis_prefix: str
) -> None:
    server = new_redis()
    server.stop()
    url = f"redis://:s3cret@127.0.0.1:{server.port}/0"
    store = RedisStore(url, prefix=redis_prefix, timeout=0.2)
    degraded = (await store.snapshot(NOW)).degraded
    assert "s3cret" not in degraded and ":***@127.0.0.1" in degraded
    await store.close()


# -- what the gateway and `stellwerk status` say ---------------------------------------------------


async def test_the_gateway_keeps_answering_and_says_degraded_while_redis_is_away(
    new_redis: Callable[..., RedisServer], redis_prefix: str
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from stellwerk.router import Router
    from stellwerk.server import create_app
    from stellwerk.testing._server import Reply
    from stellwerk.testing.world import FakeWorld

    server = new_redis()
    async with FakeWorld(default=Reply.ok("fine")) as world:
        store = RedisStore(server.url, prefix=redis_prefix, retry_every=0)
        router = Router(world.policy(), store)
        async with TestClient(TestServer(create_app(router))) as client:
            assert (await (await client.get("/readyz")).json())["status"] == "ready"
            server.stop()
            body = {"model": "auto:simple", "messages": [{"role": "user", "content": "hi"}]}
            assert (await client.post("/v1/chat/completions", json=body)).status == 200
            ready = await client.get("/readyz")
            assert ready.status == 200, "a 503 would take every replica out at once"
            data = await ready.json()
            assert data["status"] == "degraded" and "unreachable" in data["reason"]
            status = await (await client.get("/api/status")).json()
            assert "routing on the last known state" in status["degraded"]
            server.start()
            for _ in range(500):
                if (await (await client.get("/readyz")).json())["status"] == "ready":
                    break
                await asyncio.sleep(0.01)
            assert (await (await client.get("/api/status")).json())["degraded"] is None
        await router.aclose()


def test_status_puts_a_degraded_store_first() -> None:
    from stellwerk.state.base import Snapshot
    from stellwerk.status import render_status, status_data

    policy = policy_from_dict({}, env={})
    text = render_status(status_data(policy, Snapshot(NOW, degraded="Redis at x unreachable")))
    assert text.splitlines()[0] == "WARNING   state store degraded: Redis at x unreachable"
