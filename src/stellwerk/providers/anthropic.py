"""The Anthropic Messages adapter: a `ChatRequest` to POST /v1/messages, and the answer back.

The content-block translation is shared with the gateway's own /v1/messages endpoint
(`wire.anthropic`); this module adds only what the upstream side needs. The payload defaults
that keep a request which crossed over from another format valid here (`max_tokens` is required
and capped at the model's maximum, `temperature` is capped at 1, `top_p` is dropped when
`temperature` is set because newer models reject both, tool history without tool definitions gets
stand-in definitions because the API rejects it otherwise), the headers, the SSE decoding, and
turning every way a stream can end into either one `StreamEnd` or a classified `ProviderError`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

import aiohttp

from ..errors import ProviderError, RequestError
from ..failures import FailureClass
from ..policy import Credential, ModelSpec, ProviderSpec
from ..tokens import CHARS_PER_TOKEN, estimate_prompt
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
    is_content,
)
from ..wire import loads as load_json
from ..wire.anthropic import (
    API_VERSION,
    REDACTED,
    Block,
    compact_json,
    messages_to_wire,
    parse_blocks,
    parse_usage,
    part_to_block,
    stop_reason,
    tool_choice_to_wire,
    tool_to_wire,
)
from ..wire.hop import hop_headers
from ._http import classify_error_event, iter_lines, post_json, post_stream

DEFAULT_MAX_TOKENS = 4096


class AnthropicProvider:
    """Adapter for the Anthropic Messages API (and servers that speak it)."""

    def __init__(self, spec: ProviderSpec, session: aiohttp.ClientSession) -> None:
        self.spec = spec
        self._session = session
        self._url = messages_url(spec.base_url)

    async def complete(
        self, request: ChatRequest, model: ModelSpec, credential: Credential | None
    ) -> ChatResponse:
        """One non-streaming call; raises ProviderError on any failure."""
        payload = to_payload(request, model)
        headers = request_headers(credential)
        data = await post_json(self._session, self.spec, self._url, payload, headers, model.id)
        return parse_response(data, model, request)

    async def stream(
        self, request: ChatRequest, model: ModelSpec, credential: Credential | None
    ) -> AsyncIterator[Chunk]:
        """Content chunks as they arrive, then one StreamEnd; ProviderError on any failure."""
        payload = to_payload(request, model, stream=True)
        headers = request_headers(credential)
        parser = StreamParser(model, request)
        decoder = SseDecoder()
        async with post_stream(
            self._session, self.spec, self._url, payload, headers, model.id
        ) as response:
            async for line in _lines(response, model.id, parser):
                event = decoder.feed(line)
                if event is None:
                    continue
                for chunk in parser.feed(*event):
                    yield chunk
                if parser.done:
                    return
        raise parser.broken()


def messages_url(base_url: str) -> str:
    """POST target for a base URL given with or without the `/v1` suffix."""
    return base_url.rstrip("/").removesuffix("/v1") + "/v1/messages"


def request_headers(credential: Credential | None) -> dict[str, str]:
    headers = {"anthropic-version": API_VERSION, **hop_headers()}
    if credential is not None:
        headers["x-api-key"] = credential.secret.reveal()
    return headers


async def _lines(
    response: aiohttp.ClientResponse, target: str, parser: StreamParser
) -> AsyncIterator[bytes]:
    """The body's lines, then b"" (ends a last event sent without its blank line)."""
    try:
        async for line in iter_lines(response, target):
            yield line
    except ProviderError as exc:
        exc.after_first_token = parser.started
        raise
    yield b""


# -- request ---------------------------------------------------------------------------------


