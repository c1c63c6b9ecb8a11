"""How the rules and the model read a text: bounded to its head and tail, lowered, tokenised."""

from __future__ import annotations

import re
from dataclasses import dataclass

RULE_HEAD, RULE_TAIL = 1000, 300  # built-in rules and the model: they look for the instruction

TOKEN = re.compile(r"[a-z_][a-z0-9_]*|\d+(?:[.,]\d+)*|[^\sa-z0-9_]")
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


@dataclass(slots=True)
class Text:
    """A text bounded to its head and tail, as written, lowered, and as tokens (digits -> 0)."""

    raw: str
    low: str
    tokens: list[str]
    words: frozenset[str]
    digits: bool  # False: not a digit in it, so no number to look for


def read(text: str) -> Text:
    raw = bounded(text, RULE_HEAD, RULE_TAIL)
    low = raw.lower()
    tokens = TOKEN.findall(low)
    # A digit other than 0-9 can occur only in a text that is not ASCII.
    digits = not low.isascii() or any(map(low.__contains__, "0123456789"))
    if digits:
        tokens = ["0" if t[0].isdigit() else t for t in tokens]
    return Text(raw, low, tokens, frozenset(tokens), digits)


def blank(text: str) -> bool:
    """`not text.strip()`, without copying a long text to find out."""
    return not text or text.isspace()


def bounded(text: str, head: int, tail: int) -> str:
    """The head and tail of a long text: instructions sit at the start or the end."""
    if len(text) <= head + tail:
        return text
    return text[:head] + "\n" + text[-tail:]
