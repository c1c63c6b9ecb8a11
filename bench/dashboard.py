"""What the dashboard costs: its data endpoints' server time, and an open page's effect on requests.

    .venv/bin/python bench/dashboard.py [--smoke]

1. Server time of the page's endpoints, in process (the handler called on a mocked request, no
   HTTP): `/api/dashboard` with 100 cooldowns and 20 budgets on the memory and SQLite state
   stores, `/api/stats` from its cache and computed afresh over a day of ledger rows, with
   `/healthz` and `/api/status` as the baselines measured in the same run.
2. The request path with a page open: `stellwerk serve` (routing, budgets and the SQLite ledger
   on, the overhead benchmark's routed config) in front of the fake upstream, loaded at c=1 and
   c=32, alternating rounds without and with two open pages. A page here is what the real one
   does, faster: the decision feed held open, `/api/dashboard` every second and `/api/stats`
   every 5 s (the page itself asks every 5 s and 30 s). Reported: p50 at c=1, throughput at c=32
   and the gateway's CPU per request, each as a ratio of with-pages to without.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import gateways
import load
from aiohttp.test_utils import make_mocked_request
from overhead import start_upstream

from stellwerk.failures import FailureClass
from stellwerk.ledger import Ledger
from stellwerk.ledger.base import Row
from stellwerk.ledger.memory import MemoryLedger
from stellwerk.router import Router
from stellwerk.server import create_app
from stellwerk.server import dashboard as ui
from stellwerk.server.app import api_status, healthz
from stellwerk.state import MemoryStore, SQLiteStore, StateStore
from stellwerk.testing.world import FakeWorld

COOLDOWNS = 100
BUDGETS = 20


def budgets_config() -> dict[str, Any]:
    windows = ("daily", "weekly")
    limits = [{"window": windows[i % 2], "tokens": 10**6 + i} for i in range(BUDGETS)]
    return {"budgets": {"limits": limits}}


async def fill(store: StateStore, router: Router, now: float) -> None:
    for i in range(COOLDOWNS):
        reason = (FailureClass.RATE_LIMIT, FailureClass.BILLING, FailureClass.OVERLOADED)[i % 3]
        await store.strike(f"cred:openai#{i + 1}", reason, now, lambda _: 3600.0, f"detail {i}")
    plan = router.policy.budgets
    assert len(plan.limits) == BUDGETS, len(plan.limits)


async def timed(call: Callable[[], Awaitable[Any]], count: int) -> tuple[float, float]:
    """p50 and p99 of `call` in microseconds."""
    for _ in range(count // 10):
        await call()
    spans = []
    for _ in range(count):
        t0 = time.perf_counter()
        await call()
        spans.append(time.perf_counter() - t0)
    spans.sort()
    return spans[len(spans) // 2] * 1e6, spans[int(len(spans) * 0.99)] * 1e6


async def server_time(count: int, rows: int) -> list[tuple[str, float, float]]:
    results: list[tuple[str, float, float]] = []
    async with FakeWorld() as world:
        with tempfile.TemporaryDirectory() as tmp:
            for name, store in (
                ("memory", MemoryStore()),
                ("sqlite", SQLiteStore(Path(tmp) / "state.db")),
            ):
                ledger = Ledger(MemoryLedger())
                router = Router(world.policy(budgets_config()), store, ledger=ledger)
                app = create_app(router)
                await fill(store, router, time.time())

                def request(path: str, app: Any = app) -> Any:
                    return make_mocked_request("GET", path, app=app, headers={"host": "127.0.0.1"})

                for label, handler, path in (
                    ("/healthz (baseline)", healthz, "/healthz"),
                    ("/api/status", api_status, "/api/status"),
                    ("/api/dashboard", ui.api_dashboard, "/api/dashboard"),
                ):
                    mocked = request(path)  # made once: a mocked request costs more than a handler
                    p50, p99 = await timed(lambda h=handler, r=mocked: h(r), count)
                    results.append((f"{label} [{name}]", p50, p99))
                if name == "memory":
                    await add_rows(ledger, rows)
                    fresh = request("/api/stats?window=24h")
                    t0 = time.perf_counter()
                    await ui.api_stats(fresh)
                    cold = (time.perf_counter() - t0) * 1e6
                    results.append((f"/api/stats 24h computed ({rows:,} rows)", cold, cold))
                    mocked = request("/api/stats?window=24h")
                    p50, p99 = await timed(lambda r=mocked: ui.api_stats(r), count)
                    results.append(("/api/stats 24h from its cache", p50, p99))
                await router.aclose()
    return results


async def add_rows(ledger: Ledger, count: int) -> None:
    """A day of answered decisions in the ledger, spread over the last 24 hours."""
    now = time.time()
    tasks = ("heartbeat", "simple", "complex", "code", "reasoning")
    models = ("anthropic/claude-haiku-4-5", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-0")
    rows = [
        Row(
            ts=now - i * 86400 / count,
            request_id=f"r{i}",
            client="openai",
            task=tasks[i % 5],
            source="rule",
            mode="auto",
            routed_as=tasks[i % 5],
            shadow_first=None,
            answered_by=models[i % 3],
            model=models[i % 3],
            provider=models[i % 3].split("/")[0],
            upstream_model=None,
            attempts=1 + (i % 7 == 0),
            fallback=i % 7 == 0,
            failures=(("openai/gpt-4o", "rate_limit"),) if i % 7 == 0 else (),
            input_tokens=20_000,
            output_tokens=300,
            estimated=False,
            cost_micros=1_000 + i % 5000,
            latency_ms=800.0,
            error=None,
            cache_read_tokens=15_000,
        )
        for i in range(count)
    ]
    await asyncio.to_thread(ledger.backend.write, rows)


# -- the request path with a page open -------------------------------------------------------


async def page(url: str, stop: asyncio.Event) -> None:
    """One open dashboard page, polling faster than the real one."""
    async with aiohttp.ClientSession() as client:

        async def feed() -> None:
            async with client.get(f"{url}/api/events") as response:
                async for _ in response.content.iter_any():
                    if stop.is_set():
                        return

        async def poll() -> None:
            tick = 0
            while not stop.is_set():
                async with client.get(f"{url}/api/dashboard") as r:
                    await r.read()
                if tick % 5 == 0:
                    async with client.get(f"{url}/api/stats?window=24h") as r:
                        await r.read()
                tick += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

        reader = asyncio.create_task(feed())
        await poll()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def request_path(rounds: int, requests: int, workdir: Path) -> dict[str, Any]:
    upstream = await start_upstream(workdir, 1.0)
    config, _, _ = gateways.with_optional(gateways.routed_config(upstream.url))
    gateway = await gateways.start_stellwerk("stellwerk", config, workdir)
    body = json.dumps(
        {"model": "auto", "messages": [{"role": "user", "content": "What is 2+2?"}]}
    ).encode()
    endpoint = load.Endpoint(
        f"{gateway.url}/v1/chat/completions", body, {"content-type": "application/json"}
    )
    figures: dict[str, dict[str, list[float]]] = {
        side: {"p50_c1": [], "rps_c32": [], "cpu_ms": []} for side in ("without", "with")
    }
    try:
        await load.run(endpoint, requests // 4, 8)  # warm up
        for _ in range(rounds):
            for side in ("without", "with"):
                stop = asyncio.Event()
                pages = [asyncio.create_task(page(gateway.url, stop)) for _ in range(2)]
                if side == "without":
                    stop.set()
                await asyncio.sleep(0.3)
                one = await load.run(endpoint, requests // 4, 1)
                cpu0 = load.cpu_seconds(gateway.pid)
                many = await load.run(endpoint, requests, 32, duration=10.0)
                cpu = load.cpu_seconds(gateway.pid) - cpu0
                stop.set()
                await asyncio.gather(*pages)
                done = len(many.latencies)
                figures[side]["p50_c1"].append(load.percentile(one.latencies, 50) or 0.0)
                figures[side]["rps_c32"].append(done / many.elapsed if many.elapsed else 0.0)
                figures[side]["cpu_ms"].append(cpu * 1000 / done if done else 0.0)
                if one.errors or many.errors:
                    print(f"  errors ({side}): {one.first_error or many.first_error}")
    finally:
        gateway.stop()
        upstream.stop()
    return {
        side: {k: statistics.median(v) for k, v in values.items()}
        for side, values in figures.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds, tiny counts")
    args = parser.parse_args(argv)
    count, rows, rounds, requests = (50, 200, 1, 200) if args.smoke else (2000, 20000, 3, 4000)

    print(f"server time, in process ({COOLDOWNS} cooldowns, {BUDGETS} budgets), µs:")
    for label, p50, p99 in asyncio.run(server_time(count, rows)):
        print(f"  {label:<44} p50 {p50:8.1f}   p99 {p99:8.1f}")
    print("the request path without and with two open pages (routing, budgets, ledger on):")
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(request_path(rounds, requests, Path(tmp)))
    without, with_ = result["without"], result["with"]
    for key, label, unit in (
        ("p50_c1", "p50 at c=1", "ms"),
        ("rps_c32", "throughput at c=32", "req/s"),
        ("cpu_ms", "CPU per request", "ms"),
    ):
        ratio = with_[key] / without[key] if without[key] else float("nan")
        print(
            f"  {label:<20} without {without[key]:9.3f} {unit:<5} with {with_[key]:9.3f}"
            f" {unit:<5} ratio {ratio:5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
