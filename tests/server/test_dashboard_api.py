"""The dashboard's server side: the page, its JSON, the decision feed and the admin actions.

What a user of the page notices: what it shows (cooldowns that end when the status says,
budgets at their percent, decisions as they happen, the week's routing), and who may do what:
reading needs a key once keys are configured, actions need an admin key, and a cross-site page
or a rebound name gets nowhere. The browser itself is driven in `tests/browser/`.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from stellwerk.ledger import Ledger
from stellwerk.ledger.memory import MemoryLedger
from stellwerk.router import Router
from stellwerk.server import create_app
from stellwerk.server.dashboard import loopback, loopback_name
from stellwerk.state import MemoryStore
from stellwerk.testing._server import Reply
from stellwerk.testing.world import KEYS, FakeWorld

from .conftest import CONFIG, HI

CLIENT = "client-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
AS_CLIENT = {"authorization": f"Bearer {CLIENT}"}
AS_ADMIN = {"authorization": f"Bearer {ADMIN}"}
KEYED = {"api_keys": [CLIENT], "admin_keys": [ADMIN]}


async def billing_failure(gw: Any) -> None:
    """OpenAI answers its real quota error once; the simple class falls back to Anthropic."""
    openai = gw.world.fakes["openai"]
    openai.push(openai.error("insufficient_quota"))
    response = await gw.chat({}, headers=AS_CLIENT)
    assert response.status == 200


def openai_cooldown(data: dict[str, Any]) -> dict[str, Any]:
    [row] = [c for c in data["cooldowns"] if c["provider"] == "openai"]
    return row


# -- the page --------------------------------------------------------------------------------


async def test_the_page_is_at_ui_with_a_strict_policy_and_needs_no_key(make_gateway):
    gw = await make_gateway(CONFIG, **KEYED)
    for path in ("/", "/ui"):
        moved = await gw.client.get(path, allow_redirects=False)
        assert (moved.status, moved.headers["location"]) == (302, "/ui/")
    page = await gw.client.get("/ui/")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    html = await page.text()
    assert "app.js" in html and "http://" not in html and "https://" not in html  # no CDN
    script = await gw.client.get("/ui/app.js")
    assert script.status == 200 and script.headers["content-type"].startswith("text/javascript")
    assert (await gw.client.get("/ui/%2e%2e/config.py")).status in (401, 404)  # never a file
    assert (await gw.client.get("/ui/nothing.js")).status == 404


async def test_the_page_can_be_switched_off_and_the_api_stays(make_gateway):
    gw = await make_gateway({**CONFIG, "gateway": {"dashboard": False}})
    assert (await gw.client.get("/ui/")).status == 404
    assert (await gw.client.get("/", allow_redirects=False)).status == 404
    assert (await gw.client.get("/api/dashboard")).status == 200


# -- what it shows ---------------------------------------------------------------------------


async def test_a_billing_failure_shows_as_a_cooldown_with_its_end_and_no_key(make_gateway):
    gw = await make_gateway(CONFIG, **KEYED)
    await billing_failure(gw)
    response = await gw.client.get("/api/dashboard", headers=AS_CLIENT)
    assert response.status == 200
    data = await response.json()
    row = openai_cooldown(data)
    assert row["reason"] == "billing"
    assert row["until_ts"] > data["now"]  # the page counts down from here
    body = await response.text()
    for secret in (*KEYS.values(), CLIENT, ADMIN):
        assert secret not in body
    [openai] = [p for p in data["providers"] if p["name"] == "openai"]
    assert openai["credentials"][0]["key"].count("*") or "…" in openai["credentials"][0]["key"]
    assert openai["healthy"] is None  # only local providers are watched
    assert data["mode"] == "auto" and data["emergency"]["on"] is False
    assert data["access"] == {
        "read": True,
        "admin": False,
        "keys_required": True,
        "admin_keys_configured": True,
    }


async def test_a_budget_shows_its_percent_reserved_and_marks(make_gateway):
    raw = {**CONFIG, "budgets": {"limits": [{"window": "daily", "tokens": 1000}]}}
    gw = await make_gateway(raw)
    gw.world.fakes["openai"].push(Reply.ok("fine", usage=(200, 50)))
    assert (await gw.chat({})).status == 200
    data = await (await gw.client.get("/api/dashboard")).json()
    [budget] = data["budgets"]
    assert budget["tokens"]["used"] == 250 and budget["tokens"]["reserved"] == 0
    assert budget["percent"] == 25
    assert (budget["warn_percent"], budget["downgrade_percent"]) == (80, 90)
    assert budget["resets_ts"] > data["now"]


async def test_emergency_shows_since_and_why(make_gateway):
    gw = await make_gateway(CONFIG)
    assert (await gw.client.post("/api/emergency", json={"on": True})).status == 200
    data = await (await gw.client.get("/api/dashboard")).json()
    assert data["mode"] == "emergency" and data["routing_mode"] == "auto"
    assert data["emergency"]["on"] is True
    assert data["emergency"]["since_ts"] <= data["now"]
    assert data["emergency"]["reason"] == "by hand (status API)"


async def test_stats_count_every_request_in_the_chart_and_the_totals(world):
    async with ledgered(world) as gw:
        for _ in range(3):
            assert (await gw.post("/v1/chat/completions", json=chat_body())).status == 200
        response = await gw.get("/api/stats", params={"window": "24h"})
        data = await response.json()
        assert data["stats"]["requests"] == 3
        assert data["stats"]["by_task"][0]["name"] == "simple"
        buckets = data["series"]["buckets"]
        assert data["series"]["bucket_s"] == 3600 and len(buckets) in (24, 25)
        assert sum(b["requests"] for b in buckets) == 3
        assert sum(b["by_task"].get("simple", 0) for b in buckets) == 3
        assert sum(b["cost_micros"] for b in buckets) == data["stats"]["cost_micros"]
        assert data["stats"]["savings"]["baseline_micros"] == sum(
            b["baseline_micros"] for b in buckets
        )
        week = await (await gw.get("/api/stats", params={"window": "7d"})).json()
        assert week["series"]["bucket_s"] == 6 * 3600 and week["stats"]["requests"] == 3
        bad = await gw.get("/api/stats", params={"window": "1y"})
        assert bad.status == 400
        assert "24h, 7d" in (await bad.json())["error"]["message"]


# -- the decision feed -----------------------------------------------------------------------


async def read_events(response: Any, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The first `count` decision events of an open SSE response."""
    events: list[dict[str, Any]] = []
    buffer = b""

    async def read() -> None:
        nonlocal buffer
        while len(events) < count:
            buffer += await response.content.readany()
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                lines = block.decode().splitlines()
                if "event: decision" in lines:
                    data = next(line[6:] for line in lines if line.startswith("data: "))
                    ident = next(line[4:] for line in lines if line.startswith("id: "))
                    event = json.loads(data)
                    assert int(ident) == event["id"]
                    events.append(event)

    await asyncio.wait_for(read(), timeout)
    return events


