"""What the gateway costs on top of the model call it routes, measured in one run.

    .venv/bin/python bench/overhead.py [--smoke | --long] [--peer litellm] [--workers N]

One fast fake upstream (`upstream.py`, OpenAI and Anthropic, plain and streaming) serves every
path, so only what stands between the client and the fake differs:

- `direct`: client → fake; the baseline every other column is compared with;
- `passthrough`: client → a bare aiohttp proxy (`passthrough.py`) → fake: the floor of the HTTP
  stack the gateway is built on, so what is left above it is Stellwerk's own work;
- `stellwerk`: client → `stellwerk serve` (a real process) → fake, the model named explicitly;
- `stellwerk+routing`: the same with the routing work on: `model: auto` (classification), a chain
  of three whose first key is cooling down (the plan skips it) and whose second answers, budgets
  and the ledger (each where the version under test has it);
- `stellwerk+failover`: the same, but the second target answers a fast 503 on every request, so
  every request fails over once: two upstream calls, a strike, a released reservation;
- `litellm` (`--peer litellm`): the LiteLLM proxy in its own throwaway venv, default settings.

Every path is started first (start-up to healthy and idle RSS are taken then); the phases then run
in rounds, each phase on every path in turn, so a burst of load from elsewhere on a shared machine
hits all paths alike instead of one. Phases: latency at concurrency 1 and 32, throughput at 64 with
the process's CPU time per request and peak RSS, streams (time to the first byte, total, and the
spread between the first and last read, which shows chunks are relayed as they arrive), and the
Anthropic protocol where a path speaks it. Then what agents send (`captures.py`: real OpenClaw
requests of ~60 KB, read from `../shared/clients/openclaw/captures/` at run time and skipped with
a note when that directory is missing): the agent turn plain and streamed, in the OpenAI and the
Anthropic format, a tool-loop continuation and a heartbeat, each at concurrency 1 with the path's
model (`auto` on `stellwerk+routing`, a named model on `stellwerk`, the peer's own on the peer).
Each phase is bounded by a request count and a duration. After the rounds: RSS growth over a
longer run per gateway, and `stellwerk route` as a cold command. The table gives ratios to the
direct path, to the bare proxy and to the peer; the JSON goes to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import captures
import gateways
import load
import peer
import report

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"
PROMPT = "What is the capital of Australia?"


@dataclass(frozen=True)
class Profile:
    """How much load: per phase and round, a request count and a duration, whichever ends first."""

    rounds: int = 3
    warmup: int = 300
    c1: tuple[int, float] = (1000, 4.0)
    c32: tuple[int, float] = (4000, 4.0)
    c64: tuple[int, float] = (100_000, 4.0)
    streams: tuple[int, float] = (200, 4.0)
    growth: tuple[int, float] = (20_000, 60.0)
    route_runs: int = 10


PROFILES = {
    "smoke": Profile(1, 10, (30, 1.0), (64, 1.0), (500, 0.5), (5, 1.0), (100, 5.0), 1),
    "default": Profile(),
    "long": Profile(growth=(100_000, 900.0)),
}


@dataclass(frozen=True)
class Phase:
    name: str
    endpoint: str  # a key of `endpoints()`
    concurrency: int
    bound: tuple[int, float]


def phases(profile: Profile) -> list[Phase]:
    half = (profile.c1[0] // 2, profile.c1[1] / 2)
    streams = (profile.streams[0] // 2, profile.streams[1] / 2)
    found = [
        Phase("c1", "openai", 1, profile.c1),
        Phase("c32", "openai", 32, profile.c32),
        Phase("c64", "openai", 64, profile.c64),
        Phase("stream", "openai_stream", 1, profile.streams),
        Phase("anthropic_c1", "anthropic", 1, half),
        Phase("anthropic_stream", "anthropic_stream", 1, profile.streams),
    ]
    if captures.available() is None:  # what agents send (`captures.py`); skipped without them
        found += [
            Phase("agent_c1", "agent", 1, profile.c1),
            Phase("agent_stream", "agent_stream", 1, streams),
            Phase("agent_anthropic_c1", "agent_anthropic", 1, half),
            Phase("agent_anthropic_stream", "agent_anthropic_stream", 1, streams),
            Phase("toolloop_c1", "toolloop", 1, half),
            Phase("heartbeat_c1", "heartbeat", 1, half),
        ]
    return found


@dataclass
class System:
    """One path under test, and what was measured on it so far."""

    name: str
    base: str
    openai_model: str
    anthropic_model: str | None
    process: gateways.Process | None = None
    key: str = gateways.KEY  # what clients send as their API key
    samples: dict[str, load.Samples | load.StreamSamples] = field(default_factory=dict)
    rps: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_rss: float = 0.0
    out: dict[str, Any] = field(default_factory=dict)


def endpoints(system: System) -> dict[str, load.Endpoint]:
    headers = {"authorization": f"Bearer {system.key}", "content-type": "application/json"}
    user = [{"role": "user", "content": PROMPT}]
    found = {}
    for stream in (False, True):
        suffix = "_stream" if stream else ""
        body: dict[str, Any] = {"model": system.openai_model, "messages": user, "max_tokens": 64}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        url = f"{system.base}/v1/chat/completions"
        found[f"openai{suffix}"] = load.Endpoint(url, json.dumps(body).encode(), headers)
        if system.anthropic_model is not None:
            body = {"model": system.anthropic_model, "messages": user, "max_tokens": 64}
            body |= {"stream": True} if stream else {}
            anthropic = {**headers, "x-api-key": system.key, "anthropic-version": "2023-06-01"}
            url = f"{system.base}/v1/messages"
            found[f"anthropic{suffix}"] = load.Endpoint(url, json.dumps(body).encode(), anthropic)
    if captures.available() is None:
        found |= agent_endpoints(system)
    return found


def agent_endpoints(system: System) -> dict[str, load.Endpoint]:
    """The captured agent requests (`captures.KINDS`), with this path's model in them; the
    Anthropic ones only where the path speaks Anthropic."""
    found = {}
    for kind in captures.KINDS:
        model = system.anthropic_model if kind.anthropic else system.openai_model
        if kind.capture is None or model is None:
            continue
        body = captures.encode(captures.body(kind, model))
        path = captures.ANTHROPIC if kind.anthropic else captures.OPENAI
        headers = captures.headers(system.key, kind.anthropic)
        found[kind.name] = load.Endpoint(system.base + path, body, headers)
    return found


# -- measuring -------------------------------------------------------------------------------


async def prepare(system: System, profile: Profile) -> dict[str, load.Endpoint]:
    """The endpoints the path answers (an unsupported protocol is noted and left out); warm."""
    eps = endpoints(system)
    if system.process is not None and system.name != report.DIRECT:  # not the fake's own
        system.out["startup_s"] = system.process.startup_s
        system.out["idle_rss_mib"] = system.process.idle_rss_mib
    for name in [n for n in eps if not n.endswith("_stream")]:
        plain = await load.run(eps[name], 3, 1)
        stream = eps.get(f"{name}_stream")
        streamed = await load.streams(stream, 1) if stream else load.StreamSamples()
        if plain.errors or streamed.errors:
            problem = plain.first_error or streamed.first_error
            system.out.setdefault("unsupported", {})[name] = problem
            if name == "openai":
                raise RuntimeError(f"{system.name}: the OpenAI path does not work: {problem}")
            eps.pop(name)
            eps.pop(f"{name}_stream", None)
    await load.run(eps["openai"], profile.warmup, 8)
    return eps


async def run_phase(system: System, eps: dict[str, load.Endpoint], phase: Phase) -> None:
    """One round of one phase on one path, added to what earlier rounds measured."""
    if phase.endpoint not in eps:
        return
    endpoint, (requests, seconds) = eps[phase.endpoint], phase.bound
    if phase.endpoint.endswith("_stream"):
        kept = system.samples.setdefault(phase.name, load.StreamSamples())
        assert isinstance(kept, load.StreamSamples)
        await load.streams(endpoint, requests, seconds, into=kept)
        return
    kept = system.samples.setdefault(phase.name, load.Samples())
    assert isinstance(kept, load.Samples)
    if phase.name != "c64":
        await load.run(endpoint, requests, phase.concurrency, seconds, into=kept)
        return
    pid = system.process.pid if system.process else None
    cpu0 = load.cpu_seconds(pid) if pid else 0.0
    work = load.run(endpoint, requests, phase.concurrency, seconds)
    one, peak = await load.sample_rss(pid, work) if pid else (await work, 0.0)
    kept.add(one)
    system.rps.append(len(one.latencies) / one.elapsed if one.elapsed else 0.0)
    system.peak_rss = max(system.peak_rss, peak)
    if pid is not None and one.latencies:
        system.cpu.append((load.cpu_seconds(pid) - cpu0) * 1000 / len(one.latencies))


async def growth(system: System, endpoint: load.Endpoint, bound: tuple[int, float]) -> None:
    """RSS before and after a longer run at concurrency 32."""
    assert system.process is not None
    pid = system.process.pid
    before = load.rss_mib(pid)
    samples = await load.run(endpoint, bound[0], 32, bound[1])
    after = load.rss_mib(pid)
    system.out["rss_growth"] = {
        "requests": len(samples.latencies),
        "errors": samples.errors,
        "before_mib": before,
        "after_mib": after,
        "growth_mib": after - before,
    }


def summarize(system: System) -> dict[str, Any]:
    out = dict(system.out)
    for name, samples in system.samples.items():
        out[name] = samples.summary()
    if system.rps:
        out["c64"]["rps"] = statistics.median(system.rps)
        out["c64"]["rps_rounds"] = system.rps
    if system.cpu:
        out["cpu_ms_per_request"] = statistics.median(system.cpu)
        out["cpu_ms_rounds"] = system.cpu
    if system.process is not None:
        out["loaded_rss_mib"] = system.peak_rss
    return out


# -- starting the paths ----------------------------------------------------------------------


async def start_upstream(workdir: Path, chunk_delay_ms: float) -> gateways.Process:
    port = gateways.free_port()
    argv = [sys.executable, str(HERE / "upstream.py"), "--port", str(port)]
    argv += ["--chunk-delay-ms", str(chunk_delay_ms)]
    url = f"http://127.0.0.1:{port}"
    env = gateways.clean_env({})
    return await gateways.launch(
        "upstream", argv, env=env, url=url, health="/healthz", workdir=workdir
    )


async def start_passthrough(upstream: str, workdir: Path) -> gateways.Process:
    port = gateways.free_port()
    argv = [sys.executable, str(HERE / "passthrough.py"), "--upstream", upstream]
    return await gateways.launch(
        "passthrough",
        [*argv, "--port", str(port)],
        env=gateways.clean_env({}),
        url=f"http://127.0.0.1:{port}",
        health="/healthz",
        workdir=workdir,
    )


async def start_all(
    args: argparse.Namespace, fake: gateways.Process, workdir: Path, result: dict[str, Any]
) -> list[System]:
    """Every path, started one after the other (so each start-up is timed on its own)."""
    say("starting the paths ...")
    floor = await start_passthrough(fake.url, workdir)
    systems = [
        System("direct", fake.url, "gpt-4o-mini", "claude-haiku-4-5", fake),
        System("passthrough", floor.url, "gpt-4o-mini", "claude-haiku-4-5", floor),
    ]
    base = gateways.base_config(fake.url)
    plain = await gateways.start_stellwerk("stellwerk", base, workdir, args.workers)
    ids = ("openai/gpt-4o-mini", "anthropic/claude-haiku-4-5")
    systems.append(System("stellwerk", plain.url, *ids, plain))
    routed_config, on, rejected = gateways.with_optional(gateways.routed_config(fake.url))
    result["settings"]["routing_work"] = {"on": on, "not_available": rejected}
    routed = await gateways.start_stellwerk(
        "stellwerk+routing", routed_config, workdir, args.workers
    )
    systems.append(System("stellwerk+routing", routed.url, "auto", "auto", routed))
    failover_config, _, _ = gateways.with_optional(gateways.routed_config(fake.url, True))
    failover = await gateways.start_stellwerk(
        "stellwerk+failover", failover_config, workdir, args.workers
    )
    systems.append(System("stellwerk+failover", failover.url, "auto", "auto", failover))
    if args.peer == "litellm":
        if (litellm := await start_peer(args, fake.url, workdir, result)) is not None:
            systems.append(litellm)
    return systems


async def start_peer(
    args: argparse.Namespace, upstream: str, workdir: Path, result: dict[str, Any]
) -> System | None:
    venv = Path(args.peer_venv)
    say(f"preparing litellm in {venv} ...")
    log = workdir / "peer-install.log"
    try:
        executable = peer.ensure_litellm(venv, log)
        result["settings"]["peer_version"] = peer.version(venv)
        process = await peer.start_litellm(executable, upstream, workdir)
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        tail = log.read_text("utf-8", "replace")[-1500:] if log.exists() else ""
        result["peer_error"] = f"litellm: {exc}\n{tail}"
        say(result["peer_error"])
        return None
    # OpenAI protocol only: its /v1/messages speaks the Responses API upstream, which the fake
    # does not, and one 404 puts its only deployment into a cooldown for the rest of the run.
    return System("litellm", process.url, peer.MODEL, None, process, peer.MASTER_KEY)


# -- the run ---------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    profile = PROFILES["smoke" if args.smoke else "long" if args.long else "default"]
    workdir = Path(tempfile.mkdtemp(prefix="stellwerk-bench-"))
    _compile(gateways.SOURCE[0])
    result: dict[str, Any] = {"settings": _settings(args, profile), "systems": {}}
    if (skipped := captures.available()) is not None:
        result["agent_phases_skipped"] = skipped
        say(skipped)
    try:
        fake = await start_upstream(workdir, args.chunk_delay_ms)
        systems = await start_all(args, fake, workdir, result)
        await measure_all(systems, profile)
        result["systems"] = {s.name: summarize(s) for s in systems}
        result["route_cold_s"] = _route_cold(gateways.base_config(fake.url), workdir, profile)
    finally:
        gateways.stop_all()
        if args.keep:
            say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


async def measure_all(systems: list[System], profile: Profile) -> None:
    """The phases in rounds, every path in turn (the order rotates each round); then growth."""
    eps = {}
    for system in systems:
        eps[system.name] = await prepare(system, profile)
    for round_ in range(profile.rounds):
        say(f"round {round_ + 1} of {profile.rounds} ...")
        order = systems[round_ % len(systems) :] + systems[: round_ % len(systems)]
        for phase in phases(profile):
            for system in order:
                await run_phase(system, eps[system.name], phase)
    for system in systems[1:]:
        say(f"RSS growth: {system.name} ...")
        await growth(system, eps[system.name]["openai"], profile.growth)


def _compile(source: Path) -> None:
    """Byte-compile the tree under test, as `pip install` does: start-up and the cold command
    are then timed as a user sees them, not with every module compiled again (which happens on
    each start where PYTHONDONTWRITEBYTECODE is set)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(source)], check=False)


