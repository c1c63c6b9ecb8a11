"""The trained part: a logistic-regression model over words, word pairs and a text's shape.

`data/classifier.json` is made by `scripts/train_classifier.py`; it is read once, on first use
(the gateway calls `preload` before it listens).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from ..types import TEXT_CLASSES, TaskClass
from .text import NUMBER, Text, read

POSITION = {t: i for i, t in enumerate(TEXT_CLASSES)}  # scores are lists in this order

# -- the trained model -------------------------------------------------------------------------

_INDENTED = re.compile(r"^(?:    |\t)\S", re.M)
_CODE_LINE = re.compile(r"^\s*(?:def|class|function|public|import|from|#include)\b", re.M)
# Wherever `_CODE_LINE` matches, one of these is a word of the text: a set test goes first.
_CODE_WORDS = frozenset("def class function public import from include".split())


def _bucket(n: int, edges: tuple[int, ...]) -> int:
    """The number of edges below n: 0 for n <= edges[0], len(edges) above the last."""
    return bisect.bisect_left(edges, n)


def features(text: str) -> set[str]:
    """The model's features of a text: words, word pairs, the opening words and its shape."""
    return _features(read(text))


def _features(t: Text) -> set[str]:
    tokens, low = t.tokens, t.low
    found = set(t.words)
    found.update(map(" ".join, itertools.pairwise(tokens)))
    if tokens:
        found.add(f"^{tokens[0]}")
        if len(tokens) > 1:
            found.add(f"^{tokens[0]} {tokens[1]}")
    found.add(f"len:{_bucket(len(tokens), (5, 10, 20, 40, 80, 160, 320))}")
    numbers = len(NUMBER.findall(low)) if t.digits else 0
    found.add(f"num:{_bucket(numbers, (0, 1, 2, 4, 8))}")
    found.add(f"nl:{_bucket(low.count(chr(10)), (0, 1, 3, 8, 20))}")
    if "```" in low:
        found.add("!fence")
    if ("    " in low or "\t" in low) and _INDENTED.search(low):
        found.add("!indent")
    if not _CODE_WORDS.isdisjoint(t.words) and _CODE_LINE.search(low):
        found.add("!codeline")
    if low.rstrip().endswith("?"):
        found.add("!qend")
    return found


@dataclass(frozen=True, slots=True, eq=False)  # compared and hashed as itself (a cache key)
class _Model:
    classes: tuple[TaskClass, ...]
    bias: tuple[float, ...]
    weights: Mapping[str, tuple[int, ...]]  # feature -> one weight per class, times `scale`
    positions: tuple[int, ...]  # where each of `classes` is in TEXT_CLASSES
    unit: float = 1.0  # 1 / scale: applied once to each sum, not to 100k weights at load


class _Weights(msgspec.Struct):
    """The shape of `data/classifier.json`; msgspec builds it in C (~20 ms instead of ~70)."""

    classes: list[str]
    scale: float
    bias: list[float]
    weights: dict[str, tuple[int, ...]]


@functools.cache
def _model() -> _Model | None:
    """The trained weights, read once on first use; None if the package ships none."""
    from importlib import resources  # only here: it costs more to import than this module

    try:
        raw = resources.files("stellwerk").joinpath("data/classifier.json").read_bytes()
    except FileNotFoundError:
        return None
    return from_weights(msgspec.json.decode(raw, type=_Weights))


def from_weights(data: object) -> _Model:
    """The model of decoded weights, or of the dict `scripts/train_classifier.py` exports."""
    if not isinstance(data, _Weights):
        data = msgspec.convert(data, type=_Weights)
    classes = tuple(TaskClass(c) for c in data.classes)
    bias = tuple(b / data.scale for b in data.bias)
    positions = tuple(POSITION[c] for c in classes)
    return _Model(classes, bias, data.weights, positions, 1.0 / data.scale)


def weights() -> _Model | None:
    """The trained model in use (None: the package ships no weights), read on first use."""
    return _model()


def preload() -> None:
    """Read the weights now: the gateway does it before it listens, so no request waits."""
    _model()


def model_logits(text: Text) -> list[float] | None:
    """The model's score per class (in `TEXT_CLASSES` order), or None when the package ships no
    weights. Features it has no weights for count only in the norm."""
    model = _model()
    if model is None:
        return None
    found = _features(text)
    rows = filter(None, map(model.weights.get, found))
    unit = model.unit
    sums = [sum(column) * unit for column in zip(*rows, strict=True)] or [0.0] * len(model.classes)
    norm = 1.0 / math.sqrt(len(found))
    logits = [0.0] * len(TEXT_CLASSES)
    for at, b, s in zip(model.positions, model.bias, sums, strict=True):
        logits[at] = b + norm * s
    return logits
