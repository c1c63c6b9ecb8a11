"""Exact accounting: every request through the gateway ends in exactly one ledger record, and the
ledger's token and cost sums equal what the fake providers reported, priced from the catalog in
integer micro-dollars; across a restart in the middle too, with nothing counted twice.

The gateway runs in-process on the SQLite ledger of the configuration (`ledger.path`), in front
of the fake upstreams. Requests mix both client formats, streaming and not; some hit a context
overflow on OpenAI and are answered by Anthropic (no cooldown, so every request tries OpenAI).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from stellwerk.ledger import Row, SQLiteLedger, open_ledger
from stellwerk.policy import Policy, Secret
from stellwerk.router import Router
from stellwerk.server import create_app
from stellwerk.state import MemoryStore
from stellwerk.testing._server import Reply
from stellwerk.testing.openai import OPENAI_ERRORS
from stellwerk.testing.world import FakeWorld

MINI, HAIKU = "openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"
HI = [{"role": "user", "content": "hi"}]
OVERFLOW = Reply.error(*OPENAI_ERRORS["context_length_exceeded"])
CONCURRENCY = 20
SLOW = Reply.ok(" ".join(["word"] * 1000), chunk_delay=0.05)  # ~50 s if read to the end


@dataclass
class Served:
    """A running gateway on the configured ledger."""

    client: TestClient[Any, Any]
    router: Router

    async def stop(self) -> None:
        await self.client.close()
        await self.router.aclose()


@dataclass
class Expected:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    fallbacks: int = 0


@pytest.fixture
def policy(world: FakeWorld, config: dict[str, Any], tmp_path: Path) -> Policy:
    """The gateway tests' routing (simple: OpenAI, Anthropic, Ollama) on a ledger in tmp_path."""
    return world.policy({**config, "ledger": {"path": str(tmp_path / "ledger.db")}})


@pytest.fixture
async def served(policy: Policy) -> AsyncIterator[list[Served]]:
    running: list[Served] = []
    yield running
    for each in running:
        await each.stop()


async def start(policy: Policy, running: list[Served]) -> Served:
    router = Router(policy, MemoryStore(), ledger=open_ledger(policy))
    client = TestClient(TestServer(create_app(router)))
    await client.start_server()
    running.append(served := Served(client, router))
    return served


def script(world: FakeWorld, policy: Policy, count: int, seed: int) -> Expected:
    """Queue `count` answers on OpenAI (one in ten a context overflow answered by Anthropic)."""
    rng = random.Random(seed)
    expected = Expected(requests=count)
    for _ in range(count):
        usage = (rng.randint(20, 5000), rng.randint(1, 900))
        if rng.random() < 0.1:
            world.fakes["openai"].push(OVERFLOW)
            world.fakes["anthropic"].push(Reply.ok("from haiku", usage=usage))
            model, expected.fallbacks = HAIKU, expected.fallbacks + 1
        else:
            world.fakes["openai"].push(Reply.ok("from mini", usage=usage))
            model = MINI
        expected.input_tokens += usage[0]
        expected.output_tokens += usage[1]
        expected.cost_micros += policy.models[model].cost_micros(*usage)
    return expected


