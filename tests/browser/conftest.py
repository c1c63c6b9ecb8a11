"""Fixtures of the browser tests: one Chromium and one gateway per module, a fresh page per test.

Chromium missing: the tests are skipped here, and fail in CI (`$CI` set), where
`scripts/test-servers` installs it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from stellwerk.testing._server import Reply
from stellwerk.testing.world import FakeWorld

from .harness import ADMIN_KEY, CLIENT_KEY, Process, Watch, chromium_missing, launch, start_gateway

USAGE = (60, 40)  # every fake answer reports 100 tokens, so budgets move by known amounts
REASONING_LIMIT = 1000  # tokens a day for the reasoning class: only the budget test sends it
CONFIG: dict[str, Any] = {
    "stack": ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "ollama/qwen3-4b"],
    "tasks": {
        "simple": {"primary": "openai/gpt-4o-mini", "fallbacks": ["anthropic/claude-haiku-4-5"]},
        "reasoning": {"primary": "openai/o3-mini", "fallbacks": []},
    },
    # rate limits and server errors leave no cooldown behind; billing keeps OpenAI's 2 h
    "cooldowns": {
        "rate_limit": {"base": "0s", "max": "0s", "retry_after_cap": "0s"},
        "breaker": 0,
        "probe": {"every": "0s"},
    },
    "providers": {"openai": {"billing_cooldown": "2h"}, "anthropic": {"billing_cooldown": 0}},
    "budgets": {
        "limits": [
            {"window": "daily", "tokens": 1_000_000},
            {"window": "daily", "tokens": REASONING_LIMIT, "scope": "task:reasoning"},
        ]
    },
    "gateway": {"admin_keys": [ADMIN_KEY]},
}
Chat = Callable[..., Coroutine[Any, Any, aiohttp.ClientResponse]]
expect.set_options(timeout=10_000)  # a busy CI machine: the page refreshes every 5 s anyway


@pytest.fixture(scope="module")
def _chromium() -> None:
    if (why := chromium_missing()) is not None:
        if os.environ.get("CI"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(_chromium: None) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world() -> AsyncIterator[FakeWorld]:
    async with FakeWorld(default=Reply.ok("fine", usage=USAGE)) as w:
        yield w


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    world: FakeWorld, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Process]:
    process = await start_gateway(world, tmp_path_factory.mktemp("gateway"), CONFIG)
    yield process
    assert await process.stop() == 0


@pytest.fixture(autouse=True)
def _clean_scripts(world: FakeWorld) -> None:
    for fake in world.fakes.values():
        fake.script.clear()
        fake.received.clear()


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def as_(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest_asyncio.fixture(loop_scope="module")
async def chat(gateway: Process, http: aiohttp.ClientSession) -> Chat:
    """POST one chat request as a client; returns the answered response (body read)."""

    async def send(model: str = "auto:simple", **headers: str) -> aiohttp.ClientResponse:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        response = await http.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers={**as_(CLIENT_KEY), **headers}
        )
        await response.read()
        return response

    return send


@pytest_asyncio.fixture(loop_scope="module")
async def api(gateway: Process, http: aiohttp.ClientSession) -> Callable[..., Any]:
    """GET a dashboard API path as the admin; the JSON."""

    async def get(path: str) -> Any:
        async with http.get(f"{gateway.url}{path}", headers=as_(ADMIN_KEY)) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    return get


class Open:
    """Opens the dashboard in a fresh context (own sessionStorage), watched for errors."""

    def __init__(self, browser: Browser, gateway: Process) -> None:
        self.browser, self.gateway = browser, gateway
        self.contexts: list[Any] = []
        self.watches: list[Watch] = []

    async def __call__(
        self,
        key: str | None = ADMIN_KEY,
        *,
        width: int = 1280,
        height: int = 800,
        scheme: str = "light",
        allow: tuple[tuple[str, int], ...] = (),
        wait: bool = True,
    ) -> tuple[Page, Watch]:
        context = await self.browser.new_context(
            viewport={"width": width, "height": height},
            color_scheme=scheme,  # type: ignore[arg-type]
        )
        self.contexts.append(context)
        if key is not None:
            await context.add_init_script(f"sessionStorage.setItem('stellwerk.key', {key!r})")
        page = await context.new_page()
        page.set_default_timeout(10_000)
        watch = Watch().attach(page)
        for path, status in allow:
            watch.allow(path, status)
        self.watches.append(watch)
        await page.goto(f"{self.gateway.url}/")
        if wait:
            await page.wait_for_selector("#live[data-state='live']")
            await page.wait_for_selector("#kpis .kpi")
            await page.wait_for_selector("#providers .provider")
        return page, watch

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest_asyncio.fixture(loop_scope="module")
async def open_page(browser: Browser, gateway: Process) -> AsyncIterator[Open]:
    """`page, watch = await open_page(key)`; each page's problems fail the test at its end."""
    opener = Open(browser, gateway)
    yield opener
    problems = [p for watch in opener.watches for p in watch.problems]
    await opener.close()  # closing ends the pages' requests: judged before
    assert not problems, "\n".join(problems)
