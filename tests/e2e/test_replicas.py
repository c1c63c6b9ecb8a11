"""Three `stellwerk serve` replicas sharing Redis (state) and PostgreSQL (ledger), as a team runs
them behind a load balancer.

Every fake upstream reports 60 + 40 tokens, so each answered request adds exactly 100 tokens to
the daily budget of 10,000 (warn at 8,000, downgrade at 9,000). The test drives the replicas the
way a load balancer would and checks what a user would notice:

1. concurrent load through all three: every request answered, each counted once;
2. a billing failure seen by one replica cools the credential down for all: the next request on
   each other replica skips it without calling it;
3. requests sent one at a time, round robin: the budget thresholds are announced exactly at the
   request that reaches them, once, whichever replica serves it;
4. Redis stops in the middle of concurrent load and starts again: no request fails, `/readyz`
   says `degraded` meanwhile, and afterwards the shared counters hold exactly what was used;
5. the shared ledger holds exactly one record per request, with the same token total.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import yaml

import stellwerk
from stellwerk.state.base import BudgetUse
from stellwerk.state.redis import RedisStore
from stellwerk.testing._server import Reply
from stellwerk.testing.servers import RedisServer
from stellwerk.testing.world import FakeWorld

SOURCE = str(Path(stellwerk.__file__).resolve().parents[1])
MINI, HAIKU, QWEN = "openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "ollama/qwen3-4b"
BODY = {"model": "auto:simple", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}
PER_REQUEST = 100


@dataclass
class Replica:
    proc: asyncio.subprocess.Process
    url: str
    log: Path

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 30)


async def start_replica(world: FakeWorld, config: Path, directory: Path) -> Replica:
    directory.mkdir(parents=True)
    ready, log = directory / "ready", directory / "gateway.log"
    env = {**os.environ, **world.env(), "STELLWERK_STATE_DIR": str(directory)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE, env.get("PYTHONPATH")]))
    for name in ("STELLWERK_CONFIG", "STELLWERK_API_KEYS", "STELLWERK_REDIS_URL"):
        env.pop(name, None)
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stellwerk", "serve", "--port", "0", "--config", str(config),
            "--ready-file", str(ready), "--pid-file", str(directory / "gateway.pid"),
            env=env, stdout=out, stderr=out, cwd=directory,
        )  # fmt: skip
    for _ in range(3000):
        if ready.exists():
            return Replica(proc, ready.read_text().strip(), log)
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.01)
    raise AssertionError(f"replica did not start:\n{log.read_text()}")


@dataclass(frozen=True)
class Answer:
    status: int
    model: str | None
    budget: str | None
    request_id: str


class Cluster:
    """Three replicas and an HTTP client; remembers every answer."""

    def __init__(self, replicas: list[Replica], session: aiohttp.ClientSession) -> None:
        self.replicas = replicas
        self.session = session
        self.answers: list[Answer] = []

    async def ask(self, i: int) -> Answer:
        url = self.replicas[i % len(self.replicas)].url + "/v1/chat/completions"
        async with self.session.post(url, json=BODY) as r:
            await r.read()
            h = r.headers
            answer = Answer(
                r.status,
                h.get("x-stellwerk-model"),
                h.get("x-stellwerk-budget"),
                h["x-stellwerk-request-id"],
            )
        self.answers.append(answer)
        return answer

    async def load(self, count: int, concurrency: int = 12) -> list[Answer]:
        """`count` requests spread over every replica, `concurrency` at a time."""
        numbers = iter(range(count))
        found: list[Answer] = []

        async def worker() -> None:
            for i in numbers:
                found.append(await self.ask(i))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return found

    async def ready(self, i: int) -> dict[str, Any]:
        async with self.session.get(self.replicas[i].url + "/readyz") as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())


@pytest.fixture
async def world() -> AsyncIterator[FakeWorld]:
    async with FakeWorld(default=Reply.ok("fine", usage=(60, 40))) as w:
        yield w


@pytest.fixture
async def cluster(
    world: FakeWorld,
    tmp_path: Path,
    new_redis: Callable[..., RedisServer],
    postgres_url: str,
) -> AsyncIterator[tuple[Cluster, RedisServer, str]]:
    redis = new_redis(persistent=True)  # a restart keeps the data, as a production Redis does
    config = tmp_path / "stellwerk.yaml"
    raw = {
        "stack": [MINI, HAIKU, QWEN],
        "tasks": {"simple": {"primary": MINI, "fallbacks": [HAIKU]}},
        "budgets": {"limits": [{"window": "daily", "tokens": 10_000}]},
        "state": {"backend": "redis", "url": redis.url, "prefix": "replicas:"},
        "ledger": {"backend": "postgres", "url": postgres_url},
    }
    config.write_text(yaml.safe_dump(raw))
    replicas = await asyncio.gather(
        *(start_replica(world, config, tmp_path / f"replica{i}") for i in range(3))
    )
    async with aiohttp.ClientSession() as session:
        yield Cluster(list(replicas), session), redis, postgres_url
    codes = await asyncio.gather(*(r.stop() for r in replicas))
    assert codes == [0, 0, 0], "\n".join(r.log.read_text()[-3000:] for r in replicas)


async def answered(gateways: Cluster, count: int) -> None:
    for _ in range(3000):
        if len(gateways.answers) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"only {len(gateways.answers)} of {count} requests answered")


async def daily_use(redis: RedisServer) -> BudgetUse:
    store = RedisStore(redis.url, prefix="replicas:")
    try:
        snapshot = await store.snapshot(time.time())
    finally:
        await store.close()
    [use] = [u for key, u in snapshot.budgets.items() if key.startswith("daily:")]
    return use


async def test_replicas_share_cooldowns_budgets_and_the_ledger_through_a_redis_outage(
    cluster: tuple[Cluster, RedisServer, str], world: FakeWorld
) -> None:
    gateways, redis, ledger_url = cluster
    openai = world.fakes["openai"]

    # 1. concurrent load through all three replicas
    answers = await gateways.load(60)
    assert {(a.status, a.model) for a in answers} == {(200, MINI)}
    assert [a.budget for a in answers] == [None] * 60
    assert (await daily_use(redis)).settled == BudgetUse(6_000, (await daily_use(redis)).micros)

    # 2. a billing failure on replica 0 cools the credential down for replicas 1 and 2
    openai.push(Reply.error(402, {"error": {"message": "insufficient credit"}}))
    assert (await gateways.ask(0)).model == HAIKU
    called = len(openai.received)
    assert [(await gateways.ask(i)).model for i in (1, 2)] == [HAIKU, HAIKU]
    assert len(openai.received) == called, "the other replicas did not call the cooled credential"

    # 3. one at a time, round robin: each threshold is announced at exactly its request
    budgets = {}
    for n in range(64, 91):  # request n brings the day to n * 100 tokens
        answer = await gateways.ask(n)
        assert (answer.status, answer.model) == (200, HAIKU)
        if answer.budget:
            budgets[n] = answer.budget
    assert budgets == {80: "warn 80% daily", 90: "downgrade 90% daily"}
    assert await daily_use(redis) == BudgetUse(9_000, (await daily_use(redis)).micros)

    # 4. Redis stops in the middle of concurrent load, and starts again; the day's budget runs
    #    out meanwhile (12,600 of 10,000 tokens), so later requests go to the local model
    during = asyncio.create_task(gateways.load(36, concurrency=6))
    await answered(gateways, 90 + 6)
    redis.stop()
    await answered(gateways, 90 + 18)  # at least 12 answered while Redis is away
    assert (await gateways.ready(0))["status"] == "degraded"
    redis.start()
    answers = await during
    assert {a.status for a in answers} == {200}, "no request failed"
    assert {a.model for a in answers} <= {HAIKU, QWEN}
    for i in range(3):  # every replica reconnects and writes back what it counted meanwhile
        for _ in range(500):
            if (await gateways.ready(i))["status"] == "ready":
                break
            await asyncio.sleep(0.01)
        assert (await gateways.ready(i))["status"] == "ready"
    sent = len(gateways.answers)
    assert sent == 126
    use = await daily_use(redis)
    assert (use.tokens, use.reserved_tokens) == (sent * PER_REQUEST, 0), "every request once"

    # 5. the shared ledger: one record per request, the same total
    for replica in gateways.replicas:  # a clean stop writes what is still buffered
        assert await replica.stop() == 0
    with psycopg.connect(ledger_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT request_id FROM decisions")]
        tokens = conn.execute("SELECT sum(input_tokens + output_tokens) FROM decisions").fetchone()
    assert sorted(ids) == sorted(a.request_id for a in gateways.answers)
    assert tokens == (sent * PER_REQUEST,)
    assert len(set(itertools.chain(ids))) == sent
