"""OpenAI Chat Completions JSON <-> Stellwerk types, for both sides of the gateway.

The format is spoken twice: clients send Chat Completions to the gateway, and the gateway sends
Chat Completions to OpenAI, OpenRouter and local servers (vLLM, llama.cpp, LM Studio). The message,
tool, usage and finish-reason translations live here once and serve both directions, so a tool call
that arrives from a client leaves for an upstream in exactly the shape it came in, and an answer
parsed from an upstream is rendered back to the client by the inverse of the same code.

Internal conventions fixed here: `ChatRequest.tool_choice` is `"auto" | "none" | "required"` or
`{"name": TOOL}`; `Usage.input_tokens` counts the whole prompt, `cache_read_tokens` the part of it
served from the cache (OpenAI's `prompt_tokens` / `cached_tokens`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
from .limits import nesting_message, text_too_deep

JSON = dict[str, Any]

FINISH_REASONS: dict[str, StopReason] = {
    "stop": "end",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filter",
}
_FINISH_OUT: dict[str, str] = {
    "end": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop",
    "content_filter": "content_filter",
    "error": "stop",
}
TOOL_CHOICES = ("auto", "none", "required")


def stop_reason(finish: str | None) -> StopReason:
    """Our stop reason for an OpenAI `finish_reason` (unknown values end normally)."""
    return FINISH_REASONS.get(finish or "stop", "end")


def finish_reason(stop: StopReason) -> str:
    return _FINISH_OUT[stop]


# -- types -> JSON ---------------------------------------------------------------------------


def chat_messages(request: ChatRequest, *, reasoning_field: str | None = None) -> list[JSON]:
    """The `messages` array: the system prompt first, tool results as `tool` messages."""
    out: list[JSON] = [{"role": "system", "content": request.system}] if request.system else []
    for message in request.messages:
        out.extend(message_json(message, reasoning_field=reasoning_field))
    return out


def message_json(message: Message, *, reasoning_field: str | None = None) -> list[JSON]:
    """One message as Chat Completions messages (a user turn with tool results becomes several)."""
    if message.role == "assistant":
        return [assistant_json(message.content, reasoning_field=reasoning_field)]
    results = [p for p in message.content if isinstance(p, ToolResultPart)]
    rest = [p for p in message.content if isinstance(p, TextPart | ImagePart)]
    out: list[JSON] = [
        {"role": "tool", "tool_call_id": r.tool_call_id, "content": r.content} for r in results
    ]
    if rest or not results:
        out.append({"role": "user", "content": content_json(rest)})
    return out


def assistant_json(parts: Sequence[Part], *, reasoning_field: str | None = None) -> JSON:
    """An assistant message; thinking is kept only under `reasoning_field` when one is given."""
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    calls = [tool_call_json(p) for p in parts if isinstance(p, ToolCallPart)]
    out: JSON = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        out["tool_calls"] = calls
    thinking = "".join(p.text for p in parts if isinstance(p, ThinkingPart))
    if reasoning_field and thinking:
        out[reasoning_field] = thinking
    return out


def content_json(parts: Sequence[Part]) -> str | list[JSON]:
    """A plain string for text only, the parts array when images are present."""
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    out: list[JSON] = []
    for part in parts:
        if isinstance(part, TextPart):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            out.append({"type": "image_url", "image_url": {"url": image_url(part)}})
    return out


def image_url(part: ImagePart) -> str:
    """The URL of an image, inline data as a `data:` URL."""
    if part.url:
        return part.url
    return f"data:{part.media_type or 'image/png'};base64,{part.data or ''}"


def tool_call_json(part: ToolCallPart) -> JSON:
    return {
        "id": part.id,
        "type": "function",
        "function": {"name": part.name, "arguments": part.arguments},
    }


def tool_json(tool: Tool) -> JSON:
    function: JSON = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = dict(tool.parameters) or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def tool_choice_json(choice: str | Mapping[str, Any] | None) -> str | JSON | None:
    """OpenAI's `tool_choice` for ours; Anthropic-shaped choices are understood too."""
    if choice is None or isinstance(choice, str):
        return "required" if choice == "any" else choice
    if choice.get("type") == "function":
        return dict(choice)
    if name := choice.get("name"):
        return {"type": "function", "function": {"name": name}}
    kind = choice.get("type")
    return "required" if kind == "any" else kind


