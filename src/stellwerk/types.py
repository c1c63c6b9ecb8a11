"""The values that flow through Stellwerk, independent of any wire format.

Every client format (OpenAI Chat Completions, Anthropic Messages) is parsed into these types, and
every provider adapter translates them into its own protocol. Keeping one internal shape is what
lets a request with tools fall back from Anthropic to OpenAI to Ollama with its tool calls intact.
All of them are frozen: a request is never mutated on its way through the router, only replaced.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant", "tool"]
StopReason = Literal["end", "max_tokens", "tool_use", "stop_sequence", "content_filter", "error"]


class TaskClass(enum.StrEnum):
    """What kind of work a request is; each class selects a chain."""

    HEARTBEAT = "heartbeat"
    SIMPLE = "simple"
    COMPLEX = "complex"
    CODE = "code"
    REASONING = "reasoning"
    EMERGENCY = "emergency"  # chosen by state, never by text


TEXT_CLASSES = (
    TaskClass.HEARTBEAT,
    TaskClass.SIMPLE,
    TaskClass.COMPLEX,
    TaskClass.CODE,
    TaskClass.REASONING,
)


class Tier(enum.StrEnum):
    """Price class of a model; budgets downgrade by tier."""

    PREMIUM = "premium"
    MID = "mid"
    BUDGET = "budget"
    LOCAL = "local"
    AGGREGATOR = "aggregator"


# -- content parts ---------------------------------------------------------------------------


# A prompt-cache breakpoint as the client sent it: Anthropic's `cache_control` object
# (`{"type": "ephemeral"}`, optionally with `"ttl": "1h"`). It travels with its part unchanged
# to an upstream that honours it; others ignore it.
Cache = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str
    cache: Cache | None = None


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image, either by URL or inline base64 `data` with its media type."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    cache: Cache | None = None


@dataclass(frozen=True, slots=True)
class ToolCallPart:
    """The model asks to call a tool; `arguments` is the JSON text of the arguments."""

    id: str
    name: str
    arguments: str
    cache: Cache | None = None


@dataclass(frozen=True, slots=True)
class ToolResultPart:
    """The caller's answer to a tool call."""

    tool_call_id: str
    content: str
    is_error: bool = False
    cache: Cache | None = None


@dataclass(frozen=True, slots=True)
class ThinkingPart:
    """Reasoning text a model exposed; `signature` is Anthropic's opaque check value."""

    text: str
    signature: str | None = None


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart | ThinkingPart


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: tuple[Part, ...]

    @classmethod
    def of(cls, role: Role, text: str) -> Message:
        """A message holding one text part."""
        return cls(role, (TextPart(text),))

    @property
    def text(self) -> str:
        """The message's text parts joined, without tool calls, results or thinking."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    cache: Cache | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat request in Stellwerk's own terms.

    `model` is what the caller asked for: `auto`, `auto:<class>`, an alias or `provider/model`.
    `task` is an explicit class from outside the body (the `x-stellwerk-task` header).
    """

    messages: tuple[Message, ...]
    system: str | None = None
    model: str = "auto"
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None  # auto | none | required | {"name": T}
    stream: bool = False
    task: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # The system prompt as the client's blocks, when it sent blocks with cache breakpoints;
    # `system` is always their text, joined, for everything that reads it.
    system_blocks: tuple[TextPart, ...] = ()
    cache_key: str | None = None  # OpenAI's `prompt_cache_key`, passed through
    # The TTL of the breakpoints Stellwerk places itself for a target that needs them (Anthropic)
    # when the client placed none: "5m", "1h", or None for none (set per class by the router).
    cache_ttl: str | None = None
    cache_prefix_only: bool = False  # mark the tools and system only: the turn is not reused
    cache_tail: int = 0  # messages at the end the next request will not repeat (a client's
    # context message): the conversation's breakpoint goes on the message before them
    # The prompt's token estimate, kept by `tokens.estimate_prompt` with the system prompt,
    # messages and tools it counted: `replace()` carries it over, and it counts only while
    # those are still the very same objects (a request that was cut or fitted is counted anew).
    estimated: tuple[object, object, object, int] | None = field(
        default=None, compare=False, repr=False
    )

    @property
    def cache_marked(self) -> bool:
        """Whether the client placed any prompt-cache breakpoint."""
        return (
            any(p.cache for p in self.system_blocks)
            or any(t.cache for t in self.tools)
            or any(getattr(p, "cache", None) for m in self.messages for p in m.content)
        )

    @classmethod
    def of(cls, prompt: str, *, system: str | None = None, model: str = "auto") -> ChatRequest:
        """A one-turn request, as `stellwerk route "PROMPT"` builds it."""
        return cls(messages=(Message.of("user", prompt),), system=system, model=model)

    def last_user_text(self) -> str:
        """The text of the latest user turn, or '' when there is none."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text
        return ""


# -- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one attempt; `estimated` when the provider did not report them.

    `input_tokens` is the whole prompt; `cache_read_tokens` and `cache_write_tokens` are the parts
    of it read from or written to a prompt cache (OpenAI's convention; Anthropic's uncached
    `input_tokens` is converted at the edge).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    estimated: bool = False
    cache_write_1h_tokens: int = 0  # the part of cache_write_tokens written for 1 h (Anthropic)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A complete answer. `target` is the `provider/model` that produced it."""

    target: str
    content: tuple[Part, ...]
    stop_reason: StopReason = "end"
    usage: Usage = field(default_factory=Usage)
    id: str = ""
    upstream_model: str | None = None  # what the upstream says it ran (openrouter/auto resolves)
    cost_micros: int | None = None  # cost the upstream reported, if it did

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def tool_calls(self) -> tuple[ToolCallPart, ...]:
        return tuple(p for p in self.content if isinstance(p, ToolCallPart))


# -- stream chunks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    text: str
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """A new tool call begins at `index` (its arguments follow as `ToolCallDelta`s)."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    arguments: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last chunk of every complete stream."""

    stop_reason: StopReason
    usage: Usage
    upstream_model: str | None = None
    cost_micros: int | None = None


Chunk = TextDelta | ThinkingDelta | ToolCallStart | ToolCallDelta | StreamEnd


def is_content(chunk: Chunk) -> bool:
    """Whether a chunk carries output the client sees (after it, failover is over)."""
    return not isinstance(chunk, StreamEnd)
