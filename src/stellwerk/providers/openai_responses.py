"""The OpenAI Responses API towards an upstream: the payload, the answer, the event stream.

Codex models (`gpt-5.x-codex`) are served only here, and the format is not Chat Completions with
other names: the conversation is a flat list of items where a tool call (`function_call`) and its
result (`function_call_output`) are items of their own, the system prompt is `instructions`, and
a stream is a sequence of typed events ending in `response.completed` (or `response.incomplete`).
The Responses API has no stop sequences; `request.stop` is not sent.
"""

from __future__ import annotations

from typing import Any

from ..errors import ProviderError
from ..failures import FailureClass
from ..policy import ModelSpec
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
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
)
from ..wire import openai as wire
from .openai_chat import (
    estimate_usage,
    load_frame,
    max_tokens,
    output_text,
    unexpected_frame,
    upstream_error,
)

JSON = dict[str, Any]
_INCOMPLETE: dict[str, StopReason] = {
    "max_output_tokens": "max_tokens",
    "content_filter": "content_filter",
}


# -- request ---------------------------------------------------------------------------------


def to_payload(
    request: ChatRequest, model: ModelSpec, *, stream: bool = False, reasoning: bool = False
) -> JSON:
    """The `POST /responses` body; nothing is stored upstream (`store: false`)."""
    payload: JSON = {"model": model.upstream, "input": input_items(request.messages)}
    if request.system:
        payload["instructions"] = request.system
    payload.update(_present(max_output_tokens=max_tokens(request, model, reasoning=reasoning)))
    if not reasoning:
        payload.update(_present(temperature=request.temperature, top_p=request.top_p))
    if request.tools:
        payload["tools"] = [_tool(t.name, t.description, t.parameters) for t in request.tools]
        payload.update(_present(tool_choice=tool_choice(request.tool_choice)))
    payload["store"] = False
    if stream:
        payload["stream"] = True
    return payload


def _present(**values: Any) -> JSON:
    return {k: v for k, v in values.items() if v is not None}


def _tool(name: str, description: str, parameters: Any) -> JSON:
    schema = dict(parameters) or {"type": "object", "properties": {}}
    tool: JSON = {"type": "function", "name": name}
    if description:
        tool["description"] = description
    return {**tool, "parameters": schema, "strict": False}


def tool_choice(choice: Any) -> str | JSON | None:
    """The Responses form of a tool choice: a mode, or `{type: function, name}`."""
    chat = wire.tool_choice_json(choice)
    if isinstance(chat, dict):
        return {"type": "function", "name": chat.get("function", {}).get("name")}
    return chat


def input_items(messages: tuple[Message, ...]) -> list[JSON]:
    """The `input` list: messages, with tool calls and results as items of their own."""
    items: list[JSON] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        pending: list[Part] = []
        for part in message.content:
            if isinstance(part, ToolCallPart | ToolResultPart):
                items.extend(_message_item(role, pending))
                pending = []
                items.append(_call_item(part))
            elif not isinstance(part, ThinkingPart):
                pending.append(part)
        items.extend(_message_item(role, pending))
    return items


def _message_item(role: str, parts: list[Part]) -> list[JSON]:
    content = [_content(role, p) for p in parts if isinstance(p, TextPart | ImagePart)]
    if not content:
        return []
    return [{"type": "message", "role": role, "content": content}]


def _content(role: str, part: TextPart | ImagePart) -> JSON:
    if isinstance(part, ImagePart):
        return {"type": "input_image", "image_url": wire.image_url(part), "detail": "auto"}
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": kind, "text": part.text}


def _call_item(part: ToolCallPart | ToolResultPart) -> JSON:
    if isinstance(part, ToolCallPart):
        return {
            "type": "function_call",
            "call_id": part.id,
            "name": part.name,
            "arguments": part.arguments,
        }
    return {"type": "function_call_output", "call_id": part.tool_call_id, "output": part.content}


# -- answer ----------------------------------------------------------------------------------


def parse_response(data: Any, model: ModelSpec, request: ChatRequest) -> ChatResponse:
    """A ChatResponse from a `response` object; a failed response raises its class."""
    if not isinstance(data, dict) or not isinstance(data.get("output"), list):
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            raise upstream_error(data["error"], model.id)
        raise ProviderError(
            FailureClass.SERVER, "unexpected answer shape: no output", status=200, target=model.id
        )
    if data.get("status") == "failed":
        raise upstream_error(data.get("error"), model.id)
    try:
        content = tuple(p for item in data["output"] for p in output_parts(item))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ProviderError(
            FailureClass.SERVER, f"unexpected answer shape: {exc!r}", status=200, target=model.id
        ) from None
    return ChatResponse(
        target=model.id,
        content=content,
        stop_reason=status_stop(data, content),
        usage=parse_usage(data.get("usage")) or estimate_usage(request, output_text(content)),
        id=str(data.get("id") or ""),
        upstream_model=data.get("model"),
        cost_micros=wire.parse_cost(data.get("usage")),
    )