async def load(gateway: Served, count: int) -> None:
    """`count` requests, CONCURRENCY at a time, cycling through the four kinds of client call."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        path = "/v1/messages" if i % 2 else "/v1/chat/completions"
        body: dict[str, Any] = {"model": "auto:simple", "messages": HI, "stream": i % 4 >= 2}
        if path == "/v1/messages":
            body["max_tokens"] = 1000
        async with gate:
            response = await gateway.client.post(path, json=body)
            await response.read()
            assert response.status == 200, await response.text()

    await asyncio.gather(*(one(i) for i in range(count)))


def stored(path: Path) -> list[Row]:
    backend = SQLiteLedger(path)
    try:
        return backend.since(0)
    finally:
        backend.close()


def assert_totals(rows: list[Row], expected: Expected) -> None:
    assert len(rows) == expected.requests
    assert len({r.request_id for r in rows}) == expected.requests  # nothing counted twice
    assert sum(r.input_tokens for r in rows) == expected.input_tokens
    assert sum(r.output_tokens for r in rows) == expected.output_tokens
    assert sum(r.cost_micros for r in rows) == expected.cost_micros
    assert sum(r.fallback for r in rows) == expected.fallbacks
    assert not any(r.estimated for r in rows)
    assert all(r.answered_by in (MINI, HAIKU) and r.error is None for r in rows)


async def test_ledger_totals_equal_what_the_fakes_reported_under_load(world, policy, served):
    expected = script(world, policy, 200, seed=5)
    gateway = await start(policy, served)
    await load(gateway, 200)
    await gateway.stop()
    served.clear()
    rows = stored(Path(policy.ledger.path))
    assert_totals(rows, expected)
    assert {r.client for r in rows} == {"openai", "anthropic"}
    overflowed = [r for r in rows if r.fallback]
    assert all(r.failures == ((MINI, "context_overflow"),) for r in overflowed)


async def test_totals_stay_exact_across_a_restart_in_the_middle(world, policy, served):
    first = script(world, policy, 100, seed=7)
    gateway = await start(policy, served)
    await load(gateway, 100)
    await gateway.stop()  # a clean shutdown: the ledger flushes
    served.clear()
    assert_totals(stored(Path(policy.ledger.path)), first)

    second = script(world, policy, 100, seed=8)
    gateway = await start(policy, served)  # a new process would open the same file
    await load(gateway, 100)
    await gateway.stop()
    served.clear()
    both = Expected(
        *(a + b for a, b in zip(vars(first).values(), vars(second).values(), strict=True))
    )
    assert_totals(stored(Path(policy.ledger.path)), both)


# -- failures and hang-ups: exactly one record each --------------------------------------------


async def records(gateway: Served, count: int) -> list[Row]:
    """The ledger's rows once `count` are there (the sink runs when the request ends)."""
    ledger = gateway.router.ledger
    assert ledger is not None
    for _ in range(300):
        rows = await ledger.since(0)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} records, got {len(rows)}")


async def test_a_failed_request_is_one_record_with_its_failures(world, policy, served):
    world.fakes["openai"].push(Reply.error(*OPENAI_ERRORS["server_error"]))
    world.fakes["anthropic"].push(Reply.error(529, {"type": "error", "error": {}}))
    world.fakes["ollama"].push(Reply.error(500, {"error": "model crashed"}))
    gateway = await start(policy, served)
    response = await gateway.client.post(
        "/v1/chat/completions", json={"model": "auto:simple", "messages": HI}
    )
    assert response.status == 502
    [row] = await records(gateway, 1)
    assert row.answered_by is None and row.model is None
    assert [f for _, f in row.failures] == ["server", "overloaded", "server"]
    assert (row.input_tokens, row.output_tokens, row.cost_micros) == (0, 0, 0)
    assert row.error and "server" in row.error
    await asyncio.sleep(0.05)
    assert len(await gateway.router.ledger.since(0)) == 1  # type: ignore[union-attr]


async def test_a_client_hanging_up_mid_stream_is_one_estimated_record(world, policy, served):
    world.fakes["openai"].push(SLOW)
    gateway = await start(policy, served)
    response = await gateway.client.post(
        "/v1/chat/completions", json={"model": "auto:simple", "messages": HI, "stream": True}
    )
    assert response.status == 200
    assert await response.content.readany()
    response.close()  # the client goes away mid-answer
    [row] = await records(gateway, 1)
    assert row.answered_by is None
    assert (row.model, row.provider) == (MINI, "openai")  # billed: charged to its model
    assert row.estimated and row.input_tokens > 0 and row.output_tokens > 0
    assert row.cost_micros == policy.models[MINI].cost_micros(row.input_tokens, row.output_tokens)
    assert row.error and "disconnected" in row.error
    await asyncio.sleep(0.05)
    assert len(await gateway.router.ledger.since(0)) == 1  # type: ignore[union-attr]


