"""A fake Anthropic Messages API on 127.0.0.1, faithful where an adapter could go wrong.

It serves POST /v1/messages as JSON or as the real SSE sequence (`message_start`,
`content_block_start`, a `ping`, the deltas, `content_block_stop`, `message_delta` with the
cumulative output tokens, `message_stop`; tool input starts with the empty `input_json_delta` the
API sends) and GET /v1/models. Like the real API it checks `x-api-key` and `anthropic-version`
first, rejects the request shapes Anthropic rejects (missing `max_tokens`, both `temperature` and
`top_p`, a `tool_use` without its `tool_result`, ...) with the error bodies Anthropic sends, and
stamps every answer with a `request-id`. The error texts are quoted from real answers, so failure
classification is tested against what Anthropic actually says.

Prompt caching works as Anthropic documents it (`PromptCache`): a `cache_control` breakpoint
writes the prefix up to it (tools, then system, then messages) when it is long enough, with a
5-minute or 1-hour TTL that every read refreshes; a later request reads the longest cached prefix
found at a breakpoint or up to 20 blocks before one. Usage reports `cache_read_input_tokens`,
`cache_creation_input_tokens` with its `cache_creation` 5m/1h split, and the rest as
`input_tokens`, so tests can assert cache reads. The clock is `PromptCache.clock`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as default
from typing import Any

from aiohttp import web

from ._server import FakeUpstream, Received, Reply, usage_for

REQUEST_ID = "req_011CSHmYqwKKWFSEmsrKLLXw"
CREDIT_TOO_LOW = (
    "Your credit balance is too low to access the Anthropic API. "
    "Please go to Plans & Billing to upgrade or purchase credits."
)
PROMPT_TOO_LONG = "prompt is too long: 208310 tokens > 200000 maximum"
RATE_LIMITED = (
    "This request would exceed your organization's rate limit of 30,000 input tokens per minute "
    "(org: 5456025a-920d-4fae-83df-eb142ce029c1, model: claude-sonnet-4-20250514). For details, "
    "refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for "
    "current usage. Please reduce the prompt length or the maximum tokens requested, or try again "
    "later. You may also contact sales at https://claude.com/contact-sales to discuss your options "
    "for a rate limit increase."
)
_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "messages: text content blocks must be non-empty"),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", CREDIT_TOO_LOW),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "model: claude-x"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", RATE_LIMITED),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
_STOPS = {"end": "end_turn"}
MODELS = ("claude-opus-4-6", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-sonnet-4-0")
Problem = tuple[int, str, str]  # status, error type, message


def error_body(kind: str, message: str) -> dict[str, Any]:
    """Anthropic's error body: `{"type": "error", "error": {...}, "request_id": ...}`."""
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": REQUEST_ID}


def anthropic_error(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
) -> Reply:
    """A scripted error answer with Anthropic's body and `request-id` header."""
    return Reply.error(
        status, error_body(kind, message), {"request-id": REQUEST_ID, **(headers or {})}
    )


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def stream_error(
    kind: str = "overloaded_error", message: str = "Overloaded", *, text: str = ""
) -> Reply:
    """A 200 stream that starts (with `text`, if any) and then sends `event: error`."""
    frames = _start_frames("claude-sonnet-4-0", 12)
    if text:
        frames += _block_frames(0, {"type": "text", "text": text})[:-1]  # the block stays open
    body = b"".join(f for f, _ in frames) + sse(
        "error", {"type": "error", "error": {"type": kind, "message": message}}
    )
    return Reply(kind="raw", body=body)


def raw_stream(body: bytes) -> Reply:
    """A 200 event stream with exactly this body (malformed frames, empty streams)."""
    return Reply(kind="raw", body=body)