def to_payload(request: ChatRequest, model: ModelSpec, *, stream: bool = False) -> Block:
    """The JSON body of POST /v1/messages for a request and a target model."""
    mark = _mark(request, model)
    messages = request.messages
    if mark is not None and not request.cache_prefix_only:
        messages = _marked(messages, len(messages) - 1 - request.cache_tail, mark)
    payload: Block = {
        "model": model.upstream,
        "max_tokens": _max_tokens(request, model),
        "messages": messages_to_wire(messages),
    }
    if request.system_blocks:
        payload["system"] = [b for p in request.system_blocks if (b := part_to_block(p))]
    elif request.system:
        payload["system"] = request.system
    payload.update(_sampling(request))
    if request.stop:
        payload["stop_sequences"] = list(request.stop)
    payload.update(_tools(request))
    if user := request.metadata.get("user_id"):
        payload["metadata"] = {"user_id": user}
    if stream:
        payload["stream"] = True
    if mark is not None:
        _mark_prefix(payload, request, mark)
    return payload


def _mark(request: ChatRequest, model: ModelSpec) -> Block | None:
    """The breakpoint Stellwerk places for a client that placed none (an OpenAI-format client,
    for one), with the class's TTL; None when it places none: caching is off for the class, the
    client marked its own, or the prompt is shorter than the model's shortest cacheable prefix
    (nothing would be cached)."""
    if not request.cache_ttl or request.cache_marked:
        return None
    if estimate_prompt(request) < model.cache_min_tokens:
        return None
    return (
        {"type": "ephemeral", "ttl": "1h"} if request.cache_ttl == "1h" else {"type": "ephemeral"}
    )


def _mark_prefix(payload: Block, request: ChatRequest, mark: Block) -> None:
    """A breakpoint after the tools and the system prompt: the prefix an agent repeats on every
    request (on the last tool when there is no system prompt)."""
    system = payload.get("system")
    if isinstance(system, str):
        payload["system"] = system = [{"type": "text", "text": system}]
    if system:
        system[-1]["cache_control"] = dict(mark)
    elif request.tools:  # the client's own tools (not stand-ins for the history's calls)
        payload["tools"][-1]["cache_control"] = dict(mark)


def _marked(messages: tuple[Message, ...], at: int, mark: Block) -> tuple[Message, ...]:
    """The conversation with a breakpoint on the last part of message `at`: the last message the
    next request repeats (a client's trailing context message is not one), so the next request of
    the conversation, which extends it, reads everything up to there."""
    while at >= 0:
        parts = messages[at].content
        for i in range(len(parts) - 1, -1, -1):
            part = parts[i]
            if isinstance(part, TextPart | ImagePart | ToolCallPart | ToolResultPart) and (
                not isinstance(part, TextPart) or part.text
            ):
                content = (*parts[:i], replace(part, cache=dict(mark)), *parts[i + 1 :])
                marked = replace(messages[at], content=content)
                return (*messages[:at], marked, *messages[at + 1 :])
        at -= 1
    return messages


def _max_tokens(request: ChatRequest, model: ModelSpec) -> int:
    if request.max_tokens is None:
        return min(model.max_output, DEFAULT_MAX_TOKENS)
    return min(request.max_tokens, model.max_output) if model.max_output > 0 else request.max_tokens


def _sampling(request: ChatRequest) -> Block:
    if request.temperature is not None:
        return {"temperature": min(max(request.temperature, 0.0), 1.0)}
    if request.top_p is not None:
        return {"top_p": request.top_p}
    return {}


def _tools(request: ChatRequest) -> Block:
    """Tool definitions and choice; stand-ins when only the history holds tool calls."""
    if request.tools:
        out: Block = {"tools": [tool_to_wire(t) for t in request.tools]}
        if choice := tool_choice_to_wire(request.tool_choice):
            out["tool_choice"] = choice
        return out
    names = [p.name for m in request.messages for p in m.content if isinstance(p, ToolCallPart)]
    if not names:
        return {}
    schema = {"type": "object", "properties": {}}
    stand_ins = [{"name": n, "input_schema": schema} for n in dict.fromkeys(names)]
    return {"tools": stand_ins, "tool_choice": {"type": "none"}}


# -- non-streaming answer --------------------------------------------------------------------


