"""The Ollama native API (`/api/chat`), the protocol of the local models at the end of every chain.

Local models are the router's last line of defence (emergency mode runs on them alone), so this
adapter speaks Ollama's own API rather than its OpenAI shim: only the native API takes `num_ctx`,
and without it Ollama runs every model with its small default window and silently cuts the
prompt, however large a window the catalog promises. The native API differs from OpenAI's where
it matters here: it streams NDJSON (one JSON object a line, the last with `done: true`) and does
so by default, tool-call arguments are JSON objects rather than JSON text, older servers give
tool calls no ids (we synthesize `call_<index>`), tool results name their tool (`tool_name`)
instead of a call id, and reasoning arrives in `message.thinking` when `think` is set.

Decisions the protocol leaves open:
- Images by URL cannot be sent (Ollama takes base64 only); they are dropped here, and the router
  tells the caller. Thinking from earlier turns is not sent back (Ollama strips it anyway).
- `prompt_eval_count` is omitted when it is 0, which happens when the whole prompt came from
  Ollama's cache; the input count is then estimated with `stellwerk.tokens` and the usage marked
  `estimated`, so budgets never count a cached prompt as free work.
- `truncate` is left at Ollama's default, which drops the oldest turns of a prompt that exceeds
  `num_ctx`; the router fits the context before the call, so this is only a safety net.

`list_models`, `show_model`, `running_models` and `version` serve `stellwerk check`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from ..errors import ProviderError
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
)
from ..wire.anthropic import compact_json
from ..wire.hop import hop_headers
from ._http import (
    classify_error_event,
    classify_failure,
    get_json,
    iter_lines,
    post_json,
    post_stream,
)

DEFAULT_MAX_TOKENS = 4096

# -- request ---------------------------------------------------------------------------------


def to_payload(request: ChatRequest, model: ModelSpec, *, stream: bool = False) -> dict[str, Any]:
    """The `/api/chat` body for a request; `stream` is always sent (Ollama streams by default)."""
    payload: dict[str, Any] = {
        "model": model.upstream,
        "messages": to_messages(request),
        "stream": stream,
        "options": _options(request, model),
    }
    if request.tools and request.tool_choice != "none":
        payload["tools"] = [_tool(t.name, t.description, t.parameters) for t in request.tools]
    if "reasoning" in model.capabilities:
        payload["think"] = True
    return payload


def _options(request: ChatRequest, model: ModelSpec) -> dict[str, Any]:
    options: dict[str, Any] = {
        "num_ctx": model.context_window,
        "num_predict": request.max_tokens or min(model.max_output, DEFAULT_MAX_TOKENS),
    }
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.stop:
        options["stop"] = list(request.stop)
    return options


def _tool(name: str, description: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    schema = dict(parameters) or {"type": "object", "properties": {}}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": schema},
    }


def to_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """Ollama messages: the system prompt first, tool results as `tool` messages naming the tool."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    names: dict[str, str] = {}  # tool call id -> tool name, the latest call with an id wins
    for message in request.messages:
        for part in message.content:
            if isinstance(part, ToolCallPart):
                names[part.id] = part.name
        out.extend(_message(message, names))
    return out


def _message(message: Message, names: Mapping[str, str]) -> list[dict[str, Any]]:
    results = [_tool_result(p, names) for p in message.content if isinstance(p, ToolResultPart)]
    text = "".join(p.text for p in message.content if isinstance(p, TextPart))
    images = [p.data for p in message.content if isinstance(p, ImagePart) and p.data]
    calls = [p for p in message.content if isinstance(p, ToolCallPart)]
    if results and not (text or images or calls):
        return results
    entry: dict[str, Any] = {"role": message.role, "content": text}
    if images:
        entry["images"] = images
    if calls:
        entry["tool_calls"] = [_call(i, c) for i, c in enumerate(calls)]
    return [*results, entry]


def _call(index: int, call: ToolCallPart) -> dict[str, Any]:
    function: dict[str, Any] = {"name": call.name, "arguments": arguments_object(call.arguments)}
    if index:
        function["index"] = index
    return {"type": "function", "function": function}


def _tool_result(part: ToolResultPart, names: Mapping[str, str]) -> dict[str, Any]:
    content = f"Error: {part.content}" if part.is_error else part.content
    entry: dict[str, Any] = {"role": "tool", "content": content}
    if name := names.get(part.tool_call_id):
        entry["tool_name"] = name
    return entry


