"""Screenshots of the dashboard, made by the browser the tests drive (`scripts/screenshots`).

Starts `stellwerk serve` in front of the fake upstreams with a week of routing history in its
ledger (shadow mode until 14 hours ago, auto mode since), sends live traffic through it (several
task classes, a fallback after a rate limit, a billing failure that leaves a cooldown), brings
three budgets to ok, warn and downgrade levels, and saves what Debian's Chromium shows:

    docs/img/dashboard-light.png   1280x800, light scheme
    docs/img/dashboard-dark.png    1280x800, dark scheme
    docs/img/dashboard-phone.png   390x844, light scheme

Deterministic apart from the clock: the history is drawn from a fixed seed.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from playwright.async_api import Page, async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.browser.harness: the gateway and browser of the tests

from tests.browser.harness import (  # noqa: E402
    ADMIN_KEY,
    CLIENT_KEY,
    Watch,
    chromium_missing,
    launch,
    start_gateway,
)

from stellwerk.budget import counter_key, window_of  # noqa: E402
from stellwerk.ledger.base import Row  # noqa: E402
from stellwerk.ledger.sqlite import SQLiteLedger  # noqa: E402
from stellwerk.policy import BudgetLimit, Policy  # noqa: E402
from stellwerk.state import SQLiteStore  # noqa: E402
from stellwerk.testing._server import Reply  # noqa: E402
from stellwerk.testing.world import FakeWorld  # noqa: E402
from stellwerk.types import Usage  # noqa: E402

OUT = ROOT / "docs" / "img"
HOUR = 3600.0
AUTO_SINCE = 14 * HOUR  # the history: shadow mode until this long ago, auto mode since
LIMITS = [  # (limit, the share of it used)
    (BudgetLimit("daily", tokens=2_000_000), 0.46),
    (BudgetLimit("daily", scope="provider:anthropic", micros=25_000_000), 0.84),
    (BudgetLimit("weekly", micros=150_000_000), 0.93),
]
CONFIG: dict[str, Any] = {
    "cooldowns": {"rate_limit": {"base": "4m"}, "probe": {"every": "0s"}},
    "budgets": {
        "limits": [
            {"window": "daily", "tokens": 2_000_000},
            {"window": "daily", "usd": 25, "scope": "provider:anthropic"},
            {"window": "weekly", "usd": 150},
        ]
    },
    "gateway": {"admin_keys": [ADMIN_KEY]},
}
# class -> (share of requests, input tokens, cache-read share, output tokens)
TRAFFIC = {
    "heartbeat": (0.42, 14_000, 0.93, 30),
    "simple": (0.22, 900, 0.0, 160),
    "complex": (0.14, 7_500, 0.55, 950),
    "code": (0.17, 18_000, 0.7, 1_400),
    "reasoning": (0.05, 2_500, 0.0, 2_600),
}
FAILURES = [("rate_limit", 5), ("overloaded", 2), ("server", 1), ("timeout", 1)]


def history(policy: Policy, now: float, rng: random.Random) -> list[Row]:
    """A week of requests, busier in working hours; routed by shadow mode (the default chain:
    everything on the premium primary), then by auto mode for the last 14 hours."""
    rows = []
    first = (now // HOUR - 7 * 24) * HOUR
    hour = first
    while hour < now // HOUR * HOUR:
        day = (hour // 86400 + 4) % 7  # 0: Monday
        clock = (hour % 86400) / HOUR
        busy = 6 + (28 if 8 <= clock < 19 else 0) * (0.35 if day >= 5 else 1.0)
        for _ in range(max(0, int(rng.gauss(busy, busy / 4)))):
            rows.append(request(policy, hour + rng.uniform(0, HOUR), now, rng))
        hour += HOUR
    return rows


def request(policy: Policy, ts: float, now: float, rng: random.Random) -> Row:
    task = rng.choices(list(TRAFFIC), [t[0] for t in TRAFFIC.values()])[0]
    _, tokens_in, cached, tokens_out = TRAFFIC[task]
    tokens_in = int(tokens_in * rng.uniform(0.6, 1.4))
    tokens_out = int(tokens_out * rng.uniform(0.5, 1.5))
    auto = policy.chain(task)  # type: ignore[arg-type]
    shadow = ts < now - AUTO_SINCE
    chain = policy.chain("complex") if shadow else auto  # shadow mode routes as off
    failures: tuple[tuple[str, str], ...] = ()
    answered = chain[0]
    if rng.random() < 0.04:
        failure = rng.choices([f for f, _ in FAILURES], [w for _, w in FAILURES])[0]
        failures, answered = ((chain[0], failure),), chain[1]
    spec = policy.models[answered]
    warm = not shadow and spec.provider in ("anthropic", "openai-codex")  # caches of auto's routes
    read = int(tokens_in * cached) if warm else 0
    usage = Usage(tokens_in, tokens_out, cache_read_tokens=read)
    return Row(
        ts=ts,
        request_id=f"req_{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}",
        client=rng.choice(["openai", "anthropic", "anthropic"]),
        task=task,
        source="rule",
        mode="shadow" if shadow else "auto",
        routed_as=task,
        shadow_first=auto[0] if shadow else None,
        answered_by=answered,
        model=answered,
        provider=spec.provider,
        upstream_model=answered.split("/", 1)[1],
        attempts=1 + len(failures),
        fallback=bool(failures),
        failures=failures,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        estimated=False,
        cost_micros=spec.cost_of(usage),
        latency_ms=rng.uniform(300, 4000),
        error=None,
        cache_read_tokens=read,
    )


async def live_traffic(world: FakeWorld, url: str, rng: random.Random) -> None:
    """Requests through the gateway: the page's newest decisions."""
    openai, anthropic = world.fakes["openai"], world.fakes["anthropic"]
    plan: list[tuple[str, Any]] = [
        ("auto:heartbeat", None),
        ("auto:code", None),
        ("auto:simple", None),
        ("auto:heartbeat", lambda: anthropic.push(429)),  # a rate limit: a fallback
        ("auto:complex", None),
        ("auto:simple", lambda: openai.push(openai.error("insufficient_quota"))),  # billing
        ("auto:reasoning", None),
        ("auto:code", None),
        ("auto:heartbeat", None),
        ("auto:simple", None),
        ("auto:complex", None),
        ("auto:heartbeat", None),
    ]
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for model, script in plan:
            _, tokens_in, _, tokens_out = TRAFFIC[model.partition(":")[2]]
            usage = (
                int(tokens_in * rng.uniform(0.6, 1.4)),
                int(tokens_out * rng.uniform(0.5, 1.5)),
            )
            for fake in world.fakes.values():
                fake.default = Reply.ok("Done.", usage=usage)
            if script is not None:
                script()
            path = "/v1/messages" if rng.random() < 0.5 else "/v1/chat/completions"
            body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            if path == "/v1/messages":
                body["max_tokens"] = 1024
            async with session.post(f"{url}{path}", json=body) as response:
                assert response.status == 200, await response.text()
            await asyncio.sleep(rng.uniform(0.05, 0.3))