def output_parts(item: Any) -> tuple[Part, ...]:
    """The parts of one output item: message text, a function call, reasoning summaries."""
    kind = item.get("type") if isinstance(item, dict) else None
    if kind == "message":
        texts = (_text_part(c) for c in item.get("content") or [])
        return tuple(t for t in texts if t is not None)
    if kind == "function_call":
        call_id = str(item.get("call_id") or item.get("id"))
        return (ToolCallPart(call_id, item["name"], item.get("arguments") or "{}"),)
    if kind == "reasoning":
        summary = "".join(s.get("text", "") for s in item.get("summary") or [])
        return (ThinkingPart(summary),) if summary else ()
    return ()


def _text_part(content: Any) -> TextPart | None:
    if not isinstance(content, dict):
        return None
    text = content.get("text") if content.get("type") == "output_text" else content.get("refusal")
    return TextPart(text) if isinstance(text, str) else None


def status_stop(data: JSON, content: tuple[Part, ...]) -> StopReason:
    if data.get("status") == "incomplete":
        reason = (data.get("incomplete_details") or {}).get("reason") or ""
        return _INCOMPLETE.get(reason, "max_tokens")
    return "tool_use" if any(isinstance(p, ToolCallPart) for p in content) else "end"


def parse_usage(data: Any) -> Usage | None:
    if not isinstance(data, dict) or "input_tokens" not in data:
        return None
    details = data.get("input_tokens_details") or {}
    return Usage(
        input_tokens=int(data.get("input_tokens") or 0),
        output_tokens=int(data.get("output_tokens") or 0),
        cache_read_tokens=int(details.get("cached_tokens") or 0),
        cache_write_tokens=int(details.get("cache_write_tokens") or 0),
    )


# -- stream ----------------------------------------------------------------------------------


class ResponsesStream:
    """Turns the events of a Responses stream into chunks; `response.completed` ends it."""

    def __init__(self, request: ChatRequest, model: ModelSpec) -> None:
        self.request = request
        self.target = model.id
        self.done = False
        self._end: StreamEnd | None = None
        self._calls: dict[int, int] = {}  # output_index -> our tool call index
        self._streamed: set[int] = set()  # tool calls whose arguments arrived as deltas
        self._output: list[str] = []

    def feed(self, data: str) -> list[Chunk]:
        event = load_frame(data, self.target)
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(kind, str):
            raise unexpected_frame(event, self.target)
        handler = getattr(self, "_on_" + kind.replace(".", "_"), None)
        try:
            chunks: list[Chunk] = handler(event) if handler else []
        except (AttributeError, TypeError, KeyError, ValueError):
            raise unexpected_frame(event, self.target) from None
        return chunks

    def finish(self) -> StreamEnd:
        if self._end is None:
            raise ProviderError(
                FailureClass.STREAM_BROKEN,
                "stream ended without response.completed",
                target=self.target,
            )
        return self._end

    def _delta(self, event: JSON) -> str:
        delta = event.get("delta")
        text = delta if isinstance(delta, str) else ""
        self._output.append(text)
        return text

    def _on_response_output_text_delta(self, event: JSON) -> list[Chunk]:
        return [TextDelta(text)] if (text := self._delta(event)) else []

    def _on_response_reasoning_summary_text_delta(self, event: JSON) -> list[Chunk]:
        return [ThinkingDelta(text)] if (text := self._delta(event)) else []

    _on_response_reasoning_text_delta = _on_response_reasoning_summary_text_delta

    def _on_response_output_item_added(self, event: JSON) -> list[Chunk]:
        item = event.get("item") or {}
        if item.get("type") != "function_call":
            return []
        index = self._calls.setdefault(int(event.get("output_index") or 0), len(self._calls))
        call_id = str(item.get("call_id") or item.get("id") or f"call_{index}")
        return [ToolCallStart(index, call_id, str(item.get("name") or ""))]

    def _on_response_function_call_arguments_delta(self, event: JSON) -> list[Chunk]:
        index = self._calls.get(int(event.get("output_index") or 0))
        if index is None or not (text := self._delta(event)):
            return []
        self._streamed.add(index)
        return [ToolCallDelta(index, text)]

    def _on_response_output_item_done(self, event: JSON) -> list[Chunk]:
        """A call announced only now, or arguments a server sent only whole, with the item."""
        item = event.get("item") or {}
        if item.get("type") != "function_call":
            return []
        known = int(event.get("output_index") or 0) in self._calls
        out = [] if known else self._on_response_output_item_added(event)
        index = self._calls[int(event.get("output_index") or 0)]
        arguments = item.get("arguments")
        if index in self._streamed or not isinstance(arguments, str) or not arguments:
            return out
        self._output.append(arguments)
        return [*out, ToolCallDelta(index, arguments)]

    def _on_response_completed(self, event: JSON) -> list[Chunk]:
        response = event.get("response") or {}
        stop: StopReason = "tool_use" if self._calls else "end"
        if response.get("status") == "incomplete":
            stop = status_stop(response, ())
        usage = parse_usage(response.get("usage")) or estimate_usage(
            self.request, "".join(self._output)
        )
        cost = wire.parse_cost(response.get("usage"))
        self._end = StreamEnd(stop, usage, response.get("model"), cost)
        self.done = True
        return []

    _on_response_incomplete = _on_response_completed

    def _on_response_failed(self, event: JSON) -> list[Chunk]:
        raise upstream_error((event.get("response") or {}).get("error"), self.target)

    def _on_error(self, event: JSON) -> list[Chunk]:
        raise upstream_error(event, self.target)