def parse_response(data: Any, model: ModelSpec, request: ChatRequest | None = None) -> ChatResponse:
    """A ChatResponse from a Messages answer; ProviderError when the answer is not one."""
    if not isinstance(data, Mapping) or not isinstance(data.get("content"), list):
        raise _not_an_answer(data, model)
    try:
        content = parse_blocks(data["content"], "content", strict=False)
    except RequestError as exc:
        raise ProviderError(
            FailureClass.SERVER, f"unexpected answer: {exc}", status=200, target=model.id
        ) from None
    usage = parse_usage(data.get("usage")) or _estimate(request, _output_size(content))
    upstream = data.get("model")
    return ChatResponse(
        target=model.id,
        content=content,
        stop_reason=stop_reason(data.get("stop_reason")),
        usage=usage,
        id=str(data.get("id") or ""),
        upstream_model=upstream if isinstance(upstream, str) else None,
    )


def _not_an_answer(data: Any, model: ModelSpec) -> ProviderError:
    error = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(error, Mapping):
        kind, message = str(error.get("type", "")), str(error.get("message", ""))
        failure = classify_error_event(kind, message)
        body = json.dumps({"type": "error", "error": dict(error)}).encode()
        return ProviderError(failure, f"{kind}: {message}", status=200, body=body, target=model.id)
    return ProviderError(
        FailureClass.SERVER, "answer without a content list", status=200, target=model.id
    )


def _output_size(content: tuple[Part, ...]) -> int:
    size = 0
    for part in content:
        if isinstance(part, TextPart | ThinkingPart):
            size += len(part.text)
        elif isinstance(part, ToolCallPart):
            size += len(part.name) + len(part.arguments)
    return size


