"""Health, readiness, the model list, the status API, metrics and the client key check."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import pytest
from aiohttp.test_utils import TestClient, TestServer

import stellwerk.ledger.writer as ledger_writer
from stellwerk.ledger import Ledger, Row
from stellwerk.ledger.memory import MemoryLedger
from stellwerk.router import Router
from stellwerk.server import create_app
from stellwerk.server.gateway import GATEWAY
from stellwerk.state import MemoryStore
from stellwerk.testing.world import KEYS

from .conftest import CONFIG, HI


async def test_healthz_answers_without_a_key(make_gateway):
    gw = await make_gateway(api_keys=["client-key-0123456789"])
    response = await gw.client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
    assert response.headers["x-stellwerk-request-id"].startswith("req_")


async def test_readyz_reports_the_config_when_the_store_answers(gw):
    response = await gw.client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ready", "config": "<fake world>"}


class _BrokenStore(MemoryStore):
    async def snapshot(self, now: float):  # type: ignore[override]
        raise OSError("disk gone")


async def test_readyz_is_503_when_the_store_is_unreachable(gw):
    gw.router.store = _BrokenStore()
    response = await gw.client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "unavailable"
    assert "disk gone" in body["reason"]


async def test_models_lists_virtual_models_aliases_and_catalog(gw):
    response = await gw.client.get("/v1/models")
    assert response.status == 200
    body = await response.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids[:6] == [
        "auto",
        "auto:heartbeat",
        "auto:simple",
        "auto:complex",
        "auto:code",
        "auto:reasoning",
    ]
    assert "openai/gpt-4o-mini" in ids
    assert "ollama/qwen3-4b" in ids
    aliases = [a for spec in gw.router.policy.models.values() for a in spec.aliases]
    assert aliases and set(aliases) <= set(ids)
    assert len(ids) == len(set(ids))
    entry = body["data"][0]
    assert entry["object"] == "model" and entry["type"] == "model"
    assert isinstance(entry["created"], int) and entry["owned_by"] == "stellwerk"


async def test_one_model_by_id_and_unknown_model_is_404(gw):
    found = await gw.client.get("/v1/models/openai/gpt-4o-mini")
    assert found.status == 200
    assert (await found.json())["owned_by"] == "openai"
    missing = await gw.client.get("/v1/models/openai/gpt-9")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "model_not_found"


async def test_status_matches_status_json_with_masked_keys(gw):
    response = await gw.client.get("/api/status")
    assert response.status == 200
    body = await response.json()
    assert body["config"] == "<fake world>"
    assert body["mode"] == "auto"
    openai = next(p for p in body["providers"] if p["name"] == "openai")
    assert openai["credentials"] == [{"id": "openai#1", "key": "sk-…klmn"}]
    text = await response.text()
    assert not any(key in text for key in KEYS.values())


async def test_metrics_count_requests_attempts_fallbacks_and_cooldowns(gw):
    gw.world.fakes["openai"].push(gw.world.fakes["openai"].error("rate_limit"))
    assert (await gw.chat({})).status == 200
    assert (await gw.chat({"model": "anthropic/claude-haiku-4-5"})).status == 200
    response = await gw.client.get("/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = await response.text()
    assert (
        'stellwerk_requests_total{outcome="fallback",target="anthropic/claude-haiku-4-5",'
        'task="simple"} 1.0'
    ) in text
    assert 'stellwerk_attempts_total{failure="rate_limit",target="openai/gpt-4o-mini"} 1.0' in text
    assert 'stellwerk_fallbacks_total{failure="rate_limit"} 1.0' in text
    assert 'stellwerk_cooldowns_active{reason="rate_limit"} 1.0' in text
    assert 'stellwerk_tokens_total{direction="output",target="anthropic/claude-haiku-4-5"}' in text
    assert "stellwerk_upstream_duration_seconds_bucket" in text
    assert "stellwerk_emergency_mode 0.0" in text
    assert not any(key in text for key in KEYS.values())


class _FlakyLedger(MemoryLedger):
    """A ledger backend whose writes fail until `down` is cleared (a full disk)."""

    down = True

    def write(self, rows: Sequence[Row]) -> None:
        if self.down:
            raise sqlite3.OperationalError("database or disk is full")
        super().write(rows)


async def test_metrics_show_the_ledgers_backlog_while_its_writes_fail(world, monkeypatch):
    """An operator sees the ledger fall behind, and what it gave up on, before the rows are
    gone: recorded rows waiting, a failing flag, and the rows dropped past the cap."""
    monkeypatch.setattr(ledger_writer, "MAX_PENDING", 3)
    backend = _FlakyLedger()
    ledger = Ledger(backend, flush_every=3600.0)  # written when the test flushes
    router = Router(world.policy(CONFIG), MemoryStore(), ledger=ledger)
    client = TestClient(TestServer(create_app(router)))
    await client.start_server()
    try:

        async def metrics() -> str:
            return await (await client.get("/metrics")).text()

        body = {"model": "auto:simple", "messages": HI}
        for _ in range(2):
            assert (await client.post("/v1/chat/completions", json=body)).status == 200
        await ledger.flush()
        text = await metrics()
        assert "stellwerk_ledger_pending_rows 2.0" in text
        assert "stellwerk_ledger_write_failing 1.0" in text
        assert "stellwerk_ledger_dropped_rows_total 0.0" in text
        for _ in range(2):
            assert (await client.post("/v1/chat/completions", json=body)).status == 200
        await ledger.flush()  # 4 rows, 3 kept: the oldest is dropped
        text = await metrics()
        assert "stellwerk_ledger_pending_rows 3.0" in text
        assert "stellwerk_ledger_dropped_rows_total 1.0" in text
        backend.down = False
        await ledger.flush()
        text = await metrics()
        assert "stellwerk_ledger_pending_rows 0.0" in text
        assert "stellwerk_ledger_write_failing 0.0" in text
        assert "stellwerk_ledger_dropped_rows_total 1.0" in text  # counted once
        assert len(backend.tail(10)) == 3
    finally:
        await client.close()
        await router.aclose()


async def test_metrics_count_http_responses_by_route_template(gw):
    await gw.client.get("/v1/models/openai/gpt-9")
    await gw.client.get("/no/such/path")
    text = await (await gw.client.get("/metrics")).text()
    assert 'stellwerk_http_responses_total{endpoint="/v1/models/{model}",status="404"}' in text
    assert "/no/such/path" not in text


async def test_each_app_has_its_own_metrics(make_gateway):
    first, second = await make_gateway(), await make_gateway()
    await first.chat({})
    text = await (await second.client.get("/metrics")).text()
    assert "stellwerk_requests_total{" not in text


async def test_unknown_path_and_wrong_method_answer_in_openai_format(gw):
    missing = await gw.client.get("/v2/nothing")
    assert missing.status == 404
    assert (await missing.json())["error"]["message"] == "Not Found: GET /v2/nothing"
    wrong = await gw.client.get("/v1/chat/completions")
    assert wrong.status == 405
    assert "error" in await wrong.json()


# -- client keys -----------------------------------------------------------------------------

CLIENT_KEY = "sk-stellwerk-client-0123456789"


@pytest.mark.parametrize(
    "headers",
    [{"authorization": f"Bearer {CLIENT_KEY}"}, {"x-api-key": CLIENT_KEY}],
    ids=["bearer", "x-api-key"],
)
async def test_a_valid_client_key_is_accepted_either_way(make_gateway, headers):
    gw = await make_gateway(api_keys=[CLIENT_KEY, "another-key-abcdefgh"])
    assert (await gw.chat({}, headers=headers)).status == 200
    assert (await gw.messages({}, headers=headers)).status == 200
    assert (await gw.client.get("/v1/models", headers=headers)).status == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"x-api-key": "wrong"}, {"authorization": CLIENT_KEY}],
    ids=["none", "wrong-bearer", "wrong-x-api-key", "no-scheme"],
)
async def test_a_missing_or_wrong_key_is_401_in_the_callers_format(make_gateway, headers):
    gw = await make_gateway(api_keys=[CLIENT_KEY])
    openai = await gw.chat({}, headers=headers)
    assert openai.status == 401
    body = await openai.json()
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["type"] == "invalid_request_error"
    anthropic = await gw.messages({}, headers=headers)
    assert anthropic.status == 401
    assert (await anthropic.json())["error"]["type"] == "authentication_error"
    assert (await gw.client.get("/api/status", headers=headers)).status == 401
    assert gw.world.requests() == 0
    assert CLIENT_KEY not in await openai.text()


async def test_keys_come_from_the_config_and_follow_a_reload(make_gateway, world, config):
    gw = await make_gateway({**config, "gateway": {"api_keys": [CLIENT_KEY]}})
    assert (await gw.chat({})).status == 401
    assert (await gw.chat({}, headers={"x-api-key": CLIENT_KEY})).status == 200
    rotated = {**config, "gateway": {"api_keys": ["rotated-key-0123456789"]}}
    gw.client.server.app[GATEWAY].reload(world.policy(rotated))
    assert (await gw.chat({}, headers={"x-api-key": CLIENT_KEY})).status == 401
    assert (await gw.chat({}, headers={"x-api-key": "rotated-key-0123456789"})).status == 200
