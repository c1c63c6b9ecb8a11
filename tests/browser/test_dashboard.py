"""The dashboard in a real headless Chromium, against a real `stellwerk serve` (issue 17).

Each test opens the page in a fresh browser context with the admin key (or a client key, or
none) in its sessionStorage, as a user who typed it into the key form would have, and fails on
any console error, uncaught exception, failed request or answer of 400 or more that it did not
provoke on purpose. The gateway runs in front of the fake upstreams; every fake answer reports
100 tokens, so budgets move by known amounts.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from playwright.async_api import Page, expect

from .conftest import REASONING_LIMIT, as_
from .harness import ADMIN_KEY, CLIENT_KEY

pytestmark = pytest.mark.asyncio(loop_scope="module")

API = ("/api/dashboard", "/api/stats", "/api/events")


def seconds(text: str) -> int:
    """`1h 59m 58s`, `4m 05s`, `12s` as seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([dhms])", text)
    assert parts, f"not a duration: {text!r}"
    return sum(int(n) * units[u] for n, u in parts)


async def billing_failure(world: Any, chat: Any, http: Any, gateway: Any) -> None:
    """OpenAI answers its real quota error (429 insufficient_quota): a billing cooldown of 2 h
    on its key, and the simple class falls back to Anthropic. An earlier test's is reset first."""
    reset = {"target": "openai"}
    url = f"{gateway.url}/api/cooldowns/reset"
    async with http.post(url, json=reset, headers=as_(ADMIN_KEY)) as response:
        assert response.status == 200
    openai = world.fakes["openai"]
    openai.push(openai.error("insufficient_quota"))
    response = await chat("auto:simple")
    assert response.status == 200
    assert response.headers["x-stellwerk-fallback"] == "openai/gpt-4o-mini: billing"


def openai_cooldowns(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in data["cooldowns"] if c["provider"] == "openai"]


async def test_the_page_loads_with_no_errors_and_shows_what_the_gateway_knows(
    open_page, gateway, api, http
):
    page, _ = await open_page()
    assert page.url == f"{gateway.url}/ui/"  # `/` redirects to the page
    await expect(page.locator("#mode")).to_have_text("auto")
    await expect(page.locator("#access")).to_have_text("admin")
    data = await api("/api/dashboard")
    names = await page.locator("#providers .provider strong").all_inner_texts()
    assert names == [p["name"] for p in data["providers"]]
    masked = await page.locator("#providers .keys code").all_inner_texts()
    assert masked == [c["key"] for p in data["providers"] for c in p["credentials"]]
    html = await page.content()
    assert not any(key in html for key in (ADMIN_KEY, CLIENT_KEY))  # nothing shows a key
    await expect(page.locator("#budgets .budget")).to_have_count(len(data["budgets"]))
    await expect(page.locator("#emergency")).to_be_enabled()
    async with http.get(f"{gateway.url}/ui/") as response:
        policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


async def test_without_a_key_the_page_asks_for_one_and_a_client_key_only_reads(open_page):
    page, watch = await open_page(None, allow=tuple((path, 401) for path in API), wait=False)
    dialog = page.locator("#key-dialog")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#key-why")).to_contain_text("needs a key")
    await page.fill("#key-input", CLIENT_KEY)
    await page.click("#key-save")
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#access")).to_have_text("read-only")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    for button in ("#emergency", "#reload", "#probe"):
        await expect(page.locator(button)).to_be_disabled()
        await expect(page.locator(button)).to_have_attribute("title", re.compile("admin key"))
    stored = await page.evaluate("sessionStorage.getItem('stellwerk.key')")
    assert stored == CLIENT_KEY


async def test_a_billing_failure_shows_its_cooldown_counting_down(
    open_page, world, chat, api, http, gateway
):
    page, _ = await open_page()
    await billing_failure(world, chat, http, gateway)
    [row] = openai_cooldowns(await api("/api/dashboard"))
    cooldown = page.locator(f'#cooldowns .cooldown[data-key="{row["key"]}"]')
    await expect(cooldown).to_be_visible()  # no reload: the decision triggers a refresh
    await expect(cooldown.locator(".reason")).to_have_text("billing")
    await expect(cooldown.locator(".text")).to_contain_text(row["text"])
    countdown = cooldown.locator(".countdown")
    first = seconds(await countdown.inner_text())
    assert 7200 - 60 < first <= 7200  # OpenAI's billing cooldown here: 2 h
    await asyncio.sleep(1.5)
    second = seconds(await countdown.inner_text())
    assert first - 3 <= second < first  # it falls by itself, once a second
    openai = page.locator('#providers .provider[data-name="openai"]')
    await expect(openai).to_have_attribute("data-health", "bad")


