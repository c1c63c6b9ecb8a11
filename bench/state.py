"""How long `snapshot()` takes per request on each state backend (memory, SQLite, Redis).

Routing reads one snapshot per request, so this is the price of a backend on the hot path. Each
backend is filled with some cooldowns, budget counters and reservations in flight, then
`snapshot()` is timed back to back. Redis runs as a throwaway redis-server on loopback
(`stellwerk.testing.servers`; `bash scripts/test-servers` installs it).

    .venv/bin/python bench/state.py            # p50 and p99 in microseconds, per backend and size
    .venv/bin/python bench/state.py --count 500
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from stellwerk.failures import FailureClass
from stellwerk.state import MemoryStore, SQLiteStore, StateStore
from stellwerk.state.redis import RedisStore
from stellwerk.testing.servers import RedisServer

SIZES = [(0, 0, 0), (20, 3, 5), (200, 3, 20)]  # cooldowns, budget counters, reservations


async def fill(store: StateStore, now: float, cooldowns: int, counters: int, holds: int) -> None:
    for i in range(cooldowns):
        await store.strike(f"cred:p{i}#1", FailureClass.RATE_LIMIT, now, lambda _: 3600.0)
    keys = {f"daily:bench|scope{i}": now + 86400 for i in range(counters)}
    if keys:
        for _ in range(holds):
            await store.reserve(keys, 100, 100, now, 600)
        rid = await store.reserve(keys, 1, 1, now, 600)
        await store.settle(rid, 1, 1, now)


async def timed(
    store: StateStore, now: float, count: int, writer: StateStore | None = None
) -> tuple[float, float]:
    """p50 and p99 of `snapshot()`; with `writer`, each one follows a write by another store."""
    for _ in range(count // 10):
        await store.snapshot(now)
    spans = []
    for _ in range(count):
        if writer is not None:
            await writer.set_emergency(len(spans) % 2 == 0, now)
        t0 = time.perf_counter()
        await store.snapshot(now)
        spans.append(time.perf_counter() - t0)
    spans.sort()
    return spans[len(spans) // 2] * 1e6, spans[int(len(spans) * 0.99)] * 1e6


async def main(count: int) -> None:
    now = time.time()
    server = RedisServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i, size in enumerate(SIZES):
                memory, path, url = MemoryStore(), Path(tmp) / f"s{i}.db", server.url
                pairs: dict[str, tuple[StateStore, StateStore]] = {  # (reader, writer)
                    "memory": (memory, memory),
                    "sqlite": (SQLiteStore(path), SQLiteStore(path)),
                    "redis": (RedisStore(url, prefix=f"b{i}:"), RedisStore(url, prefix=f"b{i}:")),
                }
                for name, (store, writer) in pairs.items():
                    await fill(store, now, *size)
                    same = await timed(store, now, count)
                    changed = await timed(store, now, count, writer)
                    print(
                        f"{name:<7} cooldowns={size[0]:<4} counters={size[1]} holds={size[2]:<3}"
                        f"  unchanged p50 {same[0]:5.0f} p99 {same[1]:5.0f} us"
                        f"  after a write p50 {changed[0]:5.0f} p99 {changed[1]:5.0f} us"
                    )
                    await store.close()
                    if writer is not store:
                        await writer.close()
    finally:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="snapshots timed per case")
    asyncio.run(main(parser.parse_args().count))
