"""The Anthropic Messages format, translated to and from Stellwerk's own types.

Both sides of Stellwerk speak this format. Clients send Messages requests (`parse_request`) and
read answers (`render_response`, `StreamRenderer`); the Anthropic adapter sends the same content
blocks upstream (`messages_to_wire`, `tool_to_wire`, `tool_choice_to_wire`) and reads the answers
back (`parse_blocks`, `parse_usage`). One translation for both directions keeps tool calls, images
and thinking signatures intact when a request crosses from one format to another.

Internally `tool_choice` is OpenAI-shaped ("auto", "required", "none" or a function object), and a
`redacted_thinking` block travels as a `ThinkingPart` whose signature starts with `REDACTED`.
Everything here is pure: dicts in, frozen dataclasses out, and back.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from ..errors import RequestError
from ..types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    ImagePart,
    Message,
    Part,
    StopReason,
    StreamEnd,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
)
from . import dumps

API_VERSION = "2023-06-01"
REDACTED = "redacted:"  # signature prefix: this ThinkingPart is a redacted_thinking block

Block = dict[str, Any]

STOP_REASONS: Mapping[str, StopReason] = {
    "end_turn": "end",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "pause_turn": "end",
    "refusal": "content_filter",
    "model_context_window_exceeded": "max_tokens",
}
WIRE_STOP_REASONS: Mapping[StopReason, str] = {
    "end": "end_turn",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
}
_CHOICE_TO_WIRE = {"auto": "auto", "required": "any", "any": "any", "none": "none"}
_CHOICE_FROM_WIRE = {"auto": "auto", "any": "required", "none": "none"}
_DATA_URL = re.compile(r"^data:(?P<media>[\w/+.-]+);base64,(?P<data>.*)$", re.DOTALL)


def stop_reason(value: object) -> StopReason:
    """Our stop reason for an Anthropic `stop_reason` (unknown or missing: "end")."""
    return STOP_REASONS.get(value, "end") if isinstance(value, str) else "end"


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


# -- our parts -> content blocks -------------------------------------------------------------


def part_to_block(part: Part) -> Block | None:
    """The content block of one part, with its cache breakpoint; None for an empty text or an
    image without a source."""
    block = _block(part)
    cache = getattr(part, "cache", None)
    if block is not None and cache:
        block["cache_control"] = dict(cache)
    return block


def _block(part: Part) -> Block | None:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ImagePart):
        return _image_block(part)
    if isinstance(part, ToolCallPart):
        args = tool_input(part.arguments)
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": args}
    if isinstance(part, ToolResultPart):
        return _tool_result_block(part)
    return _thinking_block(part)


def _image_block(part: ImagePart) -> Block | None:
    if part.data:
        media = part.media_type or "image/png"
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media, "data": part.data},
        }
    if not part.url:
        return None
    if match := _DATA_URL.match(part.url):  # OpenAI clients inline images as data: URLs
        source = {"type": "base64", "media_type": match["media"], "data": match["data"]}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _tool_result_block(part: ToolResultPart) -> Block:
    block: Block = {"type": "tool_result", "tool_use_id": part.tool_call_id}
    if part.content:
        block["content"] = part.content
    if part.is_error:
        block["is_error"] = True
    return block


def _thinking_block(part: ThinkingPart) -> Block:
    signature = part.signature or ""
    if signature.startswith(REDACTED):
        return {"type": "redacted_thinking", "data": signature.removeprefix(REDACTED)}
    return {"type": "thinking", "thinking": part.text, "signature": signature}


def compact_json(value: object) -> str:
    """Tool-call arguments as text, the way OpenAI's models write them (no spaces, UTF-8 kept):
    the same call re-encoded from Anthropic's `input` object stays byte-identical, so a session
    that crosses formats keeps its prefix cache at its tool calls."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def tool_input(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as the JSON object Anthropic requires ({} when they are not one)."""
    try:
        value = json.loads(arguments or "{}")
    except (ValueError, RecursionError):  # nested too deeply for json (an upstream's answer)
        return {}
    return value if isinstance(value, dict) else {}


def messages_to_wire(messages: Iterable[Message]) -> list[Block]:
    """Messages as Anthropic wants them upstream.

    Tool messages become user turns, consecutive turns of one role are merged, tool results come
    first in their turn (the API requires it), and what Anthropic would reject is left out: empty
    text, and thinking without a signature (it cannot be verified) or outside assistant turns.
    """
    turns: list[Block] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = [b for p in message.content if _sendable(p, role) and (b := part_to_block(p))]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return turns