async def test_after_usage_the_budget_gauge_shows_the_right_percent(open_page, chat, api):
    before = await api("/api/dashboard")
    [budget] = [b for b in before["budgets"] if b["scope"] == "task:reasoning"]
    used = budget["tokens"]["used"]
    page, _ = await open_page()
    for _ in range(3):
        assert (await chat("auto:reasoning")).status == 200
    expected = (used + 300) * 100 // REASONING_LIMIT  # each answer: 100 tokens
    after = await api("/api/dashboard")
    [budget] = [b for b in after["budgets"] if b["scope"] == "task:reasoning"]
    assert budget["tokens"]["used"] == used + 300 and budget["percent"] == expected
    gauge = page.locator(f'#budgets .budget[data-name="{budget["name"]}"]')
    await expect(gauge.locator(".pct")).to_have_text(f"{expected}%")
    await expect(gauge.locator(".gauge")).to_have_attribute("aria-valuenow", str(expected))
    await expect(gauge).to_contain_text(f"{used + 300:,} of {REASONING_LIMIT:,} tokens")
    fill, track = (
        await gauge.locator(".fill").bounding_box(),
        await gauge.locator(".gauge").bounding_box(),
    )
    assert fill is not None and track is not None
    assert abs(fill["width"] / (track["width"] - 2) * 100 - expected) < 1  # drawn at its percent
    marks = gauge.locator(".mark")
    await expect(marks).to_have_count(2)  # warn and downgrade
    warn = await marks.nth(0).bounding_box()
    assert warn is not None and abs((warn["x"] + 1 - track["x"]) / track["width"] * 100 - 80) < 1.5


async def test_a_new_decision_appears_within_two_seconds_without_a_reload(open_page, chat):
    page, _ = await open_page()
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    response = await chat("auto:simple")
    answered = time.monotonic()
    request_id = response.headers["x-stellwerk-request-id"]
    row = page.locator(f'#decisions tr[data-request="{request_id}"]')
    await expect(row).to_be_visible(timeout=2000)
    assert time.monotonic() - answered < 2.0
    assert (
        await page.locator("#decisions tbody tr").first.get_attribute("data-request") == request_id
    )
    await expect(row.locator(".task")).to_have_text("simple")
    await expect(row.locator("td.model")).to_have_text(response.headers["x-stellwerk-model"])
    await expect(row.locator('td[data-label="tokens"]')).to_have_text("60 / 40")
    assert navigations == []


async def test_reset_clears_the_cooldown_and_a_client_key_is_refused(
    open_page, world, chat, api, gateway, http
):
    await billing_failure(world, chat, http, gateway)
    [row] = openai_cooldowns(await api("/api/dashboard"))
    url, body = f"{gateway.url}/api/cooldowns/reset", {"target": row["key"]}
    async with http.post(url, json=body, headers=as_(CLIENT_KEY)) as refused:
        assert refused.status == 403
        assert (await refused.json())["error"]["code"] == "admin_key_required"
    assert openai_cooldowns(await api("/api/dashboard")) == [row]  # still there

    reader, _ = await open_page(CLIENT_KEY)  # the page of a client key: no action to take
    cooldown = reader.locator(f'#cooldowns .cooldown[data-key="{row["key"]}"]')
    await expect(cooldown.locator("button.reset")).to_be_disabled()

    page, _ = await open_page()
    cooldown = page.locator(f'#cooldowns .cooldown[data-key="{row["key"]}"]')
    await cooldown.locator("button.reset").click()
    await expect(cooldown).to_have_count(0)
    await expect(page.locator(".toast.ok")).to_contain_text("reset")
    assert openai_cooldowns(await api("/api/dashboard")) == []
    status = await api("/api/status")
    assert not [c for c in status["cooldowns"] if c["key"] == row["key"]]


