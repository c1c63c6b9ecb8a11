"""Chat Completions towards an upstream: the payload we send and the answers we read back.

Pure functions and a stream parser fed one SSE `data:` payload at a time, so every translation
is tested with tables and no server. The message and tool shapes themselves come from
`wire.openai`, which the gateway uses for its own clients: one translation, both directions.
What differs between upstreams (OpenAI's reasoning models take `max_completion_tokens` and no
sampling parameters, OpenRouter wants `usage: {include: true}`) arrives as keyword options.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..errors import ProviderError, RequestError
from ..failures import FailureClass
from ..policy import ModelSpec
from ..tokens import estimate_prompt, estimate_text
from ..types import (
    ChatRequest,
    ChatResponse,
    Chunk,
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
    Usage,
)
from ..wire import loads as load_json
from ..wire import openai as wire
from ._http import classify_error_event, classify_failure

JSON = dict[str, Any]
DONE = "[DONE]"

# OpenAI error codes seen inside 200 streams, as the kinds `classify_error_event` knows.
_EVENT_KINDS = {
    "rate_limit_exceeded": "rate_limit_error",
    "context_length_exceeded": "invalid_request_error",
    "invalid_prompt": "invalid_request_error",
    "model_not_found": "not_found_error",
    "invalid_api_key": "authentication_error",
}


def max_tokens(request: ChatRequest, model: ModelSpec, *, reasoning: bool = False) -> int | None:
    """The output limit to send: the caller's, else the model's capped at 4096.

    Reasoning models get none unless the caller set one: their hidden reasoning counts against
    the limit, and a small cap ends in an empty answer with `finish_reason: length`.
    """
    if request.max_tokens:
        return request.max_tokens
    return None if reasoning else min(model.max_output, 4096)


def to_payload(
    request: ChatRequest,
    model: ModelSpec,
    *,
    stream: bool = False,
    max_tokens_field: str = "max_tokens",
    reasoning: bool = False,
    extra: JSON | None = None,
) -> JSON:
    """The Chat Completions body; `reasoning` models get no temperature and no top_p."""
    payload: JSON = {"model": model.upstream, "messages": wire.chat_messages(request)}
    _put(payload, max_tokens_field, max_tokens(request, model, reasoning=reasoning))
    if not reasoning:
        _put(payload, "temperature", request.temperature)
        _put(payload, "top_p", request.top_p)
    _put(payload, "stop", list(request.stop) or None)
    if request.tools:
        payload["tools"] = [wire.tool_json(t) for t in request.tools]
        _put(payload, "tool_choice", wire.tool_choice_json(request.tool_choice))
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return {**payload, **(extra or {})}


def _put(payload: JSON, key: str, value: Any) -> None:
    if value is not None:
        payload[key] = value


def parse_response(data: Any, model: ModelSpec, request: ChatRequest) -> ChatResponse:
    """A ChatResponse from a `chat.completion` body; an `error` body raises its class."""
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        raise upstream_error(data["error"], model.id)
    try:
        choice = data["choices"][0]
        content = wire.parse_assistant(choice["message"], "choices[0].message")
    except (KeyError, IndexError, TypeError, RequestError) as exc:
        raise ProviderError(
            FailureClass.SERVER, f"unexpected answer shape: {exc}", status=200, target=model.id
        ) from None
    stop = wire.stop_reason(choice.get("finish_reason"))
    usage = wire.parse_usage(data.get("usage")) or estimate_usage(request, output_text(content))
    return ChatResponse(
        target=model.id,
        content=content,
        stop_reason=stop,
        usage=usage,
        id=str(data.get("id") or ""),
        upstream_model=data.get("model"),
        cost_micros=wire.parse_cost(data.get("usage")),
    )


def output_text(content: Sequence[Part]) -> str:
    """Everything a model generated, for estimating output tokens."""
    return "".join(
        p.arguments if isinstance(p, ToolCallPart) else p.text
        for p in content
        if isinstance(p, TextPart | ThinkingPart | ToolCallPart)
    )


def estimate_usage(request: ChatRequest, output: str) -> Usage:
    """Usage the upstream did not report, estimated on the safe side."""
    return Usage(estimate_prompt(request), estimate_text(output), estimated=True)


def upstream_error(error: Any, target: str) -> ProviderError:
    """A ProviderError for an error object inside a 200 answer or stream.

    OpenAI puts the precise reason in `code` (`rate_limit_exceeded`) and a broad one in `type`;
    OpenRouter puts an HTTP status in `code`, which classifies like the status itself.
    """
    error = error if isinstance(error, dict) else {"message": str(error or "upstream error")}
    code, kind = error.get("code"), str(error.get("type") or "")
    message = str(error.get("message") or code or kind or "upstream error")
    if isinstance(code, int) and 400 <= code < 600:
        failure = classify_failure(code, json.dumps({"error": error}).encode(), {})
    else:
        name = _EVENT_KINDS.get(str(code)) or (kind if kind.endswith("_error") else "")
        name = name or str(code or kind)
        failure = classify_error_event(name, f"{code or ''} {message}")
    body = json.dumps({"error": error}).encode()  # the error object, for the caller's own 400
    return ProviderError(failure, f"upstream error: {message}", body=body, target=target)


def unexpected_frame(frame: Any, target: str) -> ProviderError:
    shown = json.dumps(frame)[:120]
    return ProviderError(FailureClass.STREAM_BROKEN, f"unexpected frame: {shown}", target=target)


def load_frame(data: str, target: str) -> Any:
    try:
        return load_json(data)
    except ValueError:
        raise ProviderError(
            FailureClass.STREAM_BROKEN, "malformed JSON in stream", target=target
        ) from None


class ChatStream:
    """Turns the `data:` payloads of a Chat Completions stream into chunks."""

    def __init__(self, request: ChatRequest, model: ModelSpec) -> None:
        self.request = request
        self.target = model.id
        self.done = False
        self._stop: StopReason = "end"
        self._usage: Usage | None = None
        self._cost: int | None = None
        self._model: str | None = None
        self._calls: dict[int, tuple[int, str]] = {}  # upstream index -> (our index, id)
        self._count = 0
        self._output: list[str] = []

    def feed(self, data: str) -> list[Chunk]:
        """The chunks of one payload; `[DONE]` ends the stream, an `error` object raises."""
        if data.strip() == DONE:
            self.done = True
            return []
        frame = load_frame(data, self.target)
        if isinstance(frame, dict) and frame.get("error"):
            raise upstream_error(frame["error"], self.target)
        try:
            self._note(frame)
            choices = frame.get("choices") or []
            return self._choice(choices[0]) if choices else []
        except (AttributeError, TypeError, KeyError, ValueError):
            raise unexpected_frame(frame, self.target) from None

    def finish(self) -> StreamEnd:
        """The closing chunk; STREAM_BROKEN when `[DONE]` never came."""
        if not self.done:
            raise ProviderError(
                FailureClass.STREAM_BROKEN, "stream ended without [DONE]", target=self.target
            )
        usage = self._usage or estimate_usage(self.request, "".join(self._output))
        return StreamEnd(self._stop, usage, self._model, self._cost)

    def _note(self, frame: JSON) -> None:
        self._model = frame.get("model") or self._model
        if usage := wire.parse_usage(frame.get("usage")):
            self._usage = usage
            self._cost = wire.parse_cost(frame["usage"])

    def _choice(self, choice: JSON) -> list[Chunk]:
        if choice.get("finish_reason"):
            self._stop = wire.stop_reason(choice["finish_reason"])
        delta = choice.get("delta") or {}
        out: list[Chunk] = []
        thinking = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(thinking, str) and thinking:
            out.append(ThinkingDelta(thinking))
            self._output.append(thinking)
        if isinstance(delta.get("content"), str) and delta["content"]:
            out.append(TextDelta(delta["content"]))
            self._output.append(delta["content"])
        for position, call in enumerate(delta.get("tool_calls") or []):
            out.extend(self._tool_call(call, position))
        return out

    def _tool_call(self, call: JSON, position: int) -> list[Chunk]:
        function = call.get("function") or {}
        upstream = call.get("index", position)
        known = self._calls.get(upstream)
        out: list[Chunk] = []
        if known is None or (call.get("id") and call["id"] != known[1]):
            known = (self._count, str(call.get("id") or f"call_{self._count}"))
            self._calls[upstream] = known
            self._count += 1
            out.append(ToolCallStart(known[0], known[1], str(function.get("name") or "")))
        if arguments := function.get("arguments"):
            out.append(ToolCallDelta(known[0], arguments))
            self._output.append(arguments)
        return out