def _sendable(part: Part, role: str) -> bool:
    if isinstance(part, ThinkingPart):
        return role == "assistant" and bool(part.signature)
    return True


def tool_to_wire(tool: Tool) -> Block:
    schema = dict(tool.parameters) or {"type": "object", "properties": {}}
    schema.setdefault("type", "object")
    block: Block = {"name": tool.name, "input_schema": schema}
    if tool.description:
        block["description"] = tool.description
    if tool.cache:
        block["cache_control"] = dict(tool.cache)
    return block


def tool_choice_to_wire(choice: object) -> Block | None:
    """Anthropic's tool_choice for an OpenAI-style one (Anthropic-style objects pass through)."""
    if isinstance(choice, str):
        kind = _CHOICE_TO_WIRE.get(choice)
        return {"type": kind} if kind else None
    if not isinstance(choice, Mapping):
        return None
    if choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        return {"type": "tool", "name": name} if isinstance(name, str) and name else None
    if choice.get("type") in ("auto", "any", "none", "tool"):
        return dict(choice)
    return None


def usage_to_wire(usage: Usage) -> Block:
    """Anthropic's usage object: its `input_tokens` leaves out the cached parts."""
    cached = usage.cache_read_tokens + usage.cache_write_tokens
    return {
        "input_tokens": max(usage.input_tokens - cached, 0),
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_write_tokens - usage.cache_write_1h_tokens,
            "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens,
        },
        "output_tokens": usage.output_tokens,
    }


# -- content blocks -> our parts -------------------------------------------------------------


def parse_blocks(blocks: object, where: str, *, strict: bool = True) -> tuple[Part, ...]:
    """The parts of a `content` value (a string or a list of blocks).

    `strict` (client requests) rejects block types Stellwerk cannot carry; answers from upstream
    skip them instead (server tool results, for example). Raises RequestError naming the path.
    """
    if isinstance(blocks, str):
        return (TextPart(blocks),)
    if not isinstance(blocks, list):
        raise RequestError(f"{where}: expected a string or a list of content blocks")
    parts: list[Part] = []
    for i, block in enumerate(blocks):
        parsed = block_to_parts(block, f"{where}.{i}")
        if parsed is None and strict:
            kind = block.get("type") if isinstance(block, Mapping) else None
            raise RequestError(f"{where}.{i}: unsupported content block type {kind!r}")
        parts.extend(parsed or ())
    return tuple(parts)


def block_to_parts(block: object, where: str) -> tuple[Part, ...] | None:
    """The parts of one block; None when its type is not one Stellwerk carries."""
    if not isinstance(block, Mapping):
        raise RequestError(f"{where}: expected a content block object")
    parse = _BLOCK_PARSERS.get(str(block.get("type")))
    return None if parse is None else parse(block, where)


def _text(block: Mapping[str, Any], where: str) -> tuple[Part, ...]:
    return (TextPart(_str(block, "text", where), _cache(block, where)),)


def _cache(block: Mapping[str, Any], where: str) -> Mapping[str, Any] | None:
    """A block's `cache_control`, kept as sent (None when there is none)."""
    cache = block.get("cache_control")
    if cache is None:
        return None
    if not isinstance(cache, Mapping) or not isinstance(cache.get("type"), str):
        raise RequestError(f"{where}.cache_control: expected an object with a type")
    return dict(cache)


def _image(block: Mapping[str, Any], where: str) -> tuple[Part, ...]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, Mapping) else None
    cache = _cache(block, where)
    if kind == "base64" and isinstance(source, Mapping):
        data = _str(source, "data", f"{where}.source")
        media = _str(source, "media_type", f"{where}.source")
        return (ImagePart(data=data, media_type=media, cache=cache),)
    if kind == "url" and isinstance(source, Mapping):
        return (ImagePart(url=_str(source, "url", f"{where}.source"), cache=cache),)
    raise RequestError(f"{where}.source: expected a base64 or url image source")


def _tool_use(block: Mapping[str, Any], where: str) -> tuple[Part, ...]:
    args = block.get("input", {})
    if not isinstance(args, Mapping):
        raise RequestError(f"{where}.input: expected an object")
    name, arguments = _str(block, "name", where), compact_json(args)
    return (ToolCallPart(_str(block, "id", where), name, arguments, _cache(block, where)),)


