"""How long classification takes per request.

    .venv/bin/python bench/classify.py [PROMPTS.jsonl] [--repeat N]

Prints the one-time cost of importing the classifier and loading its weights, then the median
and p99 over the prompts of the dev set (../shared/routing/dev.jsonl by default) of the time per
prompt (each prompt's median of --repeat runs): for `classify` alone on a prepared request, and
for building the request plus classifying it. Then the real OpenClaw agent's requests
(../shared/clients/openclaw/captures/: a ~40k-character system prompt, 11-12 tools, the human's
words framed, a context message after them), parsed as the gateway parses them, with `classify`
timed on each: reading finds the human's turn, so the size of the rest should not count.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "routing" / "dev.jsonl"
CAPTURES = ROOT.parent / "shared" / "clients" / "openclaw" / "captures"
sys.path.insert(0, str(ROOT / "src"))  # measure this tree, whatever the venv points at


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def timed(calls: Sequence[Callable[[], object]], repeat: int) -> list[float]:
    """Microseconds per call: for every call the median of `repeat` runs, which keeps a busy
    machine's scheduling hiccups out of the per-prompt figure."""
    runs: list[list[float]] = [[] for _ in calls]
    for _ in range(repeat):
        for samples, call in zip(runs, calls, strict=True):
            start = time.perf_counter_ns()
            call()
            samples.append((time.perf_counter_ns() - start) / 1000)
    return [statistics.median(samples) for samples in runs]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="classification latency per request")
    parser.add_argument("prompts", nargs="?", default=DEV)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    lines = Path(args.prompts).read_text("utf-8").splitlines()
    prompts = [json.loads(line)["prompt"] for line in lines if line.strip()]

    start = time.perf_counter()
    from stellwerk.classify import classify
    from stellwerk.classify.model import _model

    imported = time.perf_counter()
    from stellwerk.config import policy_from_dict
    from stellwerk.types import ChatRequest

    policy = policy_from_dict({})
    configured = time.perf_counter()
    first = classify(ChatRequest.of(prompts[0]), policy)
    loaded = time.perf_counter()
    assert _model() is not None, "no weights shipped: src/stellwerk/data/classifier.json"
    print(f"import stellwerk.classify       {1000 * (imported - start):6.1f} ms")
    print(f"first classify (loads weights)  {1000 * (loaded - configured):6.1f} ms  ({first.task})")

    requests = [ChatRequest.of(p) for p in prompts]

    def build_and_classify(prompt: str) -> object:
        return classify(ChatRequest.of(prompt), policy)

    only = timed([functools.partial(classify, r, policy) for r in requests], args.repeat)
    built = timed([functools.partial(build_and_classify, p) for p in prompts], args.repeat)
    n = len(prompts)
    for name, samples in (("classify", only), ("request + classify", built)):
        median, p99 = percentiles(samples)
        runs = f"{n} prompts x {args.repeat}"
        print(f"{name:<20} median {median:7.1f} us   p99 {p99:7.1f} us   ({runs})")
    agent_requests(policy, args.repeat * 10)
    return 0


def agent_requests(policy: object, repeat: int) -> None:
    """`classify` on each OpenClaw capture's requests, as the gateway parses them."""
    from stellwerk.classify import classify
    from stellwerk.wire import anthropic, openai

    if not CAPTURES.is_dir():
        print(f"(no OpenClaw captures at {CAPTURES})")
        return
    print(f"OpenClaw requests ({CAPTURES.name}/), classify only, median of {repeat} runs:")
    for path in sorted(CAPTURES.glob("*.json")):
        data = json.loads(path.read_text("utf-8"))
        if not isinstance(data, dict) or "requests" not in data:
            continue
        for i, captured in enumerate(data["requests"][:2]):
            body = {**captured["body"], "model": "auto"}
            wire = anthropic if captured["route"] == "anthropic" else openai
            request = wire.parse_request(body)
            size = len(json.dumps(captured["body"]))
            (us,) = timed([functools.partial(classify, request, policy)], repeat)
            task = classify(request, policy).task  # type: ignore[arg-type]
            name = f"{path.stem}[{i}]"
            print(f"  {name:<26} {size / 1000:5.0f} KB  {us:7.1f} us   {task}")


if __name__ == "__main__":
    sys.exit(main())
