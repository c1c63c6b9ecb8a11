"""The load generator and the process probes of the overhead benchmark.

Load comes from one aiohttp client (the fastest Python client measured, so the generator costs
little next to what it measures), on loopback, always bounded by a request count and, for the
throughput phase, by a duration as well. Each phase returns plain numbers; `overhead.py` turns
them into the table. Process figures come from /proc: CPU time (utime + stime, in clock ticks)
and resident memory (VmRSS) of a process and all its descendants, so `--workers N` counts whole.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Endpoint:
    """One URL to load, with the body and headers every request sends."""

    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Samples:
    """Latencies (ms) of the requests of one phase, the failures, and the wall time (s)."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    first_error: str = ""

    def add(self, other: Samples) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.first_error = self.first_error or other.first_error

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.latencies) + self.errors,
            "errors": self.errors,
            "p50_ms": percentile(self.latencies, 50),
            "p99_ms": percentile(self.latencies, 99),
            "mean_ms": statistics.fmean(self.latencies) if self.latencies else None,
            "rps": len(self.latencies) / self.elapsed if self.elapsed else None,
            **({"first_error": self.first_error} if self.first_error else {}),
        }


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def session(concurrency: int) -> aiohttp.ClientSession:
    """A client session with exactly `concurrency` keep-alive connections."""
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def _one(client: aiohttp.ClientSession, endpoint: Endpoint, samples: Samples) -> None:
    start = time.perf_counter()
    try:
        async with client.post(endpoint.url, data=endpoint.body, headers=endpoint.headers) as r:
            body = await r.read()
            if r.status != 200:
                samples.errors += 1
                samples.first_error = samples.first_error or f"{r.status}: {body[:200]!r}"
                return
    except (aiohttp.ClientError, TimeoutError) as exc:
        samples.errors += 1
        samples.first_error = samples.first_error or repr(exc)
        return
    samples.latencies.append((time.perf_counter() - start) * 1000)


async def run(
    endpoint: Endpoint,
    requests: int,
    concurrency: int,
    duration: float | None = None,
    into: Samples | None = None,
) -> Samples:
    """`requests` requests (fewer if `duration` seconds pass first), `concurrency` at a time;
    added to `into` when given (its `elapsed` then sums the runs)."""
    samples = Samples()
    left = [requests]
    deadline = time.perf_counter() + duration if duration else None

    async def worker(client: aiohttp.ClientSession) -> None:
        while left[0] > 0 and (deadline is None or time.perf_counter() < deadline):
            left[0] -= 1
            await _one(client, endpoint, samples)

    async with session(concurrency) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        samples.elapsed = time.perf_counter() - start
    if into is not None:
        into.add(samples)
        return into
    return samples


@dataclass
class StreamSamples:
    """Per stream: time to the first body byte, to the end, and between the first and last
    body read (about the upstream's own spread when chunks are relayed as they arrive)."""

    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    spread: list[float] = field(default_factory=list)
    reads: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.total) + self.errors,
            "errors": self.errors,
            "ttfb_p50_ms": percentile(self.ttfb, 50),
            "ttfb_p99_ms": percentile(self.ttfb, 99),
            "total_p50_ms": percentile(self.total, 50),
            "total_p99_ms": percentile(self.total, 99),
            "spread_p50_ms": percentile(self.spread, 50),
            "reads_p50": percentile([float(r) for r in self.reads], 50),
            **({"first_error": self.first_error} if self.first_error else {}),
        }


async def streams(
    endpoint: Endpoint,
    requests: int,
    duration: float | None = None,
    into: StreamSamples | None = None,
) -> StreamSamples:
    """`requests` streaming requests one at a time (fewer if `duration` seconds pass first)."""
    samples = into if into is not None else StreamSamples()
    deadline = time.perf_counter() + duration if duration else None
    async with session(1) as client:
        for _ in range(requests):
            if deadline is not None and time.perf_counter() > deadline:
                break
            await _one_stream(client, endpoint, samples)
    return samples


async def _one_stream(
    client: aiohttp.ClientSession, endpoint: Endpoint, samples: StreamSamples
) -> None:
    start = time.perf_counter()
    first = last = 0.0
    reads = 0
    try:
        async with client.post(endpoint.url, data=endpoint.body, headers=endpoint.headers) as r:
            if r.status != 200:
                samples.errors += 1
                samples.first_error = samples.first_error or f"{r.status}: {await r.read()!r}"
                return
            async for _ in r.content.iter_any():
                last = time.perf_counter()
                first = first or last
                reads += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        samples.errors += 1
        samples.first_error = samples.first_error or repr(exc)
        return
    samples.ttfb.append((first - start) * 1000)
    samples.total.append((last - start) * 1000)
    samples.spread.append((last - first) * 1000)
    samples.reads.append(reads)


async def wait_healthy(url: str, timeout: float, alive: Callable[[], bool]) -> float | None:
    """Seconds until `url` answers 200 (polled every 5 ms), None on timeout or process exit."""
    start = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as client:
        while time.perf_counter() - start < timeout:
            if not alive():
                return None
            try:
                async with client.get(url) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            await asyncio.sleep(0.005)
    return None


# -- /proc -----------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd on (state, ppid, ...)


def tree(pid: int) -> list[int]:
    """`pid` and all its living descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` and its descendants."""
    total = 0
    for each in tree(pid):
        try:
            fields = _stat(each)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` and its descendants (shared pages counted in each)."""
    total = 0
    for each in tree(pid):
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


async def sample_rss(pid: int, during: Awaitable[Any], every: float = 0.1) -> tuple[Any, float]:
    """Run `during`, sampling RSS meanwhile; its result and the peak RSS (MiB)."""
    peak = rss_mib(pid)
    task = asyncio.ensure_future(during)
    while not task.done():
        await asyncio.wait([task], timeout=every)
        peak = max(peak, rss_mib(pid))
    return task.result(), peak