def _tool_result(block: Mapping[str, Any], where: str) -> tuple[Part, ...]:
    """A tool result; images inside it follow it as their own parts (ours carry text only)."""
    tool_id = _str(block, "tool_use_id", where)
    content = block.get("content", "")
    inner = parse_blocks(content, f"{where}.content") if content != "" else ()
    if any(not isinstance(p, TextPart | ImagePart) for p in inner):
        raise RequestError(f"{where}.content: tool results may hold only text and images")
    text = "\n".join(p.text for p in inner if isinstance(p, TextPart))
    images = tuple(p for p in inner if isinstance(p, ImagePart))
    error, cache = bool(block.get("is_error", False)), _cache(block, where)
    return (ToolResultPart(tool_id, text, error, cache), *images)


def _thinking(block: Mapping[str, Any], where: str) -> tuple[Part, ...]:
    signature = block.get("signature")
    text = _str(block, "thinking", where)
    return (ThinkingPart(text, signature if isinstance(signature, str) and signature else None),)


def _redacted(block: Mapping[str, Any], where: str) -> tuple[Part, ...]:
    return (ThinkingPart("", REDACTED + _str(block, "data", where)),)


_BLOCK_PARSERS: dict[str, Callable[[Mapping[str, Any], str], tuple[Part, ...]]] = {
    "text": _text,
    "image": _image,
    "tool_use": _tool_use,
    "tool_result": _tool_result,
    "thinking": _thinking,
    "redacted_thinking": _redacted,
}


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise RequestError(f"{where}.{key}: expected a string")
    return value


