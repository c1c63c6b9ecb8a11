"""Budgets under load: exact accounting, thresholds at exactly the expected request, restarts.

Every fake reports known usage (60 input + 40 output tokens), so each answered request adds
exactly 100 tokens and a known cost. The gateway runs in-process in front of the fakes, on a
SQLite state file that a "restarted" gateway opens again. The clock is fixed at a Thursday noon
UTC, so no window rolls over while a test runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from stellwerk.cli import main
from stellwerk.errors import ProviderError
from stellwerk.router import Router
from stellwerk.server import create_app
from stellwerk.state import MemoryStore, SQLiteStore, StateStore
from stellwerk.state.base import BudgetUse
from stellwerk.testing._server import Reply
from stellwerk.testing.world import FakeWorld
from stellwerk.types import ChatRequest, StreamEnd
from stellwerk.webhook import Webhook

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
DAILY = "daily:2026-11-26|all"
USAGE = (60, 40)
SONNET, MINI, QWEN = "anthropic/claude-sonnet-4-0", "openai/gpt-4o-mini", "ollama/qwen3-4b"


def config(**budgets: Any) -> dict[str, Any]:
    """simple: premium Sonnet, then the cheap gpt-4o-mini, then a local model; 1000 tokens a day."""
    return {
        "stack": [SONNET, MINI, QWEN],
        "tasks": {"simple": {"primary": SONNET, "fallbacks": [MINI]}},
        "budgets": {"limits": [{"window": "daily", "tokens": 1000}], **budgets},
    }


class Gateway:
    """An in-process gateway on a state store, with a fixed clock."""

    def __init__(self, world: FakeWorld, raw: dict[str, Any], store: StateStore) -> None:
        self.router = Router(world.policy(raw), store, clock=lambda: NOW)
        self.client: TestClient[Any, Any] = TestClient(TestServer(create_app(self.router)))

    async def __aenter__(self) -> Gateway:
        await self.client.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        await self.router.aclose()

    async def chat(self, **body: Any) -> Any:
        messages = [{"role": "user", "content": "hi"}]
        payload = {"model": "auto:simple", "messages": messages, "max_tokens": 40, **body}
        return await self.client.post("/v1/chat/completions", json=payload)

    async def usage(self) -> BudgetUse:
        return (await self.router.store.snapshot(NOW)).budgets.get(DAILY, BudgetUse())


@pytest.fixture
async def world() -> AsyncIterator[FakeWorld]:
    async with FakeWorld(default=Reply.ok("fine", usage=USAGE)) as w:
        yield w


def cost(world: FakeWorld, model: str) -> int:
    return world.policy().models[model].cost_micros(*USAGE)


# -- thresholds at exactly the expected request ------------------------------------------------

EXPECTED = [  # (answered by, x-stellwerk-budget) for requests 1..11 at 100 tokens each
    *[(SONNET, None)] * 7,
    (SONNET, "warn 80% daily"),  # 800 of 1000
    (SONNET, "downgrade 90% daily"),  # 900: premium is skipped from now on
    (MINI, "exhausted 100% daily"),  # 1000: local only from now on
    (QWEN, None),
    (QWEN, None),
]


@pytest.mark.parametrize("restart_after", [None, 5, 8, 9])
async def test_thresholds_cross_at_exactly_the_expected_request(
    world: FakeWorld, tmp_path: Path, restart_after: int | None
) -> None:
    path = tmp_path / "state.db"
    seen: list[tuple[str, str | None]] = []
    gateway = await Gateway(world, config(), SQLiteStore(path)).__aenter__()
    for i in range(len(EXPECTED)):
        if i == restart_after:  # a new gateway process on the same state file
            await gateway.__aexit__()
            gateway = await Gateway(world, config(), SQLiteStore(path)).__aenter__()
        response = await gateway.chat()
        assert response.status == 200
        seen.append(
            (response.headers["x-stellwerk-model"], response.headers.get("x-stellwerk-budget"))
        )
    use = await gateway.usage()
    await gateway.__aexit__()
    assert seen == EXPECTED
    assert use == BudgetUse(1200, 9 * cost(world, SONNET) + cost(world, MINI))


async def test_downgraded_and_local_only_requests_say_why(world: FakeWorld, tmp_path: Path) -> None:
    async with Gateway(world, config(), SQLiteStore(tmp_path / "s.db")) as gateway:
        fallbacks = []
        for _ in range(11):
            response = await gateway.chat()
            fallbacks.append(response.headers.get("x-stellwerk-fallback"))
    assert fallbacks[9] == f"{SONNET}: skipped (budget 90% daily: premium tier downgraded)"
    assert fallbacks[10] == (
        f"{SONNET}: skipped (budget 100% daily: local only), "
        f"{MINI}: skipped (budget 100% daily: local only)"
    )


async def test_block_answers_429_in_the_callers_format(world: FakeWorld, tmp_path: Path) -> None:
    async with Gateway(world, config(at_limit="block"), SQLiteStore(tmp_path / "s.db")) as gw:
        for _ in range(10):
            assert (await gw.chat()).status == 200
        openai = await gw.chat()
        anthropic = await gw.client.post(
            "/v1/messages",
            json={
                "model": "auto:simple",
                "max_tokens": 40,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        openai_body, anthropic_body = await openai.json(), await anthropic.json()
        before = world.requests()
        assert (await gw.chat()).status == 429
        assert world.requests() == before, "a blocked request reaches no provider"
    assert openai.status == anthropic.status == 429
    message = (
        "budget exhausted (daily all at 1,000 of 1,000 tokens, resets 2026-11-27 00:00 UTC); "
        "budgets.at_limit is block"
    )
    assert openai_body["error"]["message"] == message
    assert openai_body["error"]["code"] == "budget_exhausted"
    assert anthropic_body["type"] == "error"
    assert anthropic_body["error"] == {"type": "rate_limit_error", "message": message}


# -- exact accounting under load ---------------------------------------------------------------


async def test_concurrent_requests_are_counted_exactly_across_a_restart(
    world: FakeWorld, tmp_path: Path
) -> None:
    raw = config()
    raw["budgets"]["limits"] = [{"window": "daily", "tokens": 10**6}]
    path = tmp_path / "state.db"
    for _ in range(2):  # the second round is a restarted gateway on the same file
        async with Gateway(world, raw, SQLiteStore(path)) as gateway:
            answers = await asyncio.gather(*(gateway.chat() for _ in range(40)))
            assert [a.status for a in answers] == [200] * 40
    async with Gateway(world, raw, SQLiteStore(path)) as gateway:
        use = await gateway.usage()
    assert use == BudgetUse(80 * 100, 80 * cost(world, SONNET))


async def test_concurrent_requests_overshoot_by_no_more_than_those_in_flight(
    world: FakeWorld, tmp_path: Path
) -> None:
    in_flight = 4
    gate = asyncio.Semaphore(in_flight)

    async def one(gateway: Gateway) -> tuple[int, str | None]:
        async with gate:
            response = await gateway.chat()
            return response.status, response.headers.get("x-stellwerk-model")

    store = SQLiteStore(tmp_path / "state.db")
    async with Gateway(world, config(at_limit="block"), store) as gateway:
        results = await asyncio.gather(*(one(gateway) for _ in range(40)))
        use = await gateway.usage()
    answered = [model for status, model in results if status == 200]
    assert [status for status, _ in results].count(429) == 40 - len(answered)
    assert 1000 - in_flight * 100 <= len(answered) * 100 <= 1000 + (in_flight - 1) * 100
    spent = sum(cost(world, str(model)) for model in answered)
    assert use == BudgetUse(len(answered) * 100, spent), "exact: settled once, nothing in flight"


async def test_failed_attempts_release_their_reservation(world: FakeWorld) -> None:
    anthropic = world.fakes["anthropic"]
    anthropic.push(anthropic.error_reply(529))  # type: ignore[attr-defined]
    async with Gateway(world, config(), MemoryStore()) as gateway:
        response = await gateway.chat()
        use = await gateway.usage()
    assert response.headers["x-stellwerk-model"] == MINI
    assert use == BudgetUse(100, cost(world, MINI)), "only the answer counts, once"


async def test_streams_are_charged_with_the_reported_usage(world: FakeWorld) -> None:
    async with Gateway(world, config(), MemoryStore()) as gateway:
        routed = gateway.router.stream(
            replace(ChatRequest.of("hi", model="auto:simple"), max_tokens=40)
        )
        chunks = [chunk async for chunk in routed]
        use = await gateway.usage()
    assert isinstance(chunks[-1], StreamEnd)
    assert use == BudgetUse(100, cost(world, SONNET))


async def test_a_stream_cut_off_after_its_first_token_is_charged_an_estimate(
    world: FakeWorld,
) -> None:
    world.fakes["anthropic"].push(Reply.ok("one two three four", break_after=2, usage=USAGE))
    async with Gateway(world, config(), MemoryStore()) as gateway:
        routed = gateway.router.stream(
            replace(ChatRequest.of("hi", model="auto:simple"), max_tokens=40)
        )
        with pytest.raises(ProviderError):
            async for _ in routed:
                pass
        use = await gateway.usage()
    assert use.tokens > 0 and use.reserved_tokens == 0


# -- the webhook -------------------------------------------------------------------------------


class Hook:
    """A tiny webhook receiver on 127.0.0.1: answers 500 first, then 200 once released."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        if len(self.bodies) == 1:
            return web.Response(status=500)
        await self.release.wait()
        return web.Response(status=204)

    @property
    def url(self) -> str:
        return str(self.server.make_url("/hook"))

    async def received(self, count: int) -> list[Any]:
        for _ in range(500):
            if len(self.bodies) >= count:
                return self.bodies
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} webhook calls, got {len(self.bodies)}")


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = Hook()
    await receiver.server.start_server()
    yield receiver
    receiver.release.set()
    await receiver.server.close()


