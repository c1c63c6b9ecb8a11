"""Train the task classifier's weights: `src/stellwerk/data/classifier.json`.

    .venv/bin/python scripts/train_classifier.py [../shared/routing/train.jsonl] [-o OUT]

A multinomial logistic regression over the features of `stellwerk.classify.features` (words, word
pairs, opening words, shape), fitted with AdaGrad and L2 in plain Python, deterministic for a
fixed seed (10-20 seconds). Only rows whose `license` names a real licence are used. Each
(source, label) group of n prompts is weighted by (200 / n) ** 0.75, so one big source (role-play,
say) does not define a whole class; that is what lets the model carry over to prompts of other
sources (`scripts/loso.py` measures that, leaving one source out at a time). Only
feature weights are written, rounded to integers, never prompt text; rare and near-zero features
are pruned to keep the file small.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stellwerk.classify import features  # noqa: E402
from stellwerk.types import TEXT_CLASSES  # noqa: E402

CLASSES = [str(t) for t in TEXT_CLASSES]
NO_LICENCE = {"none stated", "mostly none stated", ""}
SCALE = 1000  # weights are stored as integers in thousandths
MIN_DOCS = 3  # a feature must occur in this many training prompts
MIN_WEIGHT = 0.02  # features whose every weight is smaller are dropped
DEFAULT_EPOCHS = 10
BALANCE = 0.75  # a (source, label) group of n prompts weighs (200 / n) ** BALANCE each


Row = tuple[set[str], int, float, str]  # features, class index, sample weight, group


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def licensed(records: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The records whose `license` names a real licence: the only ones trained on."""
    return [r for r in records if r.get("license", "").strip().lower() not in NO_LICENCE]


def load(path: Path) -> list[Row]:
    """Licensed rows as (features, class index, sample weight, group)."""
    return prepare(licensed(read_jsonl(path)))


def prepare(rows: Sequence[dict[str, str]]) -> list[Row]:
    """Rows as (features, class index, sample weight, group)."""
    groups = Counter(f"{r['source']}|{r['label']}" for r in rows)
    out = []
    for r in rows:
        group = f"{r['source']}|{r['label']}"
        weight = (200 / groups[group]) ** BALANCE
        out.append((features(r["prompt"]), CLASSES.index(r["label"]), weight, group))
    return out


def train(
    rows: Sequence[Row],
    *,
    epochs: int = DEFAULT_EPOCHS,
    l2: float = 1e-4,
    rate: float = 0.5,
    seed: int = 20250611,
) -> tuple[list[float], dict[str, list[float]]]:
    """AdaGrad on the softmax loss; returns (bias, weights per feature)."""
    k = len(CLASSES)
    docs = Counter(f for feats, *_ in rows for f in feats)
    vocab = {f for f, n in docs.items() if n >= MIN_DOCS}
    bias, bias_g = [0.0] * k, [1e-8] * k
    weights: dict[str, list[float]] = {f: [0.0] * k for f in vocab}
    grads: dict[str, list[float]] = {f: [1e-8] * k for f in vocab}
    # the same norm as at run time: all features count; known ones in a fixed order
    prepared = [
        (sorted(f for f in feats if f in vocab), 1.0 / math.sqrt(len(feats)), label, weight)
        for feats, label, weight, _ in rows
    ]
    order = list(range(len(rows)))
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            known, norm, label, sample_weight = prepared[i]
            error = _error(bias, weights, known, norm, label, sample_weight)
            for c in range(k):
                bias_g[c] += error[c] ** 2
                bias[c] -= rate * error[c] / math.sqrt(bias_g[c])
            for f in known:
                w, g = weights[f], grads[f]
                for c in range(k):
                    step = error[c] * norm + l2 * w[c]
                    g[c] += step * step
                    w[c] -= rate * step / math.sqrt(g[c])
    return bias, weights


def _error(
    bias: list[float],
    weights: dict[str, list[float]],
    known: list[str],
    norm: float,
    label: int,
    sample_weight: float,
) -> list[float]:
    """Gradient of the loss with respect to the logits: (softmax - one-hot) * weight."""
    logits = list(bias)
    for f in known:
        for c, w in enumerate(weights[f]):
            logits[c] += w * norm
    top = max(logits)
    exps = [math.exp(z - top) for z in logits]
    total = sum(exps)
    probs = [e / total for e in exps]
    probs[label] -= 1.0
    return [p * sample_weight for p in probs]


def export(bias: list[float], weights: dict[str, list[float]]) -> dict[str, object]:
    kept = {
        f: [round(x * SCALE) for x in w]
        for f, w in sorted(weights.items())
        if max(abs(x) for x in w) >= MIN_WEIGHT
    }
    return {
        "format": 1,
        "about": "stellwerk task classifier weights, made by scripts/train_classifier.py",
        "classes": CLASSES,
        "scale": SCALE,
        "bias": [round(b * SCALE) for b in bias],
        "weights": kept,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train", nargs="?", default=ROOT.parent / "shared/routing/train.jsonl")
    parser.add_argument("-o", "--out", default=ROOT / "src/stellwerk/data/classifier.json")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    args = parser.parse_args(argv)
    rows = load(Path(args.train))
    print(f"training on {len(rows)} licensed prompts", Counter(CLASSES[r[1]] for r in rows))
    bias, weights = train(rows, epochs=args.epochs)
    data = export(bias, weights)
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    Path(args.out).write_text(text + "\n", "utf-8")
    kept = len(data["weights"])  # type: ignore[arg-type]
    print(f"wrote {args.out}: {kept} features, {len(text) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