def arguments_object(text: str) -> dict[str, Any]:
    """Tool-call arguments as the JSON object Ollama wants; non-objects are wrapped in `value`."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested ~1,000 deep (issue 15)
        return {"value": text}
    return value if isinstance(value, dict) else {"value": value}


# -- response --------------------------------------------------------------------------------


def parse_response(data: Any, model: ModelSpec, request: ChatRequest | None = None) -> ChatResponse:
    """A ChatResponse from a non-streaming `/api/chat` answer."""
    message = _message_of(data, model.id)
    content: list[Part] = []
    if thinking := message.get("thinking"):
        content.append(ThinkingPart(str(thinking)))
    if text := message.get("content"):
        content.append(TextPart(str(text)))
    calls = [_tool_call(i, c, model.id) for i, c in enumerate(message.get("tool_calls") or ())]
    content.extend(calls)
    out_chars = len(str(text or "")) + sum(len(c.arguments) for c in calls)
    return ChatResponse(
        target=model.id,
        content=tuple(content),
        stop_reason=stop_reason(data.get("done_reason"), bool(calls)),
        usage=usage_of(data, request, out_chars),
        upstream_model=data.get("model"),
    )


def _message_of(data: Any, target: str) -> dict[str, Any]:
    if isinstance(data, dict) and "error" in data:
        raise _error_line(str(data["error"]), target, after_first_token=False)
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict):
        raise ProviderError(
            FailureClass.SERVER, "Ollama answer without a message", status=200, target=target
        )
    return message


def _tool_call(index: int, raw: Any, target: str) -> ToolCallPart:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict) or not function.get("name"):
        raise ProviderError(FailureClass.SERVER, "malformed tool call from Ollama", target=target)
    arguments = function.get("arguments") or {}
    text = arguments if isinstance(arguments, str) else compact_json(arguments)
    return ToolCallPart(str(raw.get("id") or f"call_{index}"), str(function["name"]), text)


def stop_reason(done_reason: Any, tool_calls: bool) -> StopReason:
    """Ollama says `stop` for both end of turn and tool calls; `length` is the token limit."""
    if tool_calls:
        return "tool_use"
    return "max_tokens" if done_reason == "length" else "end"


def usage_of(data: Mapping[str, Any], request: ChatRequest | None, out_chars: int) -> Usage:
    """Usage from the final object's counts; a missing count is estimated and marked so."""
    prompt, output = data.get("prompt_eval_count"), data.get("eval_count")
    estimated = not isinstance(prompt, int) or not isinstance(output, int)
    if not isinstance(prompt, int):
        prompt = estimate_prompt(request) if request is not None else 0
    if not isinstance(output, int):
        output = -(-out_chars // CHARS_PER_TOKEN)
    return Usage(input_tokens=prompt, output_tokens=output, estimated=estimated)


def _error_line(message: str, target: str, *, after_first_token: bool) -> ProviderError:
    """An `{"error": ...}` object inside a 200 answer (Ollama's way to fail mid-stream)."""
    body = json.dumps({"error": message}).encode()
    failure = classify_failure(400, body, {})
    if failure not in (FailureClass.CONTEXT_OVERFLOW, FailureClass.MODEL_NOT_FOUND):
        failure = classify_error_event("", message)
    return ProviderError(
        failure,
        f"Ollama error in stream: {message[:300]}",
        body=body,
        target=target,
        after_first_token=after_first_token,
    )


class StreamParser:
    """Turns NDJSON lines of a streaming `/api/chat` answer into chunks, one line at a time."""

    def __init__(self, model: ModelSpec, request: ChatRequest | None = None) -> None:
        self.target = model.id
        self.request = request
        self.done = False
        self.started = False  # content was handed out: failover is over
        self._calls = 0
        self._out_chars = 0

    def feed(self, line: bytes) -> list[Chunk]:
        """The chunks one line carries; raises ProviderError for error and malformed lines."""
        if not line.strip() or self.done:
            return []
        data = self._decode(line)
        if "error" in data:
            raise _error_line(str(data["error"]), self.target, after_first_token=self.started)
        chunks = self._deltas(data.get("message") or {})
        self.started = self.started or bool(chunks)
        if data.get("done"):
            self.done = True
            chunks.append(self._end(data))
        return chunks

    def finish(self) -> None:
        """Call at end of input: raises stream_broken when the final `done` object never came."""
        if not self.done:
            raise ProviderError(
                FailureClass.STREAM_BROKEN,
                "Ollama stream ended without its final object",
                target=self.target,
                after_first_token=self.started,
            )

    def _decode(self, line: bytes) -> dict[str, Any]:
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderError(
                FailureClass.STREAM_BROKEN,
                "malformed JSON line in Ollama stream",
                target=self.target,
                after_first_token=self.started,
            )
        return data

    def _deltas(self, message: Mapping[str, Any]) -> list[Chunk]:
        chunks: list[Chunk] = []
        if thinking := message.get("thinking"):
            chunks.append(ThinkingDelta(str(thinking)))
        if text := message.get("content"):
            self._out_chars += len(str(text))
            chunks.append(TextDelta(str(text)))
        for raw in message.get("tool_calls") or ():
            chunks.extend(self._tool_call(raw))
        return chunks

    def _tool_call(self, raw: Any) -> list[Chunk]:
        call = _tool_call(self._calls, raw, self.target)
        index, self._calls = self._calls, self._calls + 1
        self._out_chars += len(call.arguments)
        return [ToolCallStart(index, call.id, call.name), ToolCallDelta(index, call.arguments)]

    def _end(self, data: Mapping[str, Any]) -> StreamEnd:
        return StreamEnd(
            stop_reason=stop_reason(data.get("done_reason"), self._calls > 0),
            usage=usage_of(data, self.request, self._out_chars),
            upstream_model=data.get("model"),
        )


# -- the adapter -----------------------------------------------------------------------------


def _url(spec: ProviderSpec, path: str) -> str:
    return spec.base_url.rstrip("/") + path


def _headers(credential: Credential | None) -> dict[str, str]:
    """Ollama needs no key; one configured (an authenticating proxy in front) goes as Bearer."""
    auth = {"authorization": f"Bearer {credential.secret.reveal()}"} if credential else {}
    return {**auth, **hop_headers()}  # the loop marker (`wire/hop.py`)


class OllamaProvider:
    """Adapter for Ollama's native chat API."""

    def __init__(self, spec: ProviderSpec, session: aiohttp.ClientSession) -> None:
        self.spec = spec
        self._session = session

    async def complete(
        self, request: ChatRequest, model: ModelSpec, credential: Credential | None
    ) -> ChatResponse:
        """One non-streaming call (`stream: false`)."""
        payload = to_payload(request, model, stream=False)
        url, headers = _url(self.spec, "/api/chat"), _headers(credential)
        data = await post_json(self._session, self.spec, url, payload, headers, model.id)
        return parse_response(data, model, request)

    async def stream(
        self, request: ChatRequest, model: ModelSpec, credential: Credential | None
    ) -> AsyncIterator[Chunk]:
        """One streaming call: deltas as the NDJSON lines arrive, then one StreamEnd."""
        payload = to_payload(request, model, stream=True)
        url, headers = _url(self.spec, "/api/chat"), _headers(credential)
        parser = StreamParser(model, request)
        async with post_stream(self._session, self.spec, url, payload, headers, model.id) as r:
            try:
                async for line in iter_lines(r, model.id):
                    for chunk in parser.feed(line):
                        yield chunk
                    if parser.done:
                        return
            except ProviderError as exc:
                exc.after_first_token = exc.after_first_token or parser.started
                raise
        parser.finish()


# -- model management (for `stellwerk check`) ------------------------------------------------


async def list_models(
    session: aiohttp.ClientSession, spec: ProviderSpec, credential: Credential | None = None
) -> list[dict[str, Any]]:
    """The installed models (`GET /api/tags`): name, size, details.parameter_size and so on."""
    return await _models(session, spec, "/api/tags", credential)


async def running_models(
    session: aiohttp.ClientSession, spec: ProviderSpec, credential: Credential | None = None
) -> list[dict[str, Any]]:
    """The models loaded in memory (`GET /api/ps`), with their `context_length`."""
    return await _models(session, spec, "/api/ps", credential)


async def show_model(
    session: aiohttp.ClientSession,
    spec: ProviderSpec,
    name: str,
    credential: Credential | None = None,
) -> dict[str, Any]:
    """One model's details (`POST /api/show`); 404 raises model_not_found."""
    url, target = _url(spec, "/api/show"), f"{spec.name}/{name}"
    data = await post_json(session, spec, url, {"model": name}, _headers(credential), target)
    return data if isinstance(data, dict) else {}


async def version(
    session: aiohttp.ClientSession, spec: ProviderSpec, credential: Credential | None = None
) -> str:
    """The Ollama server version (`GET /api/version`)."""
    data = await _get_json(session, spec, "/api/version", credential)
    return str(data.get("version", "")) if isinstance(data, dict) else ""


def context_length(show: Mapping[str, Any]) -> int | None:
    """The trained context window from a `/api/show` answer (`<arch>.context_length`)."""
    info = show.get("model_info") or {}
    for key, value in info.items():
        if key.endswith(".context_length") and isinstance(value, int):
            return value
    return None


async def _models(
    session: aiohttp.ClientSession, spec: ProviderSpec, path: str, credential: Credential | None
) -> list[dict[str, Any]]:
    data = await _get_json(session, spec, path, credential)
    models = data.get("models") if isinstance(data, dict) else None
    return [m for m in models or () if isinstance(m, dict)]


async def _get_json(
    session: aiohttp.ClientSession, spec: ProviderSpec, path: str, credential: Credential | None
) -> Any:
    return await get_json(session, spec, _url(spec, path), _headers(credential), spec.name)
