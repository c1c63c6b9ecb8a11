"""Leave-one-source-out (LOSO) evaluation of the task classifier: how it does on prompts of a
source it was not trained on.

    .venv/bin/python scripts/loso.py [--train T.jsonl] [--dev D.jsonl] [--epochs N] [--jobs 2]

For every source S of train.jsonl plus dev.jsonl, the model is trained as
`scripts/train_classifier.py` trains it (its functions, its defaults) on the licensed rows of
train.jsonl whose source is not S (dev.jsonl is never trained on), and every row of S, from both
files, is classified by the full classifier (built-in rules plus that model). A source with no
licensed training rows (dev.jsonl's sources, unlicensed ones) is classified by the model trained
on all of train.jsonl, which never saw it either. The pooled predictions are scored per class,
followed by the accuracy per source and the dev.jsonl figures of the model trained on all of
train.jsonl. Folds run in parallel (--jobs processes); about 2-3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

import train_classifier as tc  # noqa: E402

import stellwerk.classify.model as model_module  # noqa: E402
from stellwerk.classify import classify  # noqa: E402
from stellwerk.config import policy_from_dict  # noqa: E402
from stellwerk.evaluate import score  # noqa: E402
from stellwerk.types import ChatRequest  # noqa: E402

SHARED = ROOT.parent / "shared" / "routing"
ALL = ""  # the fold that leaves no source out: the model trained on all of train.jsonl

_TRAIN: list[dict[str, str]] = []  # the licensed training records, set in each worker
_EPOCHS = [tc.DEFAULT_EPOCHS]


def _setup(records: list[dict[str, str]], epochs: int) -> None:
    _TRAIN[:] = records
    _EPOCHS[0] = epochs


def _fold(args: tuple[str, list[tuple[str, str, str]]]) -> list[tuple[str, str, str]]:
    """Train without `left_out`, then classify `items` (id, label, prompt) with the full
    classifier: (id, label, predicted) for each."""
    left_out, items = args
    rows = tc.prepare([r for r in _TRAIN if r["source"] != left_out])
    bias, weights = tc.train(rows, epochs=_EPOCHS[0])
    model = model_module.from_weights(tc.export(bias, weights))
    model_module._model = lambda: model  # type: ignore[assignment]  # this process only
    policy = policy_from_dict({})
    return [
        (key, label, str(classify(ChatRequest.of(prompt), policy).task))
        for key, label, prompt in items
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=SHARED / "train.jsonl")
    parser.add_argument("--dev", type=Path, default=SHARED / "dev.jsonl")
    parser.add_argument("--epochs", type=int, default=tc.DEFAULT_EPOCHS)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.monotonic()
    train, dev = tc.read_jsonl(args.train), tc.read_jsonl(args.dev)
    records = tc.licensed(train)
    trained_on = {r["source"] for r in records}
    by_fold: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    source_of: dict[str, str] = {}
    for name, records in (("train", train), ("dev", dev)):
        for r in records:
            key = f"{name}:{r['id']}"
            source_of[key] = r["source"]
            fold = r["source"] if r["source"] in trained_on else ALL
            by_fold[fold].append((key, r["label"], r["prompt"]))
    dev_keys = {f"dev:{r['id']}" for r in dev}
    # the full model also classifies dev.jsonl as a whole (its dev figures)
    full_items = by_fold[ALL] + [
        (f"full:{r['id']}", r["label"], r["prompt"]) for r in dev if r["source"] in trained_on
    ]
    jobs = [(ALL, full_items)] + [(s, items) for s, items in by_fold.items() if s != ALL]
    setup = (records, args.epochs)
    with ProcessPoolExecutor(args.jobs, initializer=_setup, initargs=setup) as pool:
        results = [item for part in pool.map(_fold, jobs) for item in part]

    loso = [(k, g, p) for k, g, p in results if not k.startswith("full:")]
    report = score([g for _, g, _ in loso], [p for _, _, p in loso])
    print(f"LOSO: {len(jobs)} models, {len(set(source_of.values()))} sources, {args.epochs} epochs")
    print(report.render())

    print("\naccuracy per held-out source (weakest first)")
    per_source: dict[str, list[bool]] = defaultdict(list)
    for key, gold, predicted in loso:
        per_source[source_of[key]].append(gold == predicted)
    for source, hits in sorted(per_source.items(), key=lambda kv: sum(kv[1]) / len(kv[1])):
        where = "train" if source in trained_on else "unseen"
        print(f"  {sum(hits) / len(hits):6.3f}  {len(hits):4d}  {source} ({where})")

    # dev.jsonl with the model trained on all of train.jsonl: the shipped model's figures
    full = {k: (g, p) for k, g, p in results if k in dev_keys or k.startswith("full:")}
    pairs = [
        full[f"dev:{r['id']}"] if f"dev:{r['id']}" in full else full[f"full:{r['id']}"] for r in dev
    ]
    dev_report = score([g for g, _ in pairs], [p for _, p in pairs])
    print("\ndev.jsonl, model trained on all licensed train.jsonl rows")
    print(dev_report.render())
    print(f"\n{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
