"""Heartbeats: an agent's scheduled check-ins, recognised by rule.

Heartbeat prompts are templates (OpenClaw's default prompt in its versions, a user's HEARTBEAT.md
pasted under it, a custom prompt in an agent's config), and they are the most frequent requests an
idle agent sends. What they share is the contract, not the wording: a sentinel to answer when
nothing needs attention (`HEARTBEAT_OK`, `NO_REPLY`), a mention of the heartbeat or its file. Each
signal has a weight; 3 or more is certain. A poll or wake-up that a client frames in a fixed way
(`[OpenClaw heartbeat poll]`) is recognised by the framing table instead (`reading.py`).
"""

from __future__ import annotations

import re

CERTAIN = 3.0

# A sentinel the model is told to answer with: the heart of every heartbeat contract.
_SENTINEL = r"(?:HEARTBEAT_OK|NO_REPLY)"
_RULES = (
    (
        "reply {}",
        CERTAIN,
        re.compile(
            r"\b(?:reply|respond|response|answer|return|output|say|print|send|write)\b"
            rf"[^\n.]{{0,60}}?\b{_SENTINEL}\b|`{_SENTINEL}`",
            re.I,
        ),
    ),
    ("{}", 1.5, re.compile(rf"\b{_SENTINEL}\b")),
    ("HEARTBEAT.md", 1.5, re.compile(r"\bHEARTBEAT\.md\b", re.I)),
    (
        "heartbeat wording",
        1.5,
        re.compile(
            r"\b(?:scheduled|periodic|routine)\s+(?:heartbeat|check-?in)|heartbeat\s+(?:check|"
            r"poll|tasks?|protocol|run|prompt|monitor|scratch)|^#+\s*heartbeat\b",
            re.I | re.M,
        ),
    ),
    (
        "nothing needs attention",
        1.5,
        re.compile(r"\b(?:if )?nothing (?:needs|requires|warrants) (?:your )?attention\b", re.I),
    ),
)
# Wherever a rule matches, one of these is in the lowered text: one substring test per word first.
_GATE = ("heartbeat", "no_reply", "attention", "check-in", "checkin")


def heartbeat_evidence(text: str) -> tuple[float, list[str]]:
    """Summed weight of the heartbeat signals in a text (3 or more is certain), and their names."""
    low = text.lower()
    if not any(word in low for word in _GATE):
        return 0.0, []
    found = [(name, weight, m) for name, weight, rx in _RULES if (m := rx.search(text))]
    names = [
        _named(name, m.group(0))
        for name, _, m in found
        if name != "{}" or len(found) == 1  # a bare sentinel is named when it alone fired
    ]
    return sum(w for _, w, _ in found), names


_WHICH = re.compile(_SENTINEL)


def _named(name: str, matched: str) -> str:
    """A rule's name, with the sentinel it matched in it (as the contract writes it: the rule
    for the reply instruction matches in any case)."""
    if "{}" not in name:
        return name
    sentinel = _WHICH.search(matched.upper())
    return name.format(sentinel.group(0) if sentinel else matched)