def parse_usage(data: object) -> Usage | None:
    """Usage from an Anthropic `usage` object; None when there is none.

    Stellwerk's `input_tokens` is the whole prompt (OpenAI's convention): Anthropic's uncached
    `input_tokens` plus the cache reads and writes, which are also kept apart as parts of it.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("output_tokens"), int):
        return None
    cached = _int(data, "cache_read_input_tokens") + _int(data, "cache_creation_input_tokens")
    split = data.get("cache_creation")  # {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}
    hour = _int(split, "ephemeral_1h_input_tokens") if isinstance(split, Mapping) else 0
    return Usage(
        input_tokens=_int(data, "input_tokens") + cached,
        output_tokens=_int(data, "output_tokens"),
        cache_read_tokens=_int(data, "cache_read_input_tokens"),
        cache_write_tokens=_int(data, "cache_creation_input_tokens"),
        cache_write_1h_tokens=hour,
    )


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) else 0


# -- client requests in, answers out ---------------------------------------------------------


def parse_request(data: object) -> ChatRequest:
    """A client's Messages request body as a ChatRequest; RequestError names what is wrong.

    `max_tokens` may be left out (the adapter then picks the target model's default).
    """
    if not isinstance(data, Mapping):
        raise RequestError("request body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model: field required (a model name, 'auto' or 'auto:<class>')")
    system, system_blocks = _parse_system(data.get("system"))
    _check_unused(data)
    return ChatRequest(
        messages=_parse_messages(data.get("messages")),
        system=system,
        system_blocks=system_blocks,
        model=model,
        max_tokens=_max_tokens(data.get("max_tokens")),
        temperature=_unit(data, "temperature"),
        top_p=_unit(data, "top_p"),
        stop=_parse_stop(data.get("stop_sequences")),
        tools=_parse_tools(data.get("tools")),
        tool_choice=tool_choice_from_wire(data.get("tool_choice")),
        stream=_stream(data.get("stream")),
        metadata=_parse_metadata(data.get("metadata")),
    )


def _parse_messages(value: object) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise RequestError("messages: expected a non-empty list of messages")
    return tuple(_parse_message(m, f"messages.{i}") for i, m in enumerate(value))


def _parse_message(value: object, where: str) -> Message:
    if not isinstance(value, Mapping):
        raise RequestError(f"{where}: expected an object with role and content")
    role = value.get("role")
    if role not in ("user", "assistant"):
        raise RequestError(f"{where}.role: expected 'user' or 'assistant', got {role!r}")
    return Message(role, parse_blocks(value.get("content"), f"{where}.content"))


def _parse_system(value: object) -> tuple[str | None, tuple[TextPart, ...]]:
    """The system prompt's text, and its blocks when it came as blocks (forwarded as they are,
    cache breakpoints included)."""
    if value is None or isinstance(value, str):
        return value or None, ()
    parts = parse_blocks(value, "system")
    blocks = tuple(p for p in parts if isinstance(p, TextPart))
    if len(blocks) != len(parts):
        raise RequestError("system: expected a string or a list of text blocks")
    return "\n\n".join(p.text for p in blocks) or None, blocks


def _max_tokens(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"max_tokens: expected a positive integer, got {value!r}")
    return value


def _stream(value: object) -> bool:
    if value is not None and not isinstance(value, bool):
        raise RequestError(f"stream: expected true or false, got {value!r}")
    return bool(value)


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _unit(data: Mapping[str, Any], key: str) -> float | None:
    """`temperature` or `top_p`: Anthropic takes 0 to 1 and answers `temperature: range: 0..1`
    otherwise (it once took -1 as well: `range: -1 or 0..1`)."""
    value = _number(data, key)
    if value is not None and not 0 <= value <= 1:
        raise RequestError(f"{key}: range: 0..1 (got {value:g})")
    return value


MAX_USER_ID = 256
MIN_THINKING_BUDGET = 1024


def _check_unused(data: Mapping[str, Any]) -> None:
    """What Anthropic rejects of the fields Stellwerk passes on or ignores, before an attempt is
    spent on it: `top_k`, `metadata`, `thinking`, `service_tier`."""
    top_k = data.get("top_k")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise RequestError(f"top_k: Input should be a valid integer, got {top_k!r}")
        if top_k < 0:
            raise RequestError(f"top_k: Input should be greater than or equal to 0, got {top_k}")
    metadata = data.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise RequestError("metadata: Input should be a valid dictionary")
        user = metadata.get("user_id")
        if user is not None and not isinstance(user, str):
            raise RequestError("metadata.user_id: Input should be a valid string")
        if isinstance(user, str) and len(user) > MAX_USER_ID:
            raise RequestError(
                f"metadata.user_id: String should have at most {MAX_USER_ID} characters"
            )
    tier = data.get("service_tier")
    if tier is not None and tier not in ("auto", "standard_only"):
        raise RequestError("service_tier: Input should be 'auto' or 'standard_only'")
    _check_thinking(data.get("thinking"), data.get("max_tokens"))


def _check_thinking(thinking: object, max_tokens: object) -> None:
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if not isinstance(thinking, Mapping) or not isinstance(kind, str):
        raise RequestError("thinking: Input should be an object with a type")
    if kind != "enabled":
        return
    budget = thinking.get("budget_tokens")
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise RequestError("thinking.enabled.budget_tokens: Input should be a valid integer")
    if budget < MIN_THINKING_BUDGET:
        raise RequestError(
            "thinking.enabled.budget_tokens: Input should be greater than or equal to"
            f" {MIN_THINKING_BUDGET}"
        )
    if isinstance(max_tokens, int) and max_tokens <= budget:
        raise RequestError("max_tokens: `max_tokens` must be greater than `thinking.budget_tokens`")


def _parse_stop(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise RequestError("stop_sequences: expected a list of strings")
    return tuple(value)


def _parse_tools(value: object) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RequestError("tools: expected a list of tool definitions")
    return tuple(_parse_tool(t, f"tools.{i}") for i, t in enumerate(value))


def _parse_tool(value: object, where: str) -> Tool:
    if not isinstance(value, Mapping):
        raise RequestError(f"{where}: expected a tool definition object")
    if value.get("type") not in (None, "custom"):
        raise RequestError(f"{where}: server tool {value.get('type')!r} is not supported")
    schema = value.get("input_schema")
    if not isinstance(schema, Mapping):
        raise RequestError(f"{where}.input_schema: expected a JSON schema object")
    description = value.get("description") or ""
    if not isinstance(description, str):
        raise RequestError(f"{where}.description: expected a string")
    return Tool(_str(value, "name", where), description, dict(schema), _cache(value, where))


def tool_choice_from_wire(value: object) -> str | dict[str, Any] | None:
    """The OpenAI-style tool_choice Stellwerk uses internally for an Anthropic one."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, Mapping) else None
    if isinstance(kind, str) and kind in _CHOICE_FROM_WIRE:
        return _CHOICE_FROM_WIRE[kind]
    name = value.get("name") if isinstance(value, Mapping) else None
    if kind == "tool" and isinstance(name, str) and name:
        return {"type": "function", "function": {"name": name}}
    raise RequestError("tool_choice: expected type auto, any, none, or tool with a name")