async def test_the_emergency_toggle_changes_the_mode_the_next_request_reports(
    open_page, chat, api, gateway, http
):
    page, _ = await open_page()
    button = page.locator("#emergency")
    try:
        await expect(button).to_have_text("Emergency on")
        await button.click()
        await expect(page.locator("#mode")).to_have_text("emergency")
        await expect(page.locator("#emergency-banner")).to_be_visible()
        await expect(page.locator("#emergency-text")).to_contain_text("since")
        await expect(button).to_have_text("Emergency off")
        response = await chat("auto:simple")
        assert response.headers["x-stellwerk-mode"] == "emergency"
        assert response.headers["x-stellwerk-model"].startswith("ollama/")
        assert (await api("/api/status"))["mode"] == "emergency"
        await button.click()
        await expect(page.locator("#mode")).to_have_text("auto")
        await expect(page.locator("#emergency-banner")).to_be_hidden()
        response = await chat("auto:simple")
        assert "x-stellwerk-mode" not in response.headers
        assert (await api("/api/status"))["mode"] == "auto"
    finally:
        off = {"on": False}  # never leave the module's gateway in emergency mode
        async with http.post(f"{gateway.url}/api/emergency", json=off, headers=as_(ADMIN_KEY)):
            pass


async def test_an_action_that_fails_shows_the_servers_message(open_page, gateway):
    page, _ = await open_page(allow=(("/api/config/reload", 400),))
    good = gateway.config.read_text()
    gateway.config.write_text(good.replace("openai/gpt-4o-mini", "opnai/gpt-4o-mini", 1))
    try:
        await page.click("#reload")
        toast = page.locator(".toast.error")
        await expect(toast).to_contain_text("the running config stays")
        await expect(toast).to_contain_text("opnai/gpt-4o-mini")
    finally:
        gateway.config.write_text(good)
    await page.click("#reload")
    await expect(page.locator(".toast.ok")).to_contain_text("Config reloaded")
    await expect(page.locator("#mode")).to_have_text("auto")


async def test_the_window_switch_shows_the_week(open_page):
    page, _ = await open_page()
    assert await page.locator("#chart rect.bar").count() >= 24  # hourly over 24 h
    async with page.expect_response(lambda r: "/api/stats?window=7d" in r.url) as answer:
        await page.click('[data-window="7d"]')
    week = await (await answer.value).json()
    assert week["series"]["bucket_s"] == 6 * 3600
    await expect(page.locator('[data-window="7d"]')).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#chart rect.bar")).to_have_count(len(week["series"]["buckets"]))
    await expect(page.locator("#bucket-label")).to_have_text("6 hours")
    requests = page.locator('#kpis [data-kpi="requests"] .value')
    await expect(requests).to_have_text(f"{week['stats']['requests']:,}")
    saved = week["stats"]["savings"]["saved_micros"]
    await expect(page.locator('#kpis [data-kpi="saved"] .value')).to_have_text(usd(saved))


def usd(micros: int) -> str:
    """Money as the page shows it: `$0.0123`; cents from $1, whole dollars from $100."""
    dollars = micros / 1e6
    if micros == 0:
        return "$0.00"
    digits = 0 if dollars >= 100 else 2 if dollars >= 1 else 4 if dollars >= 0.0001 else 6
    return f"${dollars:,.{digits}f}"


async def test_at_phone_width_one_column_and_nothing_overflows(open_page):
    page, _ = await open_page(width=390, height=844)
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    lefts = set()
    for card in ("#cooldowns-card", "#budgets-card", "#decisions-card", "#stats-card"):
        box = await page.locator(card).bounding_box()
        assert box is not None and box["width"] <= 390
        lefts.add(round(box["x"]))
    assert len(lefts) == 1  # one column


async def test_the_dark_scheme_is_dark(open_page):
    page, _ = await open_page(scheme="dark")
    assert await luminance(page, "body", "background-color") < 0.1
    assert await luminance(page, "body", "color") > 0.6
    await page.emulate_media(color_scheme="light")
    assert await luminance(page, "body", "background-color") > 0.8


async def luminance(page: Page, selector: str, prop: str) -> float:
    """The relative luminance (0 black .. 1 white) of a computed colour."""
    value = await page.eval_on_selector(
        selector, f"e => getComputedStyle(e).getPropertyValue('{prop}')"
    )
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", value)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b