async def test_a_new_decision_reaches_an_open_feed_and_a_reconnect_misses_none(world):
    async with ledgered(world) as gw:
        assert (await gw.post("/v1/chat/completions", json=chat_body())).status == 200
        feed = await gw.get("/api/events")
        assert feed.headers["content-type"] == "text/event-stream"
        [old] = await read_events(feed, 1)  # the backlog
        assert old["task"] == "simple" and old["model"] == "openai/gpt-4o-mini"
        assert old["status"] == "ok" and old["input_tokens"] > 0
        openai = world.fakes["openai"]
        openai.push(openai.error_reply(429))
        assert (await gw.post("/v1/chat/completions", json=chat_body())).status == 200
        [new] = await read_events(feed, 1)
        assert new["id"] > old["id"]
        assert new["model"] == "anthropic/claude-haiku-4-5"
        assert new["fallback"] == "rate_limit on openai/gpt-4o-mini"
        feed.close()

        for _ in range(2):
            assert (await gw.post("/v1/chat/completions", json=chat_body())).status == 200
        again = await gw.get("/api/events", headers={"last-event-id": str(new["id"])})
        missed = await read_events(again, 2)
        assert [e["id"] for e in missed] == [new["id"] + 1, new["id"] + 2]
        again.close()


async def test_without_a_ledger_the_feed_carries_the_gateways_own_decisions(make_gateway):
    gw = await make_gateway(CONFIG)
    feed = await gw.client.get("/api/events")
    assert (await gw.chat({})).status == 200
    [event] = await read_events(feed, 1)
    assert (event["id"], event["model"]) == (1, "openai/gpt-4o-mini")
    feed.close()


# -- who may do what -------------------------------------------------------------------------


async def test_reading_needs_a_key_once_keys_are_configured(make_gateway):
    gw = await make_gateway(CONFIG, admin_keys=[ADMIN])  # admin keys only: chat stays open
    assert (await gw.chat({})).status == 200
    for path in ("/api/dashboard", "/api/stats", "/api/events", "/api/status"):
        assert (await gw.client.get(path)).status == 401, path
    ok = await gw.client.get("/api/dashboard", headers=AS_ADMIN)
    assert (await ok.json())["access"]["admin"] is True


