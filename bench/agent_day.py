"""What a day of one OpenClaw session costs under three policies, prompt caches counted.

    .venv/bin/python bench/agent_day.py [--tasks 11]

Builds a growing session from the captures (../shared/clients/openclaw/captures/agent_turn.json
and heartbeat.json: OpenClaw's system prompt, tools and framing): 48 heartbeats 30 minutes
apart and `--tasks` human tasks of each class (simple, complex, reasoning, code tool loops), and
replays it through a Router on the fakes, whose prompt caches work as Anthropic and OpenAI
document them (`stellwerk.testing.replay.agent_day`):

- all-Sonnet: every request to anthropic/claude-sonnet-4-0, whole context, 5-minute breakpoints
  (what the agent pays talking to Sonnet directly with its own cache markers);
- the static class policy: every class to its configured primary, perfectly classified
  (`routing.cache_aware: false`);
- cache-aware routing (the default).

Prints each policy's cost per class and for the day as a share of the all-Sonnet day, and how
often the cache changed the choice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT.parent / "shared" / "clients" / "openclaw" / "captures"
sys.path.insert(0, str(ROOT / "src"))  # measure this tree, whatever the venv points at
CLASSES = ("heartbeat", "simple", "complex", "reasoning", "code")


async def run(tasks: int) -> int:
    from stellwerk.testing.replay import agent_day, all_on, replay

    (turn,) = json.loads((CAPTURES / "agent_turn.json").read_text("utf-8"))["requests"]
    (beat,) = json.loads((CAPTURES / "heartbeat.json").read_text("utf-8"))["requests"]
    requests, times = agent_day(turn, beat, tasks_per_class=tasks)
    policies = {
        "all-Sonnet": all_on("anthropic/claude-sonnet-4-0"),
        "static class policy": {"routing": {"cache_aware": False}},
        "cache-aware": {},
    }
    results = {name: await replay(requests, c, times=times) for name, c in policies.items()}
    base = results["all-Sonnet"]
    print(f"{len(requests)} requests over 24 h ({tasks} tasks per class, 48 heartbeats)")
    print(f"{'policy':<22}" + "".join(f"{c:>11}" for c in (*CLASSES, "day")) + f"{'cost':>10}")
    for name, result in results.items():
        shares = [
            result.by_task.get(c, 0) / base.by_task[c] if base.by_task.get(c) else 0.0
            for c in CLASSES
        ]
        day = result.cost_micros / base.cost_micros
        cells = "".join(f"{s:>10.1%} " for s in shares)
        print(f"{name:<22}{cells}{day:>10.1%} ${result.cost_micros / 1e6:>8.3f}")
    changed = [d for d in results["cache-aware"].decisions if d.cache and d.cache.changed]
    print(f"cache-aware routing changed {len(changed)} choices, e.g.:")
    for d in changed[:5]:
        print(f"  {d.task:<10} {d.reason.rsplit('; ', 1)[-1]}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=11)
    return asyncio.run(run(parser.parse_args(argv).tasks))


if __name__ == "__main__":
    sys.exit(main())
