"""Two trees of Stellwerk side by side, interleaved, against the bare proxy of the same run.

    .venv/bin/python bench/versus.py --before REV [--rounds N]

`overhead.py --source` measures another tree in a run of its own; on a shared VM whose speed
drifts by a third within minutes, two runs are not comparable. Here both trees run at once,
each as `stellwerk serve` with the routed config of the overhead benchmark (`model: auto`,
budgets, the ledger) and with a named model, next to the bare proxy and the direct path, and
each round measures every path in turn: the added p50 at c=1 of the short prompt and of the
captured 60 KB OpenClaw agent request (`captures.py`), and the CPU per request at c=64 on the
short prompt. Medians over the rounds; the agent request's excess over the short prompt shows
how much of the size's cost is Stellwerk's own and how much the HTTP stack's (the bare proxy's).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import captures
import gateways
import load
from overhead import start_passthrough, start_upstream

ROOT = Path(__file__).resolve().parents[1]


def export(rev: str, into: Path) -> Path:
    """`rev`'s src/ tree, unpacked into `into`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


async def run(before: Path, rounds: int, work: Path) -> dict[str, dict[str, float]]:
    upstream = await start_upstream(work, 1.0)
    routed, _, _ = gateways.with_optional(gateways.routed_config(upstream.url))
    plain = gateways.base_config(upstream.url)
    paths = {"passthrough": await start_passthrough(upstream.url, work)}
    for tree, source in (("before", before), ("after", ROOT / "src")):
        gateways.SOURCE[0] = source
        paths[f"{tree} auto"] = await gateways.start_stellwerk(f"{tree}-auto", routed, work)
        paths[f"{tree} named"] = await gateways.start_stellwerk(f"{tree}-named", plain, work)
    kinds = {k.name: k for k in captures.KINDS}

    def endpoint(name: str, url: str, kind: str) -> load.Endpoint:
        model = {"auto": "auto", "named": "openai/gpt-4o-mini"}.get(name.split()[-1], "gpt-4o-mini")
        body = captures.encode(captures.body(kinds[kind], model))
        headers = captures.headers(gateways.KEY, False)
        return load.Endpoint(f"{url}/v1/chat/completions", body, headers)

    samples: dict[str, dict[str, list[float]]] = {}
    try:
        for number in range(rounds):
            print(f"round {number + 1} of {rounds} ...", flush=True)
            for name, url, pid in [("direct", upstream.url, None)] + [
                (n, p.url, p.pid) for n, p in paths.items()
            ]:
                into = samples.setdefault(name, {"short": [], "agent": [], "cpu": []})
                for kind in ("short", "agent"):
                    target = endpoint(name, url, kind)
                    await load.run(target, 50, 1)
                    done = await load.run(target, 400, 1, duration=4.0)
                    into[kind].append(load.percentile(done.latencies, 50) or 0.0)
                if pid is None:
                    continue
                target = endpoint(name, url, "short")
                cpu = load.cpu_seconds(pid)
                done = await load.run(target, 100_000, 64, duration=4.0)
                into["cpu"].append((load.cpu_seconds(pid) - cpu) * 1000 / len(done.latencies))
    finally:
        for process in paths.values():
            process.stop()
        upstream.stop()
    return {
        name: {k: statistics.median(v) for k, v in values.items() if v}
        for name, values in samples.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a git revision to compare with")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    if (why := captures.available()) is not None:
        print(why)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        before = export(args.before, Path(tmp))
        figures = asyncio.run(run(before, args.rounds, Path(tmp)))
    direct, floor = figures.pop("direct"), figures["passthrough"]["cpu"]
    print(
        f"\n{'path':<14} {'short +p50':>10} {'agent +p50':>10} {'agent-short':>11}"
        f" {'CPU/req c64':>12} {'× bare':>7}   (ms; +p50 above direct, c=1)"
    )
    for name, m in figures.items():
        short, agent = m["short"] - direct["short"], m["agent"] - direct["agent"]
        print(
            f"{name:<14} {short:10.2f} {agent:10.2f} {agent - short:11.2f}"
            f" {m['cpu']:12.3f} {m['cpu'] / floor:7.2f}"
        )
    print(f"direct p50: short {direct['short']:.2f} ms, agent {direct['agent']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