async def test_the_reset_action_needs_the_admin_key_and_clears_the_cooldown(make_gateway):
    gw = await make_gateway(CONFIG, **KEYED)
    await billing_failure(gw)
    key = openai_cooldown(await (await gw.client.get("/api/dashboard", headers=AS_CLIENT)).json())
    body = {"target": key["key"]}
    refused = await gw.client.post("/api/cooldowns/reset", json=body, headers=AS_CLIENT)
    assert refused.status == 403
    error = (await refused.json())["error"]
    assert error["code"] == "admin_key_required" and "admin key" in error["message"]
    assert (await gw.client.post("/api/cooldowns/reset", json=body)).status == 401
    still = await (await gw.client.get("/api/status", headers=AS_CLIENT)).json()
    assert [c["reason"] for c in still["cooldowns"]] == ["billing"]

    done = await gw.client.post("/api/cooldowns/reset", json=body, headers=AS_ADMIN)
    assert (done.status, await done.json()) == (200, {"reset": 1})
    status = await (await gw.client.get("/api/status", headers=AS_CLIENT)).json()
    assert status["cooldowns"] == []
    answer = await gw.chat({}, headers=AS_CLIENT)
    assert answer.headers["x-stellwerk-model"] == "openai/gpt-4o-mini"  # usable again at once


async def test_a_reset_of_an_unknown_name_says_so(make_gateway):
    gw = await make_gateway(CONFIG)
    response = await gw.client.post("/api/cooldowns/reset", json={"target": "opnai"})
    assert response.status == 400
    assert "did you mean openai?" in (await response.json())["error"]["message"]


async def test_client_keys_without_admin_keys_never_act(make_gateway):
    gw = await make_gateway(CONFIG, api_keys=[CLIENT])
    response = await gw.client.post("/api/emergency", json={"on": True}, headers=AS_CLIENT)
    assert response.status == 403
    assert "set gateway.admin_keys" in (await response.json())["error"]["message"]
    data = await (await gw.client.get("/api/dashboard", headers=AS_CLIENT)).json()
    assert data["access"]["admin"] is False and data["mode"] == "auto"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
    ],
)
async def test_a_cross_site_request_cannot_act_even_with_no_keys(make_gateway, headers):
    gw = await make_gateway(CONFIG)
    response = await gw.client.post("/api/emergency", json={"on": True}, headers=headers)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "cross_origin_refused"
    data = await (await gw.client.get("/api/dashboard")).json()
    assert data["emergency"]["on"] is False


async def test_a_form_post_cannot_act(make_gateway):
    gw = await make_gateway(CONFIG)
    form = await gw.client.post("/api/emergency", data='{"on": true}')  # text/plain: no preflight
    assert form.status == 415
    same = {"origin": str(gw.client.make_url("")).rstrip("/")}
    ok = await gw.client.post("/api/emergency", json={"on": True}, headers=same)
    assert ok.status == 200


async def test_a_rebound_name_gets_nothing_from_a_keyless_gateway(make_gateway):
    gw = await make_gateway(CONFIG)
    for path in ("/api/dashboard", "/api/events"):
        rebound = {"host": "attacker.example:4711", "sec-fetch-site": "same-origin"}
        response = await gw.client.get(path, headers=rebound)
        assert response.status == 403, path
        assert (await response.json())["error"]["code"] == "host_refused"
    ok = await gw.client.get("/api/dashboard", headers={"host": "localhost:4711"})
    assert ok.status == 200


async def test_a_keyless_gateway_spends_nothing_for_another_sites_page(make_gateway, world):
    """A page on another site can make the browser POST a text/plain body to 127.0.0.1 without
    a preflight, or rebind its own name to it: neither reaches a model."""
    gw = await make_gateway(CONFIG)
    body = json.dumps({"model": "auto:simple", "messages": HI})
    for headers in (
        {"origin": "https://evil.example", "content-type": "text/plain"},
        {"sec-fetch-site": "cross-site", "content-type": "text/plain"},
        {"host": "evil.example:4711", "sec-fetch-site": "same-origin"},  # rebound: same origin
    ):
        response = await gw.client.post("/v1/chat/completions", data=body, headers=headers)
        assert response.status == 403, headers
        error = (await response.json())["error"]
        assert error["code"] in ("cross_origin_refused", "host_refused")
    assert world.fakes["openai"].received == []
    ok = await gw.client.post("/v1/chat/completions", data=body)  # no browser: no Origin
    assert ok.status == 200
    # OpenClaw's requests (Node's fetch) through a local proxy: Sec-Fetch-Mode is no browser's
    proxied = {"host": "gateway.example", "sec-fetch-mode": "cors", "user-agent": "undici"}
    assert (await gw.client.post("/v1/chat/completions", data=body, headers=proxied)).status == 200