def usage_json(usage: Usage) -> JSON:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
    }


# -- JSON -> types ---------------------------------------------------------------------------


def _fail(path: str, message: str) -> RequestError:
    return RequestError(f"{path}: {message}")


def parse_image_url(url: str) -> ImagePart:
    """An ImagePart from a URL; `data:` URLs become inline base64 data."""
    if url.startswith("data:") and ";base64," in url:
        head, _, data = url.partition(";base64,")
        return ImagePart(data=data, media_type=head[5:] or None)
    return ImagePart(url=url)


def parse_content(content: Any, path: str) -> tuple[Part, ...]:
    """Text and image parts from a string, null, or a content-parts array."""
    if content is None:
        return ()
    if isinstance(content, str):
        return (TextPart(content),) if content else ()
    if not isinstance(content, list):
        raise _fail(path, "expected a string or an array of content parts")
    return tuple(_parse_part(p, f"{path}[{i}]") for i, p in enumerate(content))


def _parse_part(part: Any, path: str) -> Part:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
        # `cache_control` on a text part: Anthropic's breakpoint in OpenAI form (OpenRouter's
        # convention); it reaches an Anthropic target as it came
        cache = part.get("cache_control")
        return TextPart(part["text"], dict(cache) if isinstance(cache, dict) else None)
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return TextPart(part["refusal"])
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if isinstance(url, str) and url:
            return parse_image_url(url)
        raise _fail(f"{path}.image_url", "expected an object with a url")
    raise _fail(path, f"unsupported content part type {kind!r}")


def parse_tool_call(call: Any, path: str) -> ToolCallPart:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise _fail(path, "expected {id, type: function, function: {name, arguments}}")
    arguments = function.get("arguments") or "{}"
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return ToolCallPart(str(call.get("id") or ""), function["name"], arguments)


def parse_assistant(data: Mapping[str, Any], path: str) -> tuple[Part, ...]:
    """Thinking, text and tool calls of an assistant message (a request turn or an answer)."""
    thinking = data.get("reasoning_content") or data.get("reasoning")
    parts: list[Part] = [ThinkingPart(thinking)] if isinstance(thinking, str) else []
    parts.extend(parse_content(data.get("content"), f"{path}.content"))
    if isinstance(data.get("refusal"), str) and not data.get("content"):
        parts.append(TextPart(data["refusal"]))
    calls = data.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _fail(f"{path}.tool_calls", "expected an array")
    parts.extend(parse_tool_call(c, f"{path}.tool_calls[{i}]") for i, c in enumerate(calls))
    return tuple(parts)