def _route_cold(config: dict[str, Any], workdir: Path, profile: Profile) -> dict[str, Any]:
    say("timing stellwerk route (cold) ...")
    times = gateways.time_cold_route(config, workdir, profile.route_runs)
    return {"runs": len(times), "median": statistics.median(times), "max": max(times)}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace, profile: Profile) -> dict[str, Any]:
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "profile": asdict(profile),
        "workers": args.workers,
        "chunk_delay_ms": args.chunk_delay_ms,
        "peer": args.peer,
        "source": str(gateways.SOURCE[0]),
        "event_loop": os.environ.get("STELLWERK_LOOP", "auto"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the gateway's overhead, against the direct path")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="a few seconds, tiny counts")
    size.add_argument("--long", action="store_true", help="100k requests for the RSS growth")
    parser.add_argument("--peer", choices=["litellm"], help="also measure this peer")
    parser.add_argument("--peer-venv", default=str(peer.DEFAULT_VENV), help="the peer's venv")
    parser.add_argument("--workers", type=int, default=1, help="stellwerk serve --workers N")
    parser.add_argument("--chunk-delay-ms", type=float, default=1.0, help="upstream stream pace")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--source", type=Path, help="measure this src/ tree instead of ./src")
    parser.add_argument("--keep", action="store_true", help="keep the logs and configs")
    args = parser.parse_args(argv)
    if args.source:
        gateways.SOURCE[0] = args.source.resolve()
    result = asyncio.run(run(args))
    result["derived"] = report.derive(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(report.table(result))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