def _parse_metadata(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    user = value.get("user_id")
    return {"user_id": user} if isinstance(user, str) and user else {}


def render_response(response: ChatResponse, model_name: str) -> Block:
    """A Messages API answer for a client that asked for `model_name`."""
    blocks = [b for p in response.content if (b := part_to_block(p)) is not None]
    return {
        "id": response.id or new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model_name,
        "content": blocks,
        "stop_reason": WIRE_STOP_REASONS[response.stop_reason],
        "stop_sequence": None,
        "usage": usage_to_wire(response.usage),
    }


def render_error(kind: str, message: str) -> Block:
    """An Anthropic error body (`kind` as in StellwerkError.kind: `overloaded_error`, ...)."""
    return {"type": "error", "error": {"type": kind, "message": message}}


# -- streaming answers out -------------------------------------------------------------------


def sse_event(event: str, data: Mapping[str, Any]) -> bytes:
    """One server-sent event as Anthropic frames it: `event:` and `data:` lines."""
    return b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n"


class StreamRenderer:
    """Our chunks as Anthropic SSE events, opening and closing content blocks as needed.

    `start()` gives `message_start`; `feed(chunk)` the events of one chunk (a StreamEnd closes
    with `message_delta` and `message_stop`); `error()` an `event: error` for a failure after
    the stream began. Tool-call arguments for a call that is no longer the open block are dropped
    (Anthropic cannot reopen a block); providers send each call's arguments in one run.
    """

    def __init__(
        self, model_name: str, *, message_id: str | None = None, input_tokens: int = 0
    ) -> None:
        self.model_name = model_name
        self.message_id = message_id or new_message_id()
        self.input_tokens = input_tokens
        self._index = -1
        self._open: str | None = None  # "text", "thinking", "tool:<index>"

    def start(self) -> bytes:
        message: Block = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model_name,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_to_wire(Usage(input_tokens=self.input_tokens)),
        }
        return sse_event("message_start", {"type": "message_start", "message": message})

    def feed(self, chunk: Chunk) -> bytes:
        if isinstance(chunk, TextDelta):
            return (
                self._delta("text", {"type": "text_delta", "text": chunk.text})
                if chunk.text
                else b""
            )
        if isinstance(chunk, ThinkingDelta):
            return self._thinking(chunk)
        if isinstance(chunk, ToolCallStart):
            block = {"type": "tool_use", "id": chunk.id, "name": chunk.name, "input": {}}
            return self._close() + self._start_block(f"tool:{chunk.index}", block)
        if isinstance(chunk, ToolCallDelta):
            if self._open != f"tool:{chunk.index}" or not chunk.arguments:
                return b""
            return self._block_delta({"type": "input_json_delta", "partial_json": chunk.arguments})
        return self._end(chunk)

    def error(self, kind: str, message: str) -> bytes:
        return sse_event("error", render_error(kind, message))

    def _thinking(self, chunk: ThinkingDelta) -> bytes:
        signature = chunk.signature or ""
        if signature.startswith(REDACTED):
            block = {"type": "redacted_thinking", "data": signature.removeprefix(REDACTED)}
            return self._close() + self._start_block("redacted", block) + self._close()
        out = b""
        if chunk.text:
            out += self._delta("thinking", {"type": "thinking_delta", "thinking": chunk.text})
        if signature:
            out += self._delta("thinking", {"type": "signature_delta", "signature": signature})
        return out

    def _delta(self, kind: str, delta: Block) -> bytes:
        if self._open == kind:
            return self._block_delta(delta)
        empty = {"type": kind, kind: ""} | ({"signature": ""} if kind == "thinking" else {})
        return self._close() + self._start_block(kind, empty) + self._block_delta(delta)

    def _start_block(self, kind: str, block: Block) -> bytes:
        self._index += 1
        self._open = kind
        data = {"type": "content_block_start", "index": self._index, "content_block": block}
        return sse_event("content_block_start", data)

    def _block_delta(self, delta: Block) -> bytes:
        data = {"type": "content_block_delta", "index": self._index, "delta": delta}
        return sse_event("content_block_delta", data)

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return sse_event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _end(self, end: StreamEnd) -> bytes:
        delta = {"stop_reason": WIRE_STOP_REASONS[end.stop_reason], "stop_sequence": None}
        usage = usage_to_wire(end.usage)
        message_delta = {"type": "message_delta", "delta": delta, "usage": usage}
        return (
            self._close()
            + sse_event("message_delta", message_delta)
            + sse_event("message_stop", {"type": "message_stop"})
        )


async def render_stream(
    chunks: AsyncIterable[Chunk],
    model_name: str,
    *,
    message_id: str | None = None,
    input_tokens: int = 0,
) -> AsyncIterator[bytes]:
    """The SSE bytes of a whole stream, event group by event group, as chunks arrive."""
    renderer = StreamRenderer(model_name, message_id=message_id, input_tokens=input_tokens)
    yield renderer.start()
    async for chunk in chunks:
        if data := renderer.feed(chunk):
            yield data