async def test_webhook_gets_the_warning_retried_and_never_blocks(
    world: FakeWorld, hook: Hook
) -> None:
    async with Gateway(world, config(webhook=hook.url), MemoryStore()) as gateway:
        gateway.router.budgets.webhook.backoff = 0.01
        for _ in range(8):
            response = await gateway.chat()
        assert response.headers["x-stellwerk-budget"] == "warn 80% daily"
        bodies = await hook.received(2)  # a 500, then the retry that hangs until released
        assert not hook.release.is_set(), "the request was answered while the webhook waited"
        hook.release.set()
    assert bodies[0] == bodies[1]
    body = bodies[0]
    assert body["event"] == "budget"
    assert (body["notice"], body["threshold"]) == ("warn 80% daily", "warn")
    assert body["request_id"].startswith("req_")
    budget = body["budget"]
    assert (budget["name"], budget["percent"], budget["level"]) == ("daily all", 80, "warn")
    assert budget["tokens"] == {"used": 800, "reserved": 0, "limit": 1000}
    assert budget["resets"] == "2026-11-27T00:00+00:00"


async def test_webhook_gives_up_after_its_attempts() -> None:
    webhook = Webhook()
    webhook.backoff, webhook.attempts = 0.001, 3
    server = TestServer(web.Application(), host="127.0.0.1")  # answers 404 to everything
    await server.start_server()
    try:
        delivered = await webhook.send(str(server.make_url("/nowhere")), {"event": "budget"})
    finally:
        await webhook.aclose()
        await server.close()
    assert delivered is False


