"""Stellwerk's own work per request, measured in one process where timing is steady.

    .venv/bin/python bench/hotpath.py [--requests N] [--rounds R] [--profile PATH] [--only NAME]

`overhead.py` measures real processes and wall-clock latency, which a busy machine blurs. This
driver runs everything in one event loop (the lean fake upstream of `upstream.py`, the bare proxy
of `passthrough.py`, the real gateway app with the routed config of the overhead benchmark:
automatic routing, a chain whose first key is cooling down, budgets and the SQLite ledger) and
pushes the same requests through each path in turn, one at a time, counting the process's CPU
time. The direct path (client and upstream only) is the baseline: what a path costs above it is
its own work, and the gateway's against the bare proxy's is the ratio issue 18 sets targets for.
Requests are the short prompt and, when `../shared/clients/openclaw/captures` exists next to the
repository, the captured OpenClaw agent requests (`captures.py`).

`--profile PATH` writes a cProfile of the gateway path (one request kind: `--only`) for
`python -m pstats` or snakeviz; `--requests` and `--rounds` trade time for steadiness.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import captures
import gateways
import passthrough
import upstream
import yaml
from aiohttp import web

Send = Callable[[], Awaitable[None]]


async def start_upstream() -> str:
    lean = upstream.Upstream(8, 0.0)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: upstream._Connection(lean), "127.0.0.1", 0)
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def serve(app: web.Application) -> tuple[str, web.AppRunner]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return f"http://127.0.0.1:{port}", runner


async def start_floor(upstream_url: str) -> tuple[str, web.AppRunner, aiohttp.ClientSession]:
    app = web.Application()
    app[passthrough.UPSTREAM] = upstream_url
    app[passthrough.CLIENT] = client = aiohttp.ClientSession()
    app.router.add_post("/{path:.*}", passthrough.forward)
    url, runner = await serve(app)
    return url, runner, client


async def start_gateway(upstream_url: str, workdir: Path) -> tuple[str, web.AppRunner, Any]:
    sys.path.insert(0, str(gateways.SOURCE[0]))
    from stellwerk.classify import preload
    from stellwerk.router import Router
    from stellwerk.server import create_app

    config, _, _ = gateways.with_optional(gateways.routed_config(upstream_url))
    path = workdir / "stellwerk.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    os.environ["STELLWERK_STATE_DIR"] = str(workdir / "state")
    router = Router.from_config(path)
    preload()
    url, runner = await serve(create_app(router))
    return url, runner, router


PATHS = {  # name: (the model named in OpenAI requests, in Anthropic requests)
    "direct": ("gpt-4o-mini", "claude-haiku-4-5"),
    "passthrough": ("gpt-4o-mini", "claude-haiku-4-5"),
    "stellwerk+routing": ("auto", "auto"),
    "stellwerk, model named": ("openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"),
}


def sender(client: aiohttp.ClientSession, base: str, kind: captures.Kind, path: str) -> Send:
    url = base + (captures.ANTHROPIC if kind.anthropic else captures.OPENAI)
    headers = captures.headers(gateways.KEY, kind.anthropic)
    data = captures.encode(captures.body(kind, PATHS[path][kind.anthropic]))

    async def send() -> None:
        async with client.post(url, data=data, headers=headers) as answer:
            await answer.read()
            if answer.status != 200:
                raise RuntimeError(f"{url}: {answer.status} {(await answer.text())[:300]}")

    return send


async def cpu_per_request(send: Send, count: int) -> float:
    """CPU µs per request over `count` sequential requests."""
    start = time.process_time()
    for _ in range(count):
        await send()
    return (time.process_time() - start) * 1e6 / count


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="stellwerk-hotpath-"))
    fake = await start_upstream()
    floor, floor_runner, floor_client = await start_floor(fake)
    gateway, gateway_runner, router = await start_gateway(fake, workdir)
    bases = dict(zip(PATHS, (fake, floor, gateway, gateway), strict=True))
    kinds = [k for k in captures.KINDS if not args.only or k.name == args.only]
    if (missing := captures.available()) is not None:
        print(missing, file=sys.stderr)
        kinds = [k for k in kinds if k.capture is None]
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as client:
        for kind in kinds:
            sends = {name: sender(client, bases[name], kind, name) for name in PATHS}
            for send in sends.values():
                for _ in range(20):  # warm: connections, caches, the cooldown of the first key
                    await send()
            if args.profile:
                await profile(sends[args.path], args, kind.name)
                continue
            rounds: dict[str, list[float]] = {name: [] for name in sends}
            for _ in range(args.rounds):
                for name, send in sends.items():
                    rounds[name].append(await cpu_per_request(send, args.requests))
            out[kind.name] = summary(rounds)
            print(line(kind.name, out[kind.name]), flush=True)
    await gateway_runner.cleanup()
    await router.aclose()
    await floor_runner.cleanup()
    await floor_client.close()
    return out


async def profile(send: Send, args: argparse.Namespace, name: str) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.requests):
        await send()
    profiler.disable()
    target = Path(args.profile)
    target = target.with_name(f"{target.stem}-{name}{target.suffix or '.prof'}")
    profiler.dump_stats(target)
    print(f"{name}: profile of {args.requests} requests in {target}", flush=True)


def summary(rounds: dict[str, list[float]]) -> dict[str, float]:
    """CPU µs per request of the direct path; above it, each path's own work, and the gateway's
    as a multiple of the bare proxy's. Each path's best round: other work on a shared machine
    only ever adds to a round (cache misses, a core taken away)."""
    cpu = {name: min(values) for name, values in rounds.items()}
    out = {"direct_us": cpu["direct"]}
    for name in list(PATHS)[1:]:
        out[f"{name} us"] = cpu[name] - cpu["direct"]
    floor = out["passthrough us"]
    for name in list(PATHS)[2:]:
        out[f"{name} x"] = out[f"{name} us"] / floor if floor > 0 else 0.0
    return out


def line(name: str, figures: dict[str, float]) -> str:
    shown = [f"{name:<24} direct {figures['direct_us']:6.0f} µs", "above it:"]
    for path in list(PATHS)[1:]:
        ratio = f" ({figures[f'{path} x']:.2f}×)" if f"{path} x" in figures else ""
        shown.append(f"{path} {figures[f'{path} us']:5.0f}{ratio}")
    return "  ".join(shown)


def _uvloop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stellwerk's own CPU per request, in-process")
    parser.add_argument("--requests", type=int, default=300, help="per path, round and kind")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", help="one request kind (e.g. agent_auto)")
    parser.add_argument("--profile", help="write a cProfile of one path here (--path)")
    parser.add_argument("--path", default="stellwerk+routing", choices=list(PATHS)[1:])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--source", type=Path, help="measure this src/ tree instead of ./src")
    args = parser.parse_args(argv)
    if args.source:
        gateways.SOURCE[0] = args.source.resolve()
    with asyncio.Runner(loop_factory=_uvloop()) as runner:  # the loop `stellwerk serve` runs on
        result = runner.run(measure(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