class FakeAnthropic(FakeUpstream):
    """The fake. `key`: the only accepted `x-api-key` (None: any non-empty one); `models`: the
    model names it knows (None: any; others get the real 404)."""

    routes = (("POST", "/v1/messages"),)

    def __init__(
        self,
        script: Iterable[Reply | int] = (),
        default: Reply | None = None,
        *,
        key: str | None = None,
        models: Iterable[str] | None = None,
    ) -> None:
        super().__init__(script, default)
        self.key = key
        self.models = tuple(models) if models is not None else None
        self._count = 0
        self.cache = PromptCache()

    def _add_extra_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/models", self._list_models)
        app.on_response_prepare.append(self._stamp)

    async def _stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        self._count += 1
        response.headers.setdefault("request-id", f"req_011C{self._count:020d}")

    def error_reply(self, status: int) -> Reply:
        default = ("api_error", "Internal server error") if status >= 500 else _STATUS_ERRORS[400]
        kind, message = _STATUS_ERRORS.get(status, default)
        headers = {"retry-after": "30"} if status == 429 else {}
        if status in (500, 529):
            headers["x-should-retry"] = "true"
        return anthropic_error(status, kind, message, headers)

    # -- serving -----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        problem = _auth_problem(request.headers, self.key) or _body_problem(data, self.models)
        if problem is None:
            return await super().handle(request)
        self.received.append(Received(request.method, request.path, dict(request.headers), data))
        status, kind, message = problem
        return web.json_response(error_body(kind, message), status=status)

    async def _list_models(self, request: web.Request) -> web.Response:
        problem = _auth_problem(request.headers, self.key)
        if problem is not None:
            return web.json_response(error_body(problem[1], problem[2]), status=problem[0])
        names = self.models or MODELS
        data = [
            {
                "type": "model",
                "id": name,
                "display_name": name.replace("-", " ").title(),
                "created_at": "2025-05-22T00:00:00Z",
                "lifecycle": "active",
            }
            for name in names
        ]
        listing = {"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]}
        return web.json_response(listing)

    def render(self, reply: Reply, data: Any) -> Any:
        if reply.kind == "raw":
            raise TypeError("raw replies are event-stream bodies; ask with stream: true")
        inputs, outputs = usage_for(reply, data)
        return {
            "id": _message_id(data),
            "type": "message",
            "role": "assistant",
            "model": reply.model or data.get("model"),
            "content": _blocks(reply),
            "stop_reason": _STOPS.get(reply.stop, reply.stop),
            "stop_sequence": _stop_sequence(reply, data),
            "usage": self._usage(reply, data, inputs, outputs),
        }

    def _usage(self, reply: Reply, data: Any, inputs: int, outputs: int) -> dict[str, Any]:
        if reply.usage is not None:  # scripted: as given
            return _usage(inputs, outputs)
        return self.cache.usage(data, inputs, outputs)

    def stream_frames(self, reply: Reply, data: Any) -> list[tuple[bytes, bool]]:
        if reply.kind == "raw":
            return [(reply.body, False)]
        inputs, outputs = usage_for(reply, data)
        usage = self._usage(reply, data, inputs, 1)
        frames = _start_frames(reply.model or data.get("model"), usage, _message_id(data))
        for index, block in enumerate(_blocks(reply)):
            frames += _block_frames(index, block)
        stop = _STOPS.get(reply.stop, reply.stop)
        delta = {"stop_reason": stop, "stop_sequence": _stop_sequence(reply, data)}
        end = {"type": "message_delta", "delta": delta, "usage": {"output_tokens": outputs}}
        frames.append((sse("message_delta", end), False))
        frames.append((sse("message_stop", {"type": "message_stop"}), False))
        return frames


# -- validation, as the real API does it -----------------------------------------------------


def _auth_problem(headers: Mapping[str, str], key: str | None) -> Problem | None:
    """The key from `x-api-key`, or `Authorization: Bearer` (the official SDK 2.x sends that)."""
    bearer = headers.get("authorization", "")
    given = headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else "")
    if not given:
        return 401, "authentication_error", "x-api-key header is required"
    if key is not None and given != key:
        return 401, "authentication_error", "invalid x-api-key"
    if not headers.get("anthropic-version"):
        return 400, "invalid_request_error", "anthropic-version: header is required"
    return None


def _body_problem(data: Any, models: tuple[str, ...] | None) -> Problem | None:
    if not isinstance(data, dict):
        return 400, "invalid_request_error", "There was an issue with the format of your request."
    for field in ("model", "max_tokens", "messages"):
        if field not in data:
            return 400, "invalid_request_error", f"{field}: Field required"
    if models is not None and data["model"] not in models:
        return 404, "not_found_error", f"model: {data['model']}"
    message = _sampling_problem(data) or _messages_problem(data)
    return None if message is None else (400, "invalid_request_error", message)


