"""Reading a request before it is classified: a request is a moment in a conversation.

An agent sends its whole session every time: a long system prompt, its tools, the history, the
human's latest words inside the client's own framing, and after a tool call the tool's result.
Reading finds the human's latest turn structurally, takes the client's framing off it, and says
whether this request starts that turn or continues it after tool calls. Classification then sees
only the human's words; the system prompt and the tools are context, not the task.

Framing is data, not code: a table of patterns (`classifier.framings` in the config, OpenClaw's
shipped as defaults), each with what it means:

- `skip`: a user message that is the client's own context, not the human's turn (OpenClaw's
  `<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>` message after every turn);
- `strip`: a part of the human's message that the client added (a timestamp prefix, a
  `Runtime: …` line); removed before classifying, never from what is sent upstream;
- `heartbeat`: the turn, once stripped, is a heartbeat poll or a system wake-up.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..policy import Framing
from ..types import ChatRequest, Message, ToolCallPart, ToolResultPart
from .text import blank


@dataclass(frozen=True, slots=True)
class Reading:
    """What a request says about the conversation it belongs to."""

    text: str  # the human's latest words without the client's framing ('' when there are none)
    at: int | None  # where that turn is in `request.messages`; None: no human turn
    continuation: bool = False  # tool calls happened since that turn: this request continues it
    heartbeat: str = ""  # the framing that marks the turn as a heartbeat poll or wake-up
    framed: tuple[str, ...] = ()  # the framings that applied, in table order
    trailing: int = 0  # the client's own context messages at the very end (the next request
    # of the conversation will not repeat them: a prompt-cache breakpoint goes before them)


@dataclass(frozen=True, slots=True)
class _Table:
    skip: tuple[tuple[str, re.Pattern[str]], ...]
    strip: tuple[tuple[str, re.Pattern[str]], ...]
    heartbeat: tuple[tuple[str, re.Pattern[str]], ...]


@functools.lru_cache(maxsize=16)
def _table(framings: tuple[Framing, ...]) -> _Table:
    """The framings compiled once per policy (config validation already checked them)."""
    by_action: dict[str, list[tuple[str, re.Pattern[str]]]] = {
        "skip": [],
        "strip": [],
        "heartbeat": [],
    }
    for framing in framings:
        by_action[framing.action].append((framing.name, re.compile(framing.pattern)))
    return _Table(*(tuple(by_action[a]) for a in ("skip", "strip", "heartbeat")))


def read_request(request: ChatRequest, framings: tuple[Framing, ...] = ()) -> Reading:
    """Find the human's latest turn, from the end: past tool results, the model's tool calls and
    the client's own context messages."""
    table = _table(framings)
    continuation = False
    skipped: list[str] = []
    trailing, at_end = 0, True
    messages = request.messages
    for at in range(len(messages) - 1, -1, -1):
        message = messages[at]
        if message.role != "user":
            continuation = continuation or _calls_or_results(message)
            at_end = False
            continue
        if _calls_or_results(message):  # Anthropic sends tool results as a user message
            continuation, at_end = True, False
            continue
        text = message.text
        if blank(text):
            at_end = False
            continue
        skip = next((name for name, rx in table.skip if rx.search(text)), None)
        if skip is not None:
            skipped.append(skip)
            trailing += at_end
            continue
        framed = dict.fromkeys(skipped)
        for _ in range(3):  # framings nest in either order (a timestamp, then metadata, ...)
            before = len(text)
            for name, rx in table.strip:
                stripped = rx.sub("", text, count=1)
                if len(stripped) != len(text):
                    text = stripped
                    framed[name] = None
            if len(text) == before:
                break
        beat = next((name for name, rx in table.heartbeat if rx.search(text)), "")
        if beat:
            framed[beat] = None
        return Reading(text.strip(), at, continuation, beat, tuple(framed), trailing)
    return Reading("", None, continuation, framed=tuple(dict.fromkeys(skipped)), trailing=trailing)


def _calls_or_results(message: Message) -> bool:
    return any(isinstance(part, (ToolCallPart, ToolResultPart)) for part in message.content)
