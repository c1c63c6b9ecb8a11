"""Fitting a request to a small model: its window, its output limit, the features it lacks.

A local model in emergency mode has an 8k or 16k window where an agent's conversation may hold
100k tokens, and it may not call tools or see images. Failing there would leave the agent with
no answer at all, so where the class policy says `context: fit` the router fits the request to
each target before the attempt and says what it changed, in one notice per change:

- The system prompt stays, the latest turns stay, the oldest messages go first. An assistant
  message that calls tools and the messages that carry the results are one unit, dropped
  together: a result without its call (or a call without its result) is rejected by providers.
  An answer whose question was dropped goes with it.
- Room for the output stays: `max_tokens` (capped at the model's `max_output`; without one, a
  quarter of the window) is reserved, and set on the fitted request so the model cannot run past
  the window while it answers.
- When what is left is still too large, the longest texts are shortened in the middle.
- When the first kept message is not the user's, a one-line user turn says what was left out
  (Anthropic and others insist that a conversation starts with the user).
- Tools the model cannot call are dropped when the request can be answered without them (earlier
  tool calls and results are kept as text); a request that requires a tool call cannot be, and
  the target is skipped. Images are never turned into text: the planner leaves a model without
  vision out of a request that holds one (`_images` remains as a guard for callers of `adapt`).

Everything here is pure and estimates with `stellwerk.tokens`, which errs high.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from .failures import FailureClass
from .policy import ContextPolicy, ModelSpec
from .tokens import CHARS_PER_TOKEN, estimate_message, estimate_prompt
from .types import (
    ChatRequest,
    ImagePart,
    Message,
    Part,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

OVERFLOW_MARGIN = 0.9
"""After a context overflow the estimate is trusted this much less than it proved to be worth."""

_CUT = "\n[… {} characters cut …]\n"


@dataclass(frozen=True, slots=True)
class Fitted:
    """A request fitted to a budget of prompt tokens, and what fitting left out."""

    request: ChatRequest
    dropped: int = 0  # messages left out
    total: int = 0  # messages there were
    dropped_tokens: int = 0  # their estimated tokens
    shortened: int = 0  # texts cut in the middle

    @property
    def changed(self) -> bool:
        return bool(self.dropped or self.shortened)


@dataclass(frozen=True, slots=True)
class Adapted:
    """A request made ready for one target; `refusal` says why the target cannot serve it."""

    request: ChatRequest
    notices: tuple[str, ...] = ()
    refusal: str | None = None


def output_room(request: ChatRequest, model: ModelSpec) -> int:
    """Tokens to keep free for the answer: what was asked (or a quarter of the window), capped."""
    wanted = request.max_tokens or model.context_window // 4
    return max(1, min(wanted, model.max_output))


def units(messages: Sequence[Message]) -> list[tuple[int, int]]:
    """The messages as `[start, end)` ranges that must stay together (a tool call and its
    results); everything else is a unit of one message."""
    ranges: list[tuple[int, int]] = []
    i = 0
    while i < len(messages):
        end = i + 1
        pending = {p.id for p in messages[i].content if isinstance(p, ToolCallPart)}
        while pending and end < len(messages) and _answers(messages[end]):
            pending -= {
                p.tool_call_id for p in messages[end].content if isinstance(p, ToolResultPart)
            }
            end += 1
        ranges.append((i, end))
        i = end
    return ranges


def fit_context(request: ChatRequest, budget: int) -> Fitted:
    """The request with the oldest units dropped (then the longest texts shortened) until its
    estimated prompt is at most `budget` tokens; unchanged if it fits already."""
    total = estimate_prompt(request)
    messages = request.messages
    if total <= budget or not messages:
        return Fitted(request, total=len(messages))
    ranges = units(messages)
    sizes = [sum(estimate_message(m) for m in messages[a:b]) for a, b in ranges]
    fixed = total - sum(sizes)
    first, size = 0, sum(sizes)
    while first < len(ranges) - 1 and fixed + size + _note_cost(ranges[first][0]) > budget:
        size -= sizes[first]
        first += 1
    while first < len(ranges) - 1 and _answer_alone(messages[ranges[first][0]]):
        size -= sizes[first]  # an answer whose question was dropped goes with it
        first += 1
    start = ranges[first][0]
    kept = _with_note(messages[start:], start)
    fitted = replace(request, messages=kept)
    fitted, shortened = _shorten(fitted, budget)
    dropped_tokens = sum(sizes[:first])
    return Fitted(fitted, start, len(messages), dropped_tokens, shortened)


def adapt(request: ChatRequest, model: ModelSpec, *, scale: float = 1.0) -> Adapted:
    """The request as `model` can take it: output capped, missing features dropped, and the
    conversation fitted to `scale` × the room the window leaves for the prompt."""
    notices: list[str] = []
    request, refusal = _tools(request, model, notices)
    if refusal is not None:
        return Adapted(request, (), refusal)
    request = _images(request, model, notices)
    request = _cap_output(request, model, notices)
    request = _fit_window(request, model, scale, notices)
    return Adapted(request, tuple(notices))


class Fitting:
    """The fitting of one request across its attempts.

    Under `context: fit` every target gets an adapted request. Elsewhere the planner has already
    left out targets too small for the estimate; if a target still answers `context_overflow`,
    the estimate proved short, so later targets whose window is no larger are fitted too, with
    the estimate scaled down by what the overflow showed.
    """

    def __init__(self, context: ContextPolicy) -> None:
        self.fit_all = context is ContextPolicy.FIT
        self.scale = 1.0
        self.overflowed: int | None = None  # the largest window that overflowed
        self._sent: dict[str, int] = {}  # model id -> estimated prompt tokens sent to it
        self._notices: dict[str, tuple[str, ...]] = {}  # model id -> what fitting changed

    def prepare(self, request: ChatRequest, model: ModelSpec) -> Adapted:
        """The request to send to `model`, with the notices that go with an answer from it."""
        if self.fit_all:
            adapted = adapt(request, model, scale=self.scale)
        elif self.overflowed is not None and model.context_window <= self.overflowed:
            notices: list[str] = []
            adapted = Adapted(_fit_window(request, model, self.scale, notices), tuple(notices))
        else:
            adapted = Adapted(request)
        self._sent[model.id] = estimate_prompt(adapted.request)
        self._notices[model.id] = adapted.notices
        return adapted

    def notices(self, model: ModelSpec) -> tuple[str, ...]:
        """What was changed for `model` (for the decision, once it answered)."""
        return self._notices.get(model.id, ())

    def failed(self, failure: FailureClass, model: ModelSpec, request: ChatRequest) -> None:
        """Learn from a failed attempt: a context overflow shrinks what later targets get."""
        if failure is not FailureClass.CONTEXT_OVERFLOW:
            return
        sent = self._sent.get(model.id, 0)
        room = max(model.context_window - output_room(request, model), 1)
        self.scale = min(self.scale, sent / room if sent else 1.0) * OVERFLOW_MARGIN
        window = model.context_window
        self.overflowed = window if self.overflowed is None else max(self.overflowed, window)


# -- features --------------------------------------------------------------------------------


def _tools(
    request: ChatRequest, model: ModelSpec, notices: list[str]
) -> tuple[ChatRequest, str | None]:
    if not request.tools or "tools" in model.capabilities:
        return request, None
    choice = request.tool_choice
    if choice == "required" or isinstance(choice, Mapping):
        return request, "lacks tools (the request requires a tool call)"
    notices.append(f"tools dropped: {model.id} cannot call tools")
    messages = tuple(_tools_as_text(m) for m in request.messages)
    return replace(request, tools=(), tool_choice=None, messages=messages), None


def _tools_as_text(message: Message) -> Message:
    if not any(isinstance(p, ToolCallPart | ToolResultPart) for p in message.content):
        return message
    parts = tuple(_part_as_text(p) for p in message.content)
    return Message("user" if message.role == "tool" else message.role, parts)


def _part_as_text(part: Part) -> Part:
    if isinstance(part, ToolCallPart):
        return TextPart(f"[called tool {part.name}({part.arguments})]")
    if isinstance(part, ToolResultPart):
        return TextPart(f"[tool result{' (error)' if part.is_error else ''}: {part.content}]")
    return part


def _images(request: ChatRequest, model: ModelSpec, notices: list[str]) -> ChatRequest:
    if "vision" in model.capabilities:
        return request
    if not any(isinstance(p, ImagePart) for m in request.messages for p in m.content):
        return request
    notices.append(f"images dropped: {model.id} cannot see images")
    return replace(request, messages=tuple(_without_images(m) for m in request.messages))


def _without_images(message: Message) -> Message:
    if not any(isinstance(p, ImagePart) for p in message.content):
        return message
    parts = tuple(
        TextPart("[image omitted]") if isinstance(p, ImagePart) else p for p in message.content
    )
    return Message(message.role, parts)


def _cap_output(request: ChatRequest, model: ModelSpec, notices: list[str]) -> ChatRequest:
    if request.max_tokens is None or request.max_tokens <= model.max_output:
        return request
    notices.append(f"max_tokens capped to {model.max_output} ({model.id}'s limit)")
    return replace(request, max_tokens=model.max_output)


# -- the window ------------------------------------------------------------------------------


def _fit_window(
    request: ChatRequest, model: ModelSpec, scale: float, notices: list[str]
) -> ChatRequest:
    room = output_room(request, model)
    budget = int((model.context_window - room) * scale)
    fitted = fit_context(request, budget)
    if not fitted.changed:
        return request
    notices.append(_fit_notice(fitted, model))
    return replace(fitted.request, max_tokens=room)


def _fit_notice(fitted: Fitted, model: ModelSpec) -> str:
    window = f"{model.id}'s {k_tokens(model.context_window)} window"
    parts = []
    if fitted.dropped:
        tokens = k_tokens(fitted.dropped_tokens)
        parts.append(f"dropped {fitted.dropped} of {fitted.total} messages (≈{tokens} tokens)")
    if fitted.shortened:
        parts.append(f"shortened {fitted.shortened} text{'s' if fitted.shortened > 1 else ''}")
    return f"context fitted: {' and '.join(parts)} for {window}"


def k_tokens(tokens: int) -> str:
    """`8k` for 8192, `98k` for 98,000, `512` below a thousand."""
    if tokens >= 1024 and tokens % 1024 == 0:
        return f"{tokens // 1024}k"
    return f"{round(tokens / 1000)}k" if tokens >= 1000 else str(tokens)


def _answer_alone(message: Message) -> bool:
    """An assistant message that calls no tool: an answer, meaningless without its question."""
    return message.role == "assistant" and not any(
        isinstance(p, ToolCallPart) for p in message.content
    )


def _answers(message: Message) -> bool:
    return message.role == "tool" or any(_is_result(p) for p in message.content)


def _is_result(part: Part) -> bool:
    return isinstance(part, ToolResultPart)


def _note(dropped: int) -> Message:
    return Message.of("user", f"[{dropped} earlier messages left out to fit the context window]")


def _note_cost(start: int) -> int:
    return estimate_message(_note(start)) if start else 0


def _with_note(kept: Sequence[Message], dropped: int) -> tuple[Message, ...]:
    if not dropped or (kept and kept[0].role == "user" and not _answers(kept[0])):
        return tuple(kept)
    return (_note(dropped), *kept)


# -- shortening ------------------------------------------------------------------------------


def _shorten(request: ChatRequest, budget: int) -> tuple[ChatRequest, int]:
    """Cut the longest texts in the middle until the estimate fits; the system prompt last."""
    shortened = 0
    for _ in range(64):  # bounded: each round cuts one text
        excess = estimate_prompt(request) - budget
        if excess <= 0:
            break
        cut = _cut_longest(request, excess * CHARS_PER_TOKEN + 64)
        if cut is None:
            break
        request = cut
        shortened += 1
    return request, shortened


def _cut_longest(request: ChatRequest, chars: int) -> ChatRequest | None:
    best: tuple[int, int, int] | None = None  # (length, message index, part index)
    for i, message in enumerate(request.messages):
        for j, part in enumerate(message.content):
            length = len(_text_of(part))
            if length > 256 and (best is None or length > best[0]):
                best = (length, i, j)
    if best is None:
        system = request.system or ""
        if len(system) <= 256:
            return None
        return replace(request, system=_cut(system, chars), system_blocks=())  # blocks: stale
    _, i, j = best
    message = request.messages[i]
    part = message.content[j]
    new = _with_text(part, _cut(_text_of(part), chars))
    content = (*message.content[:j], new, *message.content[j + 1 :])
    messages = (*request.messages[:i], Message(message.role, content), *request.messages[i + 1 :])
    return replace(request, messages=messages)


def _text_of(part: Part) -> str:
    if isinstance(part, TextPart):
        return part.text
    if isinstance(part, ToolResultPart):
        return part.content
    return ""


def _with_text(part: Part, text: str) -> Part:
    if isinstance(part, ToolResultPart):
        return replace(part, content=text)
    return TextPart(text)


def _cut(text: str, chars: int) -> str:
    """`text` without `chars` characters from its middle (at least a quarter of it kept)."""
    keep = max(len(text) - chars, len(text) // 4)
    head, tail = keep // 2, keep - keep // 2
    return text[:head] + _CUT.format(len(text) - keep) + (text[-tail:] if tail else "")


def minimal_context(request: ChatRequest, turn: int | None = None) -> ChatRequest:
    """The system prompt and the human's latest turn with what follows it (its tool calls and
    results, a client's context message), nothing older. `turn` is where reading found that turn
    (`Classification.reading.at`); without it, the latest user message with text.

    Heartbeats need no history: an idle agent's 100k-token conversation stays out of them.
    """
    messages = request.messages
    if turn is None:
        turn = next(
            (
                i
                for i in range(len(messages) - 1, -1, -1)
                if messages[i].role == "user" and messages[i].text
            ),
            None,
        )
    if not turn:  # None, or the turn is the first message already
        return request
    return replace(request, messages=messages[turn:])