def _sampling_problem(data: Mapping[str, Any]) -> str | None:
    temperature = data.get("temperature")
    if isinstance(temperature, int | float) and not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    if "temperature" in data and "top_p" in data:
        return (
            "`temperature` and `top_p` cannot both be specified for this model. "
            "Please use only one."
        )
    return None


def _messages_problem(data: Mapping[str, Any]) -> str | None:
    messages = data["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    blocks = [_content(m) for m in messages]
    if any(b.get("type") == "text" and not b.get("text") for bs in blocks for b in bs):
        return "messages: text content blocks must be non-empty"
    uses_tools = any(b.get("type") in ("tool_use", "tool_result") for bs in blocks for b in bs)
    if uses_tools and not data.get("tools"):
        return "Requests which include `tool_use` or `tool_result` blocks must define tools."
    return _pairing_problem(messages, blocks)


def _pairing_problem(messages: list[Any], blocks: list[list[dict[str, Any]]]) -> str | None:
    """Every tool_use answered by a tool_result in the next message, and only those."""
    open_ids: list[str] = []
    for i, (message, content) in enumerate(zip(messages, blocks, strict=True)):
        results = [b.get("tool_use_id") for b in content if b.get("type") == "tool_result"]
        missing = [t for t in open_ids if t not in results]
        if missing:
            return (
                f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        for j, block in enumerate(content):
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in open_ids:
                return (
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                    f"blocks: {block.get('tool_use_id')}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message."
                )
        is_assistant = isinstance(message, dict) and message.get("role") == "assistant"
        open_ids = [b["id"] for b in content if b.get("type") == "tool_use"] if is_assistant else []
    return None


def _content(message: Any) -> list[dict[str, Any]]:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


# -- rendering -------------------------------------------------------------------------------


def _message_id(data: Any) -> str:
    seed = json.dumps(data, sort_keys=True).encode()
    return "msg_01" + hashlib.sha256(seed).hexdigest()[:22]


def _blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.thinking:
        signature = "Eq" + hashlib.sha256(reply.thinking.encode()).hexdigest()[:40]
        blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": signature})
    if reply.text or not reply.tool_calls:
        blocks.append({"type": "text", "text": reply.text})
    for n, call in enumerate(reply.tool_calls):
        tool_id = (
            call.id or "toolu_01" + hashlib.sha256(f"{call.name}{n}".encode()).hexdigest()[:22]
        )
        blocks.append(
            {"type": "tool_use", "id": tool_id, "name": call.name, "input": dict(call.arguments)}
        )
    return blocks


def _stop_sequence(reply: Reply, data: Any) -> str | None:
    sequences = data.get("stop_sequences") if isinstance(data, dict) else None
    return sequences[0] if reply.stop == "stop_sequence" and sequences else None


def _usage(
    inputs: int, outputs: int, read: int = 0, write_5m: int = 0, write_1h: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": inputs,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write_5m,
            "ephemeral_1h_input_tokens": write_1h,
        },
        "output_tokens": outputs,
        "service_tier": "standard",
    }


@dataclass
class PromptCache:
    """Anthropic's prompt cache, per fake: prefix hash -> (expiry, TTL in seconds).

    The prompt is read as Anthropic orders it (tools, system blocks, message blocks); a block is
    `len(its JSON) // 4` tokens, as the fake counts. `min_tokens`: the shortest cacheable prefix.
    """

    min_tokens: int = 1024
    clock: Callable[[], float] = time.monotonic
    entries: dict[str, tuple[float, float]] = default(default_factory=dict)
    LOOKBACK = 20  # blocks before a breakpoint where a cached prefix is still found

    def usage(self, data: Any, inputs: int, outputs: int) -> dict[str, Any]:
        blocks = _prompt_blocks(data) if isinstance(data, Mapping) else []
        if not any(isinstance(b, Mapping) and "cache_control" in b for b in blocks):
            return _usage(inputs, outputs)
        now = self.clock()
        digest = hashlib.sha256(str(data.get("model")).encode())
        hashes, sizes, total = [], [], 0
        for block in blocks:
            plain = {k: v for k, v in block.items() if k != "cache_control"}
            text = json.dumps(plain, sort_keys=True, separators=(",", ":"))
            digest.update(text.encode())
            hashes.append(digest.hexdigest())
            total += len(text) // 4
            sizes.append(total)
        marks = [i for i, b in enumerate(blocks) if "cache_control" in b]
        read, read_at = 0, -1
        for mark in marks:
            for at in range(mark, max(-1, mark - self.LOOKBACK - 1), -1):
                entry = self.entries.get(hashes[at])
                if entry is not None and entry[0] > now and sizes[at] > read:
                    read, read_at = sizes[at], at
        if read_at >= 0:  # a read refreshes the entry's lifetime
            seconds = self.entries[hashes[read_at]][1]
            self.entries[hashes[read_at]] = (now + seconds, seconds)
        written = {"5m": 0, "1h": 0}
        covered = read
        for mark in marks:
            ttl = _ttl_name(blocks[mark])
            if sizes[mark] < self.min_tokens:
                continue
            seconds = 3600.0 if ttl == "1h" else 300.0
            self.entries[hashes[mark]] = (now + seconds, seconds)
            if sizes[mark] > covered:
                written[ttl] += sizes[mark] - covered
                covered = sizes[mark]
        rest = max(inputs - read - written["5m"] - written["1h"], 0)
        return _usage(rest, outputs, read, written["5m"], written["1h"])


def _prompt_blocks(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Tools, system blocks and message blocks in the order Anthropic caches them."""
    blocks: list[Any] = list(data.get("tools") or [])
    system = data.get("system")
    if isinstance(system, str):
        blocks.append({"type": "text", "text": system})
    elif isinstance(system, list):
        blocks += system
    for message in data.get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            blocks.append({"type": "text", "text": content})
        elif isinstance(content, list):
            blocks += content
    return [b for b in blocks if isinstance(b, Mapping)]


def _ttl_name(block: Mapping[str, Any]) -> str:
    control = block.get("cache_control")
    return "1h" if isinstance(control, Mapping) and control.get("ttl") == "1h" else "5m"


def _start_frames(
    model: str, usage: int | dict[str, Any], message_id: str = "msg_01Fake"
) -> list[tuple[bytes, bool]]:
    message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(usage, 1) if isinstance(usage, int) else usage,
    }
    return [(sse("message_start", {"type": "message_start", "message": message}), False)]


def _block_frames(index: int, block: Mapping[str, Any]) -> list[tuple[bytes, bool]]:
    """content_block_start, a ping after the first one, the deltas, content_block_stop."""
    kind = block["type"]
    start: dict[str, Any] = (
        {"type": kind, kind: ""} if kind != "tool_use" else {**block, "input": {}}
    )
    if kind == "thinking":
        start["signature"] = ""
    head = {"type": "content_block_start", "index": index, "content_block": start}
    frames = [(sse("content_block_start", head), kind == "tool_use")]
    if index == 0:
        frames.append((sse("ping", {"type": "ping"}), False))
    frames += [(_delta(index, d), bool(_delta_text(d))) for d in _deltas(block)]
    frames.append(
        (sse("content_block_stop", {"type": "content_block_stop", "index": index}), False)
    )
    return frames


def _deltas(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    kind = block["type"]
    if kind == "text":
        return [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
    if kind == "thinking":
        deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])]
        return deltas + [{"type": "signature_delta", "signature": block["signature"]}]
    arguments = json.dumps(block["input"])
    pieces = [arguments[i : i + 12] for i in range(0, len(arguments), 12)]
    return [{"type": "input_json_delta", "partial_json": p} for p in ["", *pieces]]


def _delta_text(delta: Mapping[str, Any]) -> str:
    return str(next(v for k, v in delta.items() if k != "type"))


def _delta(index: int, delta: Mapping[str, Any]) -> bytes:
    return sse(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _pieces(text: str) -> list[str]:
    """Words with their trailing space: how text arrives in several deltas."""
    return re.findall(r"\S+\s*|\s+", text)