# -- status, `stellwerk budget` --------------------------------------------------------------


async def test_status_api_shows_budgets(world: FakeWorld) -> None:
    async with Gateway(world, config(), MemoryStore()) as gateway:
        for _ in range(3):
            await gateway.chat()
        status = await (await gateway.client.get("/api/status")).json()
    [budget] = status["budgets"]
    assert (budget["name"], budget["percent"], budget["level"]) == ("daily all", 30, "ok")
    assert budget["tokens"] == {"used": 300, "reserved": 0, "limit": 1000}


async def _spend(path: Path, now: datetime) -> None:
    """Settle 850 tokens today and $1.25 this week (Anthropic) in the state file at `path`."""
    store = SQLiteStore(path)
    end = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
    day, (year, week, _) = now.date().isoformat(), now.isocalendar()
    keys = {f"daily:{day}|all": end, f"weekly:{year}-W{week:02d}|provider:anthropic": end}
    rid = await store.reserve(keys, 10, 10, now.timestamp(), 600)
    await store.settle(rid, 850, 1_250_000, now.timestamp())
    await store.close()


def test_budget_command_shows_use_limit_percent_and_reset(tmp_path: Path) -> None:
    path, now = tmp_path / "state.db", datetime.now(UTC)
    asyncio.run(_spend(path, now))
    config_file = tmp_path / "stellwerk.yaml"
    config_file.write_text(
        json.dumps(
            {
                "state": {"path": str(path)},
                "budgets": {
                    "limits": [
                        {"window": "daily", "tokens": 1000},
                        {"window": "weekly", "usd": 5, "scope": "provider:anthropic"},
                    ]
                },
            }
        )
    )
    runner = CliRunner()
    as_json = runner.invoke(main, ["budget", "--json", "--config", str(config_file)])
    text = runner.invoke(main, ["budget", "--config", str(config_file)])
    assert as_json.exit_code == 0, as_json.output
    daily, weekly = json.loads(as_json.output)
    assert (daily["name"], daily["percent"], daily["level"]) == ("daily all", 85, "warn")
    assert daily["tokens"] == {"used": 850, "reserved": 0, "limit": 1000}
    assert daily["resets"].startswith(
        now.date().fromordinal(now.date().toordinal() + 1).isoformat()
    )
    assert (weekly["name"], weekly["percent"]) == ("weekly provider:anthropic", 25)
    assert weekly["micros"] == {"used": 1_250_000, "reserved": 0, "limit": 5_000_000}
    assert text.exit_code == 0
    assert "850 of 1,000 tokens (85%)" in text.output and "warn" in text.output
    assert "$1.25 of $5.00 (25%)" in text.output