async def test_with_keys_the_key_decides_not_the_origin(make_gateway):
    gw = await make_gateway(CONFIG, api_keys=[CLIENT])
    headers = {**AS_CLIENT, "origin": "https://tool.example", "host": "gateway.lan:4711"}
    response = await gw.chat({}, headers=headers)
    assert response.status == 200


def test_loopback_names():
    assert loopback("127.0.0.1") and loopback("::1") and loopback("localhost")
    assert not loopback("0.0.0.0") and not loopback("192.168.1.2") and not loopback("example")
    assert loopback_name("127.0.0.1:4711") and loopback_name("[::1]:80")
    assert loopback_name("app.localhost") and loopback_name("10.0.0.2:4711")
    assert not loopback_name("evil.example:4711") and not loopback_name("")


# -- the other actions -----------------------------------------------------------------------


async def test_probe_now_makes_a_working_key_usable_at_once(make_gateway):
    gw = await make_gateway(CONFIG)
    openai = gw.world.fakes["openai"]
    openai.push(openai.error_reply(429))
    assert (await gw.chat({})).status == 200
    before = await (await gw.client.get("/api/dashboard")).json()
    assert [c["reason"] for c in before["cooldowns"]] == ["rate_limit"]
    response = await gw.client.post("/api/probe", json={})
    probed = (await response.json())["probed"]
    assert [p["outcome"] for p in probed] == ["ok"]
    after = await (await gw.client.get("/api/dashboard")).json()
    assert after["cooldowns"] == []


async def test_reload_reads_the_file_again_and_keeps_the_running_config_when_it_is_bad(
    make_gateway, tmp_path: Path
):
    path = tmp_path / "stellwerk.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "routing": {"mode": "auto"}}))
    gw = await make_gateway(CONFIG)
    gw.client.app[_gateway_key()].config_path = path
    path.write_text(yaml.safe_dump({**CONFIG, "routing": {"mode": "shadow"}}))
    response = await gw.client.post("/api/config/reload", json={})
    assert (response.status, (await response.json())["config"]) == (200, str(path))
    data = await (await gw.client.get("/api/dashboard")).json()
    assert data["routing_mode"] == "shadow"

    path.write_text(yaml.safe_dump({**CONFIG, "routing": {"mode": "sometimes"}}))
    bad = await gw.client.post("/api/config/reload", json={})
    assert bad.status == 400
    message = (await bad.json())["error"]["message"]
    assert "routing.mode" in message and "running config stays" in message
    assert (await (await gw.client.get("/api/dashboard")).json())["routing_mode"] == "shadow"


def _gateway_key() -> Any:
    from stellwerk.server.gateway import GATEWAY

    return GATEWAY


# -- helpers ---------------------------------------------------------------------------------


def chat_body() -> dict[str, Any]:
    return {"model": "auto:simple", "messages": HI}


class ledgered:
    """An in-process gateway with a real (memory) ledger, as `serve` has one."""

    def __init__(self, world: FakeWorld, raw: dict[str, Any] | None = None) -> None:
        ledger = Ledger(MemoryLedger(), flush_every=0.05)
        self.router = Router(world.policy(raw or CONFIG), MemoryStore(), ledger=ledger)
        self.client = TestClient(TestServer(create_app(self.router)))

    async def __aenter__(self) -> TestClient[Any, Any]:
        await self.client.start_server()
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        await self.router.aclose()


async def test_stats_are_computed_on_a_machine_that_booted_a_minute_ago(world, monkeypatch):
    """The monotonic clock counts from boot: a gateway started with the machine must not take
    "never computed" for "computed at 0.0, still fresh" and answer an empty body."""
    real, booted = time.monotonic, time.monotonic() - 60.0
    monkeypatch.setattr(time, "monotonic", lambda: real() - booted)  # a minute since boot
    async with ledgered(world) as gw:
        assert (await gw.post("/v1/chat/completions", json=chat_body())).status == 200
        for window in ("24h", "7d"):
            data = await (await gw.get("/api/stats", params={"window": window})).json()
            assert data["stats"]["requests"] == 1, window