def _estimate(request: ChatRequest | None, output_chars: int) -> Usage:
    prompt = estimate_prompt(request) if request is not None else 0
    return Usage(prompt, -(-output_chars // CHARS_PER_TOKEN), estimated=True)


# -- streaming answer ------------------------------------------------------------------------


class SseDecoder:
    """Server-sent events from body lines: `(event, data)` once a blank line ends an event."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: bytes) -> tuple[str, str] | None:
        text = line.decode("utf-8", "replace")
        if not text:
            return self._flush()
        if text.startswith(":"):
            return None
        name, _, value = text.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None

    def _flush(self) -> tuple[str, str] | None:
        event, data = self._event, "\n".join(self._data)
        self._event, self._data = "", []
        return (event, data) if data else None


_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "message_delta",
        "message_stop",
        "error",
    }
)


class StreamParser:
    """Anthropic stream events in, chunks out, fed one event at a time.

    It remembers what the final StreamEnd needs (stop reason, usage from `message_start` and
    `message_delta`, the model), numbers tool calls in order of appearance, and raises a
    classified ProviderError for an `error` event or a frame that is not JSON.
    """

    def __init__(self, model: ModelSpec, request: ChatRequest | None = None) -> None:
        self.model = model
        self.request = request
        self.started = False  # a content chunk was produced: failover is over
        self.done = False  # message_stop arrived
        self._events = 0
        self._tools: dict[object, int] = {}  # content block index -> tool call index
        self._usage: dict[str, Any] = {}
        self._stop: StopReason = "end"
        self._upstream: str | None = None
        self._output_chars = 0

    def feed(self, event: str, data: str) -> list[Chunk]:
        """The chunks of one SSE event (`ping` and unknown events give none)."""
        self._events += 1
        payload = self._decode(data)
        kind = payload.get("type") or event
        handler = getattr(self, f"_on_{kind}") if kind in _EVENTS else None
        chunks: list[Chunk] = handler(payload) if handler else []
        self.started = self.started or any(is_content(c) for c in chunks)
        return chunks

    def broken(self) -> ProviderError:
        """The error for a stream that ended before `message_stop`."""
        what = "ended without message_stop" if self._events else "was empty"
        return self._error(FailureClass.STREAM_BROKEN, f"stream {what}")

    def usage(self) -> Usage:
        """Usage as reported, or estimated when the stream never reported it."""
        reported = parse_usage(self._usage)
        if reported is not None:
            return reported
        return _estimate(self.request, self._output_chars)

    def _decode(self, data: str) -> Mapping[str, Any]:
        try:
            payload = load_json(data)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise self._error(FailureClass.STREAM_BROKEN, "malformed JSON in stream event")
        return payload

    def _error(
        self, failure: FailureClass, message: str, body: bytes | None = None
    ) -> ProviderError:
        return ProviderError(
            failure, message, body=body, target=self.model.id, after_first_token=self.started
        )

    def _on_message_start(self, payload: Mapping[str, Any]) -> list[Chunk]:
        message = _mapping(payload.get("message"))
        model = message.get("model")
        self._upstream = model if isinstance(model, str) else None
        self._take_usage(message.get("usage"))
        return []

    def _on_content_block_start(self, payload: Mapping[str, Any]) -> list[Chunk]:
        block = _mapping(payload.get("content_block"))
        kind = block.get("type")
        if kind == "tool_use":
            return self._tool_start(payload.get("index"), block)
        if kind == "redacted_thinking":
            return [ThinkingDelta("", REDACTED + _text(block, "data"))]
        if kind == "text":
            return self._text(_text(block, "text"))
        if kind == "thinking":
            return self._thinking(_text(block, "thinking"))
        return []

    def _tool_start(self, block_index: object, block: Mapping[str, Any]) -> list[Chunk]:
        index = self._tools[block_index] = len(self._tools)
        name = _text(block, "name")
        self._output_chars += len(name)
        chunks: list[Chunk] = [ToolCallStart(index, _text(block, "id"), name)]
        if block.get("input"):  # the API sends {} and streams the input; accept it inline too
            chunks += self._tool_delta(block_index, compact_json(block["input"]))
        return chunks

    def _on_content_block_delta(self, payload: Mapping[str, Any]) -> list[Chunk]:
        delta = _mapping(payload.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(_text(delta, "text"))
        if kind == "input_json_delta":
            return self._tool_delta(payload.get("index"), _text(delta, "partial_json"))
        if kind == "thinking_delta":
            return self._thinking(_text(delta, "thinking"))
        if kind == "signature_delta":
            return [ThinkingDelta("", _text(delta, "signature"))]
        return []

    def _text(self, text: str) -> list[Chunk]:
        self._output_chars += len(text)
        return [TextDelta(text)] if text else []

    def _thinking(self, text: str) -> list[Chunk]:
        self._output_chars += len(text)
        return [ThinkingDelta(text)] if text else []

    def _tool_delta(self, block_index: object, arguments: str) -> list[Chunk]:
        index = self._tools.get(block_index)
        if index is None or not arguments:
            return []
        self._output_chars += len(arguments)
        return [ToolCallDelta(index, arguments)]

    def _on_message_delta(self, payload: Mapping[str, Any]) -> list[Chunk]:
        reason = _mapping(payload.get("delta")).get("stop_reason")
        if reason:
            self._stop = stop_reason(reason)
        self._take_usage(payload.get("usage"))
        return []

    def _on_message_stop(self, payload: Mapping[str, Any]) -> list[Chunk]:
        self.done = True
        return [StreamEnd(self._stop, self.usage(), self._upstream)]

    def _on_error(self, payload: Mapping[str, Any]) -> list[Chunk]:
        error = _mapping(payload.get("error"))
        kind, message = _text(error, "type"), _text(error, "message")
        failure = classify_error_event(kind, message)
        body = json.dumps({"type": "error", "error": dict(error)}).encode()
        raise self._error(failure, f"stream error {kind}: {message}", body)

    def _take_usage(self, usage: object) -> None:
        """Counts from `message_start`, overwritten by the cumulative ones of `message_delta`
        (the 5m/1h split of cache writes, `cache_creation`, included)."""
        for key, value in _mapping(usage).items():
            if isinstance(value, int) and not isinstance(value, bool):
                self._usage[key] = value
            elif key == "cache_creation" and isinstance(value, Mapping):
                self._usage[key] = dict(value)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""
