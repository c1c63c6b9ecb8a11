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
train.jsonl. Folds run in parallel (--jobs processes); 3-8 minutes on 2 busy cores at the
trainer's 10 epochs (--epochs 4 takes about half as long). With --cache DIR each fold's
weights are kept, so trying a change of the rules alone takes seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
from stellwerk.policy import Policy  # noqa: E402
from stellwerk.types import ChatRequest  # noqa: E402

SHARED = ROOT.parent / "shared" / "routing"
ALL = ""  # the fold that leaves no source out: the model trained on all of train.jsonl

_TRAIN: list[dict[str, str]] = []  # the licensed training records, set in each worker
_EPOCHS = [tc.DEFAULT_EPOCHS]
_CACHE: list[Path | None] = [None]
_POLICY: list[Policy] = []  # the default policy, read once per worker
_TRAINING_CODE = [
    ROOT / "scripts/train_classifier.py",
    ROOT / "src/stellwerk/classify/model.py",
    ROOT / "src/stellwerk/classify/text.py",
]


def _setup(records: list[dict[str, str]], epochs: int, cache: Path | None) -> None:
    _TRAIN[:] = records
    _EPOCHS[0] = epochs
    _CACHE[0] = cache
    _POLICY.append(policy_from_dict({}))


def _weights(left_out: str) -> dict[str, object]:
    """The exported weights trained without `left_out`; with --cache, kept in a file named by
    what the training depends on (the trainer's and the features' code, the epochs)."""
    cache = _CACHE[0]
    if cache is not None:
        code = b"".join(p.read_bytes() for p in _TRAINING_CODE)
        key = hashlib.sha256(code + f"|{_EPOCHS[0]}|{left_out}".encode()).hexdigest()[:20]
        path = cache / f"{left_out or 'all'}-{key}.json"
        if path.exists():
            data: dict[str, object] = json.loads(path.read_text("utf-8"))
            return data
    rows = tc.prepare([r for r in _TRAIN if r["source"] != left_out])
    bias, weights = tc.train(rows, epochs=_EPOCHS[0])
    data = tc.export(bias, weights)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data), "utf-8")
    return data


def _fold(args: tuple[str, list[tuple[str, str, str]]]) -> list[tuple[str, str, str]]:
    """Train without `left_out`, then classify `items` (id, label, prompt) with the full
    classifier: (id, label, predicted) for each."""
    left_out, items = args
    model = model_module.from_weights(_weights(left_out))
    model_module._model = lambda: model  # type: ignore[assignment]  # this process only
    policy = _POLICY[0]
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
    parser.add_argument("--cache", type=Path, help="keep each fold's weights here, for reuse")
    parser.add_argument("--dump", type=Path, help="write (source, id, label, predicted) here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    train, dev = tc.read_jsonl(args.train), tc.read_jsonl(args.dev)
    records = tc.licensed(train)
    trained_on = {r["source"] for r in records}
    by_fold: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    source_of: dict[str, str] = {}
    for name, file_rows in (("train", train), ("dev", dev)):
        for r in file_rows:
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
    setup = (records, args.epochs, args.cache)
    with ProcessPoolExecutor(args.jobs, initializer=_setup, initargs=setup) as pool:
        results = [item for part in pool.map(_fold, jobs) for item in part]

    loso = [(k, g, p) for k, g, p in results if not k.startswith("full:")]
    report = score([g for _, g, _ in loso], [p for _, _, p in loso])
    print(f"LOSO: {len(jobs)} models, {len(set(source_of.values()))} sources, {args.epochs} epochs")
    print(report.render())

    if args.dump:
        lines = (json.dumps([source_of[k], k, g, p]) for k, g, p in loso)
        args.dump.write_text("\n".join(lines) + "\n", "utf-8")
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