def parse_usage(data: Any) -> Usage | None:
    """Usage from an OpenAI `usage` object, None when absent."""
    if not isinstance(data, dict) or "prompt_tokens" not in data:
        return None
    details = data.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=int(data.get("prompt_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
        cache_read_tokens=int(details.get("cached_tokens") or 0),
        cache_write_tokens=int(details.get("cache_write_tokens") or 0),
    )


def parse_cost(data: Any) -> int | None:
    """The cost an upstream reported in `usage.cost` (USD, OpenRouter) as micro-dollars."""
    cost = data.get("cost") if isinstance(data, dict) else None
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        return round(cost * 1_000_000)
    return None


# -- the client side: requests in, answers out -----------------------------------------------


def parse_request(data: Any) -> ChatRequest:
    """A ChatRequest from a client's Chat Completions body; RequestError on bad input."""
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    system, messages = _parse_messages(data.get("messages"))
    model = data.get("model", "auto")
    if not isinstance(model, str) or not model:
        raise _fail("model", "expected a model name")
    _check_unused(data)
    if data.get("n", 1) not in (1, None):
        raise _fail("n", "only n=1 is supported")
    return ChatRequest(
        messages=messages,
        system=system,
        model=model,
        max_tokens=_max_tokens(data),
        temperature=_number(data, "temperature", 0, 2),
        top_p=_number(data, "top_p", 0, 1),
        stop=_stop(data.get("stop")),
        tools=_tools(data.get("tools")),
        tool_choice=_tool_choice(data.get("tool_choice")),
        stream=_flag(data, "stream"),
        metadata=_metadata(data.get("metadata")),
        cache_key=_cache_key(data.get("prompt_cache_key")),
    )


def _cache_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail("prompt_cache_key", "expected a string")
    return value or None


def include_usage(data: Mapping[str, Any]) -> bool:
    """Whether a streaming client asked for the final usage chunk."""
    options = data.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _parse_messages(raw: Any) -> tuple[str | None, tuple[Message, ...]]:
    if not isinstance(raw, list) or not raw:
        raise _fail("messages", "expected a non-empty array of messages")
    system: list[str] = []
    messages: list[Message] = []
    for i, item in enumerate(raw):
        path = f"messages[{i}]"
        role = item.get("role") if isinstance(item, dict) else None
        if role in ("system", "developer"):
            system.append("".join(_texts(parse_content(item.get("content"), f"{path}.content"))))
        elif role in ("user", "assistant", "tool"):
            messages.append(_parse_message(item, role, path))
        else:
            raise _fail(f"{path}.role", f"unsupported role {role!r}")
    if not messages:
        raise _fail("messages", "at least one user message is required")
    return ("\n\n".join(system) if system else None), tuple(messages)


def _parse_message(item: Mapping[str, Any], role: str, path: str) -> Message:
    if role == "assistant":
        parts = parse_assistant(item, path)
        calls = (p for p in parts if isinstance(p, ToolCallPart))
        for i, call in enumerate(calls):  # parsed again for Anthropic and Ollama (objects there)
            if text_too_deep(call.arguments):
                raise _fail(f"{path}.tool_calls[{i}].function.arguments", nesting_message())
        return Message("assistant", parts)
    content = parse_content(item.get("content"), f"{path}.content")
    if role == "user":
        return Message("user", content)
    call_id = item.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _fail(f"{path}.tool_call_id", "a tool message needs the id of its tool call")
    return Message("tool", (ToolResultPart(call_id, "".join(_texts(content))),))


def _texts(parts: Sequence[Part]) -> list[str]:
    return [p.text for p in parts if isinstance(p, TextPart)]


def _max_tokens(data: Mapping[str, Any]) -> int | None:
    """`max_completion_tokens`, else `max_tokens`: both checked when both are sent (OpenAI
    rejects a bad value in either)."""
    found: list[int] = []
    for key in ("max_completion_tokens", "max_tokens"):
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _fail(key, "expected a positive integer")
        found.append(value)
    return found[0] if found else None


# What OpenAI itself rejects of the fields Stellwerk does not use, in its words
# ("Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got 21
# instead."), checked before an attempt is spent on them.
_RANGES: dict[str, tuple[type, float, float]] = {
    "presence_penalty": (float, -2, 2),
    "frequency_penalty": (float, -2, 2),
    "top_logprobs": (int, 0, 20),
    "seed": (int, -(2**63), 2**63 - 1),
}
_FLAGS = ("logprobs", "parallel_tool_calls", "store")
_STRINGS = ("user", "reasoning_effort", "service_tier", "safety_identifier")
_MAX_STOP = 4


def _check_unused(data: Mapping[str, Any]) -> None:
    for key, (kind, low, high) in _RANGES.items():
        value = data.get(key)
        if value is None:
            continue
        word = "integer" if kind is int else "decimal"
        if isinstance(value, bool) or not isinstance(value, int if kind is int else int | float):
            raise _fail(key, f"Invalid type: expected {_an(word)}, but got {_kind(value)} instead.")
        if value < low:
            raise _fail(
                key,
                f"{word} below minimum value. Expected a value >= {low:g},"
                f" but got {value} instead.",
            )
        if value > high:
            raise _fail(
                key,
                f"{word} above maximum value. Expected a value <= {high:g},"
                f" but got {value} instead.",
            )
    for key in _FLAGS:
        if (value := data.get(key)) is not None and not isinstance(value, bool):
            raise _fail(key, f"Invalid type: expected a boolean, but got {_kind(value)} instead.")
    for key in _STRINGS:
        if (value := data.get(key)) is not None and not isinstance(value, str):
            raise _fail(key, f"Invalid type: expected a string, but got {_kind(value)} instead.")
    options = data.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _fail(
            "stream_options", f"Invalid type: expected an object, but got {_kind(options)} instead."
        )
    stop = data.get("stop")
    if isinstance(stop, list) and len(stop) > _MAX_STOP:
        raise _fail(
            "stop",
            f"array too long. Expected an array with maximum length {_MAX_STOP},"
            f" but got an array with length {len(stop)} instead.",
        )
    n = data.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
        raise _fail("n", f"Invalid type: expected an integer, but got {_kind(n)} instead.")


def _an(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _kind(value: Any) -> str:
    """A JSON value's type as OpenAI's errors name it ("but got a string instead")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _number(data: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise _fail(key, f"expected a number between {low} and {high}")
    return float(value)


def _flag(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool) and value is not None:
        raise _fail(key, "expected true or false")
    return bool(value)


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise _fail("stop", "expected a string or an array of strings")


def _tools(raw: Any) -> tuple[Tool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail("tools", "expected an array of tools")
    return tuple(_tool(t, f"tools[{i}]") for i, t in enumerate(raw))


def _tool(raw: Any, path: str) -> Tool:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict) or raw.get("type", "function") != "function":
        raise _fail(path, "only tools of type 'function' are supported")
    name, parameters = function.get("name"), function.get("parameters") or {}
    if not isinstance(name, str) or not name:
        raise _fail(f"{path}.function.name", "a tool needs a name")
    if not isinstance(parameters, dict):
        raise _fail(f"{path}.function.parameters", "expected a JSON schema object")
    return Tool(name, str(function.get("description") or ""), parameters)


def _tool_choice(raw: Any) -> str | dict[str, str] | None:
    if raw is None or (isinstance(raw, str) and raw in TOOL_CHOICES):
        return raw
    function = raw.get("function") if isinstance(raw, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"name": function["name"]}
    raise _fail(
        "tool_choice", "expected auto, none, required or {type: function, function: {name}}"
    )


def _metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail("metadata", "expected an object of strings")
    return {str(k): str(v) for k, v in raw.items()}


def render_response(
    resp: ChatResponse, model_name: str, request_id: str, *, created: int | None = None
) -> JSON:
    """A `chat.completion` object for a ChatResponse, as the OpenAI SDKs read it."""
    message = assistant_json(resp.content, reasoning_field="reasoning_content")
    message["refusal"] = None
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model_name,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(resp.stop_reason),
            }
        ],
        "usage": usage_json(resp.usage),
    }


@dataclass(frozen=True, slots=True)
class StreamRenderer:
    """The SSE frames of one streamed `chat.completion.chunk` answer."""

    model_name: str
    request_id: str
    include_usage: bool = False
    created: int = field(default_factory=lambda: int(time.time()))  # one for the whole stream

    DONE = b"data: [DONE]\n\n"

    def start(self) -> bytes:
        """The first frame: the assistant role with empty content."""
        return self._frame({"role": "assistant", "content": ""})

    def chunk(self, chunk: Chunk) -> bytes:
        """The frame(s) for one chunk; a StreamEnd closes the stream (usage, `[DONE]`)."""
        if isinstance(chunk, StreamEnd):
            return self._end(chunk)
        return self._frame(_delta(chunk))

    def error(self, message: str, kind: str = "server_error", code: str | None = None) -> bytes:
        """An error inside a started stream, in the shape the OpenAI SDKs raise from."""
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return _sse(body)

    def _end(self, end: StreamEnd) -> bytes:
        frames = self._frame({}, finish_reason(end.stop_reason))
        if self.include_usage:
            frames += _sse({**self._head(), "choices": [], "usage": usage_json(end.usage)})
        return frames + self.DONE

    def _frame(self, delta: JSON, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        body = {**self._head(), "choices": [choice]}
        if self.include_usage:
            body["usage"] = None
        return _sse(body)

    def _head(self) -> JSON:
        return {
            "id": self.request_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_name,
        }


def _delta(chunk: Chunk) -> JSON:
    if isinstance(chunk, TextDelta):
        return {"content": chunk.text}
    if isinstance(chunk, ThinkingDelta):
        return {"reasoning_content": chunk.text}
    if isinstance(chunk, ToolCallStart):
        call = {"name": chunk.name, "arguments": ""}
        return {
            "tool_calls": [
                {"index": chunk.index, "id": chunk.id, "type": "function", "function": call}
            ]
        }
    assert isinstance(chunk, ToolCallDelta)
    return {"tool_calls": [{"index": chunk.index, "function": {"arguments": chunk.arguments}}]}


def _sse(body: Any) -> bytes:
    return b"data: " + dumps(body) + b"\n\n"
