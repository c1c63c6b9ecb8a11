"""Which HTTP server and client for the gateway: the measurement behind that choice.

`python bench/stacks.py` runs Stellwerk's own request path (`stack_app.py`: parse, the real router
with its classifier, plan, state store, budgets, ledger, metrics and log line, render) on four
stacks, aiohttp or granian (RSGI) as the server times aiohttp or pyreqwest as the upstream client,
next to the shipped gateway (`stellwerk serve`, middleware included), in front of the same fake
upstream. It also measures the floor: the same path in process with stub providers, no HTTP at
all. It does that for the plain path (the model names a target) and for routing (auto
classification, a chain of three whose first key cools down, budgets and ledger on), in rounds,
and prints medians: throughput and CPU per request at concurrency 64, latency at concurrency 1.

granian and pyreqwest are not dependencies of Stellwerk: like the peer of `overhead.py`, they are
installed into a throwaway virtual environment (with Stellwerk itself, editable) on the first run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gateways
import load
import yaml
from overhead import start_upstream

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_VENV = Path("/tmp/stellwerk-bench-stacks")
CANDIDATES = ("granian", "pyreqwest", "uvloop")
STACKS = (
    ("aiohttp", "aiohttp"),
    ("aiohttp", "pyreqwest"),
    ("granian", "aiohttp"),
    ("granian", "pyreqwest"),
)
SHIPPED = "stellwerk serve"


def ensure_venv(venv: Path) -> Path:
    """The throwaway environment's Python, with Stellwerk and the candidates installed."""
    python = venv / "bin" / "python"
    probe = "import granian, pyreqwest, uvloop, stellwerk"
    if python.exists() and subprocess.run([str(python), "-c", probe]).returncode == 0:
        return python
    subprocess.run(
        [shutil.which("python3") or "python3", "-m", "venv", "--clear", str(venv)], check=True
    )
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-e", str(ROOT), *CANDIDATES], check=True)
    return python


def versions(python: Path) -> dict[str, str]:
    code = "import json, importlib.metadata as m; print(json.dumps({n: m.version(n) for n in %r}))"
    done = subprocess.run(
        [str(python), "-c", code % (("aiohttp", *CANDIDATES),)], capture_output=True, text=True
    )
    return json.loads(done.stdout or "{}")


async def start_stack(
    python: Path, server: str, client: str, config: Path, workdir: Path
) -> gateways.Process:
    port = gateways.free_port()
    name = f"{server}+{client}"
    state = workdir / name.replace("+", "-") / config.stem
    return await gateways.launch(
        f"{name}-{config.stem}",
        [str(python), str(HERE / "stack_app.py"), "serve", server, client, str(config), str(port)],
        env=gateways.clean_env({"STELLWERK_STATE_DIR": str(state)}),
        url=f"http://127.0.0.1:{port}",
        health="/healthz",
        workdir=workdir,
    )


def floor(python: Path, config: Path, model: str, workdir: Path, count: int) -> dict[str, float]:
    """Stellwerk's own work per request, in process: a fresh state directory each time."""
    state = workdir / "floor" / f"{config.stem}-{time.monotonic_ns()}"
    argv = [str(python), str(HERE / "stack_app.py"), "floor", str(config), model, str(count)]
    env = gateways.clean_env({"STELLWERK_STATE_DIR": str(state)})
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def endpoint(url: str, model: str) -> load.Endpoint:
    user = [{"role": "user", "content": gateways.ROUTE_PROMPT}]
    body = {"model": model, "messages": user, "max_tokens": 64}
    headers = {"authorization": f"Bearer {gateways.KEY}", "content-type": "application/json"}
    return load.Endpoint(f"{url}/v1/chat/completions", json.dumps(body).encode(), headers)


async def measure(ep: load.Endpoint, pid: int | None, seconds: float) -> dict[str, float]:
    cpu = load.cpu_seconds(pid) if pid else 0.0
    busy = await load.run(ep, 10**7, 64, seconds)
    cpu = load.cpu_seconds(pid) - cpu if pid else 0.0
    quiet = await load.run(ep, 5000, 1, seconds / 2)
    if busy.errors or quiet.errors:
        raise RuntimeError(f"{ep.url}: {busy.first_error or quiet.first_error}")
    done = len(busy.latencies)
    return {
        "rps": done / busy.elapsed,
        "cpu_ms": 1000 * cpu / done if pid else 0.0,
        "p50_ms": load.percentile(quiet.latencies, 50) or 0.0,
        "p99_ms": load.percentile(quiet.latencies, 99) or 0.0,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    python = ensure_venv(args.venv)
    workdir = Path(tempfile.mkdtemp(prefix="stellwerk-stacks-"))
    result: dict[str, Any] = {
        "versions": versions(python),
        "settings": vars(args) | {"venv": str(args.venv)},
    }
    try:
        for kind in ("plain", "routing"):
            fake = await start_upstream(workdir, 1.0)  # each kind on a fresh one
            config, model = gateways.base_config(fake.url), "openai/gpt-4o-mini"
            if kind == "routing":
                config, model = gateways.with_optional(gateways.routed_config(fake.url))[0], "auto"
            path = workdir / f"{kind}.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            systems: dict[str, tuple[load.Endpoint, int | None]] = {
                "direct": (endpoint(fake.url, model), None)
            }
            shipped = await gateways.start_stellwerk(f"shipped-{kind}", config, workdir)
            systems[SHIPPED] = (endpoint(shipped.url, model), shipped.pid)
            for server, client in STACKS:
                process = await start_stack(python, server, client, path, workdir)
                systems[f"{server}+{client}"] = (endpoint(process.url, model), process.pid)
            for ep, _ in systems.values():
                await load.run(ep, 500, 8)  # warm: connections, the classifier, the cooldown
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
            floors = []
            for round_ in range(args.rounds):
                say(f"{kind}: round {round_ + 1} of {args.rounds} ...")
                names = list(systems)  # a different one first each round: drift spreads evenly
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    ep, pid = systems[name]
                    rounds[name].append(await measure(ep, pid, args.seconds))
                floors.append(floor(python, path, model, workdir, args.floor_requests))
            result[kind] = {name: _median(samples) for name, samples in rounds.items()}
            result[kind]["floor"] = _median(floors)
            gateways.stop_all()
    finally:
        gateways.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _median(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def table(result: dict[str, Any]) -> str:
    lines = [f"versions: {', '.join(f'{k} {v}' for k, v in result['versions'].items())}"]
    for kind in ("plain", "routing"):
        rows = result[kind]
        direct = rows["direct"]
        lines += [
            "",
            f"{kind}:",
            f"{'':22} {'req/s c64':>10} {'CPU/req':>9} {'added p50':>10} {'added p99':>10}",
        ]
        for name, row in rows.items():
            if name in ("direct", "floor"):
                continue
            added = row["p50_ms"] - direct["p50_ms"], row["p99_ms"] - direct["p99_ms"]
            speed = f"{row['rps']:10.0f} {row['cpu_ms']:7.2f}ms"
            lines.append(f"{name:22} {speed} {added[0]:8.2f}ms {added[1]:8.2f}ms")
        cpu, wall = rows["floor"]["cpu_ms"], rows["floor"]["wall_ms"]
        lines.append(f"{'floor (no HTTP)':22} {'':10} {cpu:7.2f}ms {wall:8.2f}ms in process")
    return "\n".join(lines)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per system and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--floor-requests", type=int, default=3000)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "stacks.json")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str))
    print(table(result))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