async def test_a_client_hanging_up_before_the_answer_is_one_record(world, policy, served):
    world.fakes["openai"].push(Reply.hang(30))
    gateway = await start(policy, served)
    with pytest.raises(asyncio.TimeoutError):
        await gateway.client.post(
            "/v1/chat/completions",
            json={"model": "auto:simple", "messages": HI},
            timeout=aiohttp.ClientTimeout(total=0.3),
        )
    [row] = await records(gateway, 1)
    assert row.answered_by is None and row.model is None and row.cost_micros == 0
    assert row.error == "cancelled (client disconnected)"
    await asyncio.sleep(0.05)
    assert len(await gateway.router.ledger.since(0)) == 1  # type: ignore[union-attr]


async def test_a_stream_broken_after_the_first_token_is_charged_as_estimated(world, policy, served):
    world.fakes["openai"].push(Reply.ok("one two three four five six", break_after=2))
    gateway = await start(policy, served)
    response = await gateway.client.post(
        "/v1/chat/completions", json={"model": "auto:simple", "messages": HI, "stream": True}
    )
    await response.read()
    [row] = await records(gateway, 1)
    assert (row.answered_by, row.model) == (None, MINI)
    assert row.failures == ((MINI, "stream_broken"),)
    assert row.estimated and row.output_tokens > 0
    assert row.cost_micros == policy.models[MINI].cost_micros(row.input_tokens, row.output_tokens)


# -- the wiring: Router.from_config records to the configured ledger ---------------------------


async def test_from_config_records_every_request_and_close_flushes_it(world, tmp_path, monkeypatch):
    for name, value in world.env().items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "stellwerk.yaml"
    state = tmp_path / "state" / "state.db"
    config.write_text(f"state: {{path: {state}}}\nledger: {{store_content: true}}\n")
    world.fakes["openai"].push(Reply.ok("4", usage=(11, 1)))
    async with Router.from_config(config) as router:
        app = create_app(router)  # the gateway wraps the sink for its metrics: both still work
        client = TestClient(TestServer(app))
        await client.start_server()
        body = {"model": "auto:simple", "messages": [{"role": "user", "content": "2+2?"}]}
        assert (await client.post("/v1/chat/completions", json=body)).status == 200
        metrics = await (await client.get("/metrics")).text()
        await client.close()
    assert "stellwerk_" in metrics and MINI in metrics
    backend = SQLiteLedger(tmp_path / "state" / "ledger.db")
    [row] = backend.tail(5)
    backend.close()
    assert (row.client, row.answered_by, row.input_tokens, row.output_tokens) == (
        "openai",
        MINI,
        11,
        1,
    )
    assert (row.prompt, row.answer) == ("2+2?", "4")


async def test_requests_refused_before_routing_each_leave_one_record(policy, served, world):
    """Bad JSON, a bad client key, an unknown model and an oversized body: one record each."""
    gate = replace(policy.gateway, api_keys=(Secret("sk-gw-client-key"),), max_body=4096)
    keyed = replace(policy, gateway=gate)
    gateway = await start(keyed, served)
    good = {"Authorization": "Bearer sk-gw-client-key"}
    calls = [
        ("/v1/chat/completions", {"data": b'{"model": "auto", "messages": ['}, good, 400),
        ("/v1/chat/completions", {"json": {"model": "auto", "messages": HI}}, {}, 401),
        ("/v1/messages", {"json": {"model": "gtp-9", "max_tokens": 5, "messages": HI}}, good, 404),
        ("/v1/chat/completions", {"data": b"x" * (keyed.gateway.max_body + 1)}, good, 413),
        ("/v1/chat/completions", {"json": {"model": "auto:simple", "messages": HI}}, good, 200),
    ]
    for path, body, headers, status in calls:
        async with gateway.client.post(path, headers=headers, **body) as response:
            assert response.status == status
    await gateway.router.ledger.flush()
    rows = await gateway.router.ledger.tail(10)
    assert len(rows) == len(calls)
    rejected = [r for r in rows if r.task == "rejected"]
    assert sorted(r.error.split(":")[0] for r in rejected) == ["400", "401", "404", "413"]
    assert {r.client for r in rejected} == {"openai", "anthropic"}
    assert all("sk-gw-client-key" not in r.decision for r in rows)
