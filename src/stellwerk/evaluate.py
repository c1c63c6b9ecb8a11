"""How well the classifier routes a labelled set of prompts.

A user who adds classifier rules, or a developer who retrains the weights, needs one number to
compare before and after, and the per-class view that says where it went wrong: a heartbeat
routed as `complex` costs money, a proof routed as `simple` costs quality. `stellwerk
eval-classifier FILE.jsonl` prints `evaluate(load_jsonl(FILE), policy).render()`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .classify import classify
from .policy import Policy
from .types import TEXT_CLASSES, ChatRequest

LABELS = tuple(str(t) for t in TEXT_CLASSES)


@dataclass(frozen=True, slots=True)
class ClassScore:
    """Precision, recall and F1 of one class; `support` is how many items carry its label."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Accuracy, per-class scores, macro-F1 and the confusion matrix (gold -> predicted -> n)."""

    labels: tuple[str, ...]
    total: int
    accuracy: float
    per_class: Mapping[str, ClassScore]
    macro_f1: float
    confusion: Mapping[str, Mapping[str, int]]
    defaulted: int = 0  # items the classifier was unsure about (default class applied)

    def render(self) -> str:
        """A readable table: scores per class, then the confusion matrix."""
        width = max(len(label) for label in (*self.labels, "macro-F1"))
        lines = [
            f"{self.total} prompts  accuracy {self.accuracy:.3f}  macro-F1 {self.macro_f1:.3f}"
            + (f"  (default class applied to {self.defaulted})" if self.defaulted else ""),
            "",
            f"{'class':<{width}}  precision  recall     F1  support",
        ]
        for label in self.labels:
            s = self.per_class[label]
            scores = f"{s.precision:9.3f}  {s.recall:6.3f}  {s.f1:5.3f}  {s.support:7d}"
            lines.append(f"{label:<{width}}  {scores}")
        lines += ["", "confusion (rows: label, columns: predicted)", self._matrix(width)]
        return "\n".join(lines)

    def _matrix(self, width: int) -> str:
        cell = max(5, *(len(label) for label in self.labels))
        head = " " * width + "".join(f"  {label[:cell]:>{cell}}" for label in self.labels)
        rows = [head]
        for gold in self.labels:
            counts = self.confusion.get(gold, {})
            cells = "".join(f"  {counts.get(p, 0):>{cell}}" for p in self.labels)
            rows.append(f"{gold:<{width}}{cells}")
        return "\n".join(rows)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data."""
        return {
            "total": self.total,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "defaulted": self.defaulted,
            "per_class": {
                label: {
                    "precision": s.precision,
                    "recall": s.recall,
                    "f1": s.f1,
                    "support": s.support,
                }
                for label, s in self.per_class.items()
            },
            "confusion": {gold: dict(row) for gold, row in self.confusion.items()},
        }


def evaluate(items: Iterable[tuple[str, str]], policy: Policy) -> EvalReport:
    """Classify every `(prompt, label)` as a one-turn `auto` request and score the result."""
    gold: list[str] = []
    predicted: list[str] = []
    defaulted = 0
    for prompt, label in items:
        result = classify(ChatRequest.of(prompt), policy)
        gold.append(label)
        predicted.append(str(result.task))
        defaulted += result.source == "default"
    return score(gold, predicted, defaulted=defaulted)


def score(gold: Sequence[str], predicted: Sequence[str], *, defaulted: int = 0) -> EvalReport:
    """The report for paired gold labels and predictions."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} labels but {len(predicted)} predictions")
    pairs = Counter(zip(gold, predicted, strict=True))
    seen = set(gold) | set(predicted)
    labels = tuple(label for label in LABELS if label in seen) + tuple(sorted(seen - set(LABELS)))
    per_class = {label: _class_score(label, pairs) for label in labels}
    confusion = {g: {p: pairs[g, p] for p in labels if pairs[g, p]} for g in labels}
    total = len(gold)
    correct = sum(n for (g, p), n in pairs.items() if g == p)
    macro = sum(s.f1 for s in per_class.values()) / len(per_class) if per_class else 0.0
    return EvalReport(
        labels=labels,
        total=total,
        accuracy=correct / total if total else 0.0,
        per_class=per_class,
        macro_f1=macro,
        confusion=confusion,
        defaulted=defaulted,
    )


def _class_score(label: str, pairs: Counter[tuple[str, str]]) -> ClassScore:
    hits = pairs[label, label]
    as_label = sum(n for (_, p), n in pairs.items() if p == label)
    support = sum(n for (g, _), n in pairs.items() if g == label)
    precision = hits / as_label if as_label else 0.0
    recall = hits / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ClassScore(precision, recall, f1, support)


def load_jsonl(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """`(prompt, label)` pairs from a JSON-lines file with `prompt` and `label` on every line."""
    items = []
    text = Path(path).read_text("utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            items.append(_item(line, number))
    return items


def _item(line: str, number: int) -> tuple[str, str]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {number}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, Mapping):
        raise ValueError(f"line {number}: expected an object with prompt and label")
    prompt, label = row.get("prompt"), row.get("label")
    if not isinstance(prompt, str):
        raise ValueError(f"line {number}: 'prompt' must be a string")
    if label not in LABELS:
        raise ValueError(
            f"line {number}: 'label' must be one of {', '.join(LABELS)}, got {label!r}"
        )
    return prompt, label