async def fill_budgets(state: Path, policy: Policy, now: float) -> None:
    """Bring each budget to its share (on top of the live traffic's use), and leave one
    reservation in flight."""
    store = SQLiteStore(state)
    try:
        zone = ZoneInfo(policy.budgets.timezone)
        snapshot = await store.snapshot(now)
        for limit, share in LIMITS:
            window = window_of(limit.window, now, zone)
            key = counter_key(limit, window)
            used = snapshot.budgets.get(key)
            tokens = int((limit.tokens or 0) * share) - (used.tokens if used else 0)
            micros = int((limit.micros or 0) * share) - (used.micros if used else 0)
            keys = {key: window.end}
            reservation = await store.reserve(keys, max(tokens, 0), max(micros, 0), now, 60)
            await store.settle(reservation, max(tokens, 0), max(micros, 0), now)
            if limit.tokens:
                await store.reserve(keys, 38_000, 0, now, 900)  # a long request in flight
    finally:
        await store.close()


async def shoot(page: Page, url: str, name: str) -> None:
    await page.goto(f"{url}/ui/")
    await page.wait_for_selector("#live[data-state='live']")
    await page.wait_for_selector("#kpis .kpi")
    await page.wait_for_selector("#cooldowns .cooldown")
    await page.wait_for_timeout(2500)  # the arrival highlight fades; the countdowns tick
    await page.screenshot(path=str(OUT / f"dashboard-{name}.png"))
    print(f"wrote docs/img/dashboard-{name}.png")


async def main() -> None:
    if (why := chromium_missing()) is not None:
        sys.exit(why)
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(17)
    with tempfile.TemporaryDirectory(prefix="stellwerk-screenshots-") as tmp:
        directory = Path(tmp)
        async with FakeWorld() as world:
            policy = world.policy(CONFIG)
            now = time.time()
            ledger = SQLiteLedger(directory / "state" / "ledger.db")
            ledger.write(sorted(history(policy, now, rng), key=lambda r: r.ts))
            ledger.close()
            gateway = await start_gateway(world, directory, CONFIG)
            try:
                await live_traffic(world, gateway.url, rng)
                await fill_budgets(directory / "state" / "state.db", policy, now)
                async with async_playwright() as playwright:
                    browser = await launch(playwright)
                    shots = [
                        ("light", 1280, 800, "light"),
                        ("dark", 1280, 800, "dark"),
                        ("phone", 390, 844, "light"),
                    ]
                    for name, width, height, scheme in shots:
                        watch = Watch()
                        context = await browser.new_context(
                            viewport={"width": width, "height": height},
                            color_scheme=scheme,  # type: ignore[arg-type]
                        )
                        await context.add_init_script(
                            f"sessionStorage.setItem('stellwerk.key', {ADMIN_KEY!r})"
                        )
                        page = await context.new_page()
                        watch.attach(page)
                        await shoot(page, gateway.url, name)
                        problems = list(watch.problems)  # closing ends the page's requests
                        await context.close()
                        if problems:
                            sys.exit("the page had problems:\n" + "\n".join(problems))
                    await browser.close()
            finally:
                await gateway.stop()


if __name__ == "__main__":
    asyncio.run(main())
