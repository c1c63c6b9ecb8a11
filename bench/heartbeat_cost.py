"""What a day of OpenClaw heartbeats costs: 48 heartbeats, 30 minutes apart.

    .venv/bin/python bench/heartbeat_cost.py [--count 48] [--every 1800]

Replays the captured heartbeats (../shared/clients/openclaw/captures/heartbeat*.json, as the real
agent sent them) through a Router on the fake providers, whose prompt caches work as Anthropic and
OpenAI document them, on a clock that moves `--every` seconds between heartbeats:

- baseline: every heartbeat to anthropic/claude-sonnet-4-0 with its full context, no cache;
- Stellwerk's default: the heartbeat class (claude-haiku-4-5, minimal context, 1 h breakpoints);
- the same with 5-minute breakpoints, and with none, to show what the TTL choice is worth.

Prints the cost of each, its share of the baseline, tokens and the cache-read share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT.parent / "shared" / "clients" / "openclaw" / "captures"
sys.path.insert(0, str(ROOT / "src"))  # measure this tree, whatever the venv points at


def heartbeats(name: str, count: int, every: float) -> list[dict[str, Any]]:
    from stellwerk.testing.replay import heartbeat_day

    (captured,) = json.loads((CAPTURES / f"{name}.json").read_text("utf-8"))["requests"]
    return heartbeat_day(captured, count, every)


async def run(count: int, every: float) -> int:
    from stellwerk.testing.replay import full_context_on, replay

    runs = {
        "baseline: sonnet-4-0, full context, no cache": full_context_on(
            "anthropic/claude-sonnet-4-0"
        ),
        "stellwerk: heartbeat class (haiku, minimal, 1h cache)": {},
        "  the same with 5m breakpoints": {"tasks": {"heartbeat": {"cache": "5m"}}},
        "  the same with no breakpoints": {"tasks": {"heartbeat": {"cache": "off"}}},
    }
    print(f"{count} heartbeats, {every / 60:.0f} min apart, from {CAPTURES}")
    for capture in ("heartbeat", "heartbeat_event"):
        requests = heartbeats(capture, count, every)
        print(f"\n{capture}.json")
        print(f"{'configuration':<56} {'cost':>10} {'share':>7} {'input tok':>11} {'read':>6}")
        base = None
        for name, config in runs.items():
            result = await replay(requests, config, every=every, count=count)
            base = base or result.cost_micros
            share = result.cost_micros / base
            print(
                f"{name:<56} ${result.cost_micros / 1e6:>9.4f} {share:>6.1%} "
                f"{result.usage.input_tokens:>11,} {result.cache_read_share:>6.1%}"
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--every", type=float, default=1800.0)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.count, args.every))


if __name__ == "__main__":
    sys.exit(main())
