"""Stalls: the slow requests of a gateway at one request at a time, and how they are spaced.

    .venv/bin/python bench/stalls.py [--before REV] [--requests N] [--rounds R]

The overhead benchmark's p99 at c=1 moves with a shared VM's speed. What a user notices is a
request that waited for something else the process did at that moment: a garbage collection, a
WAL checkpoint inside a commit, a thread holding the GIL. This driver sends requests one at a
time (the short prompt, `model: auto`, the routed config of the overhead benchmark: budgets and
the ledger on) to `stellwerk serve` and to the bare proxy, and prints per path the p50, p99 and
slowest request, how many took more than three times the median (a count, steadier than the p99
when the machine's speed drifts), and the median spacing between those: a spacing that repeats
names a periodic cause (the ledger's flush interval, a checkpoint every so many commits).

With `--before REV` that tree runs beside the current one, the paths taking turns round by
round. The driver's own garbage collector is frozen and rarely runs, so the client's pauses are
not counted as the gateway's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import captures
import gateways
import load
from overhead import start_passthrough, start_upstream
from versus import export

ROOT = Path(__file__).resolve().parents[1]
SLOW = 3.0  # a request is slow above this multiple of its path's median


async def run(before: Path | None, requests: int, rounds: int, work: Path) -> None:
    upstream = await start_upstream(work, 1.0)
    config, _, _ = gateways.with_optional(gateways.routed_config(upstream.url))
    paths = {"passthrough": await start_passthrough(upstream.url, work)}
    trees = [("before", before)] if before is not None else []
    for name, source in [*trees, ("after" if before else "stellwerk", ROOT / "src")]:
        gateways.SOURCE[0] = source
        paths[name] = await gateways.start_stellwerk(name, config, work)
    kind = captures.KINDS[0]  # the short prompt
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    try:
        async with load.session(1) as client:
            for number in range(rounds):
                print(f"round {number + 1} of {rounds} ...", flush=True)
                for name, process in paths.items():
                    model = "gpt-4o-mini" if name == "passthrough" else "auto"
                    body = captures.encode(captures.body(kind, model))
                    url = process.url + captures.OPENAI
                    headers = captures.headers(gateways.KEY, False)
                    for _ in range(100):  # warm: connections, caches
                        await _send(client, url, body, headers)
                    timings[name] += await _timed(client, url, body, headers, requests)
    finally:
        for process in paths.values():
            process.stop()
        upstream.stop()
    print(
        f"\n{'path':<12} {'p50':>6} {'p99':>6} {'max':>6}  {'slow':>5}  {'spacing':>8}"
        f"   (ms; slow: over {SLOW:.0f}x the median, per {requests:,} requests)"
    )
    for name, samples in timings.items():
        print(_line(name, samples, rounds))


async def _send(
    client: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> None:
    async with client.post(url, data=body, headers=headers) as answer:
        await answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{url}: {answer.status} {(await answer.text())[:300]}")


async def _timed(
    client: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], count: int
) -> list[tuple[float, float]]:
    """(when it started in s, how long it took in ms) of `count` requests one after the other."""
    out = []
    for _ in range(count):
        start = time.perf_counter()
        await _send(client, url, body, headers)
        out.append((start, (time.perf_counter() - start) * 1000))
    return out


def _line(name: str, samples: list[tuple[float, float]], rounds: int) -> str:
    latencies = [ms for _, ms in samples]
    median = statistics.median(latencies)
    slow = [at for at, ms in samples if ms > SLOW * median]
    gaps = [b - a for a, b in zip(slow, slow[1:], strict=False) if b - a < 5.0]
    spacing = f"{statistics.median(gaps) * 1000:6.0f} ms" if gaps else "       -"
    p99, worst = load.percentile(latencies, 99) or 0.0, max(latencies)
    return f"{name:<12} {median:6.2f} {p99:6.2f} {worst:6.1f}  {len(slow) / rounds:5.1f}  {spacing}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a git revision to run beside the current tree")
    parser.add_argument("--requests", type=int, default=4000, help="per path and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 50)
    with tempfile.TemporaryDirectory() as tmp:
        before = export(args.before, Path(tmp)) if args.before else None
        asyncio.run(run(before, args.requests, args.rounds, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
