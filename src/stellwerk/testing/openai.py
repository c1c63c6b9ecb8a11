"""Fake OpenAI and OpenRouter servers: Chat Completions, the Responses API and `/models`.

They answer in the shapes the official `openai` SDK parses (the tests validate every body and
event against the SDK's own models): `chat.completion` objects and `chat.completion.chunk` SSE
frames ending in an empty-choices usage chunk (only when `stream_options.include_usage` asks)
and `data: [DONE]`; `response` objects and the typed Responses events ending in
`response.completed` or `response.incomplete`. Errors carry the bodies and headers the real
services send, quoted in `OPENAI_ERRORS` and `OPENROUTER_ERRORS`. Before answering, a fake checks
what the real API checks cheaply: the Bearer key, required fields, `max_tokens` and `temperature`
on reasoning models, and that every tool result answers a tool call of the conversation.

Prompt caching is automatic, as OpenAI documents it (`AutoCache`): a prompt of 1,024 tokens or
more leaves its prefixes in the cache for a few minutes, and a later prompt with the same prefix
(and the same `prompt_cache_key`) reports the cached part, in steps of 128 tokens, as
`prompt_tokens_details.cached_tokens` (Responses: `input_tokens_details.cached_tokens`).
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

from ._server import FakeUpstream, Received, Reply, ToolCall, usage_for

JSON = dict[str, Any]
CREATED = 1_732_000_000
_REASONING = re.compile(r"^(o\d|gpt-5)")
_FINISH = {"end": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def _err(message: str, kind: str, code: str | None = None, param: str | None = None) -> JSON:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# name: (status, message, type, code, param) -- the bodies api.openai.com sends.
_OPENAI: dict[str, tuple[int, str, str, str | None, str | None]] = {
    "insufficient_quota": (
        429,
        "You exceeded your current quota, please check your plan and billing details. For more"
        " information on this error, read the docs:"
        " https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        "insufficient_quota",
        None,
    ),
    "rate_limit": (
        429,
        "Rate limit reached for gpt-4o-mini in organization org-xxx on requests per min (RPM):"
        " Limit 3, Used 3, Requested 1. Please try again in 20s. Visit"
        " https://platform.openai.com/account/rate-limits to learn more.",
        "requests",
        "rate_limit_exceeded",
        "requests",
    ),
    "invalid_api_key": (
        401,
        "Incorrect API key provided: sk-wrong***********1234. You can find your API key at"
        " https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
        None,
    ),
    "unsupported_country": (
        403,
        "Country, region, or territory not supported",
        "request_forbidden",
        "unsupported_country_region_territory",
        None,
    ),
    "model_not_found": (
        404,
        "The model `gpt-9` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
        None,
    ),
    "context_length_exceeded": (
        400,
        "This model's maximum context length is 128000 tokens. However, your messages resulted"
        " in 130000 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
    ),
    "invalid_request": (
        400,
        "Invalid type for 'messages[0].content': expected one of a string or array of objects,"
        " but got an integer instead.",
        "invalid_request_error",
        "invalid_type",
        "messages[0].content",
    ),
    "server_error": (
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
        None,
    ),
    "overloaded": (
        503,
        "That model is currently overloaded with other requests. You can retry your request, or"
        " contact us through our help center at help.openai.com if the error persists. (Please"
        " include the request ID 500d9fff2057e4af93a280f67002c342 in your message.)",
        "server_error",
        None,
        None,
    ),
    "engine_overloaded": (
        503,
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
        None,
    ),
}
_RATE_HEADERS = {
    "retry-after": "20",
    "x-ratelimit-limit-requests": "3",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "20s",
}
Error = tuple[int, JSON, Mapping[str, str]]
OPENAI_ERRORS: dict[str, Error] = {
    name: (status, _err(message, kind, code, param), _RATE_HEADERS if name == "rate_limit" else {})
    for name, (status, message, kind, code, param) in _OPENAI.items()
}
OPENAI_ERRORS["bad_gateway"] = (
    502,
    {"error": {"code": 502, "message": "Bad gateway.", "param": None, "type": "cf_bad_gateway"}},
    {},
)

_SETTINGS = "https://openrouter.ai/settings"
# name: (status, message, metadata) -- the bodies openrouter.ai sends: {error: {message, code}}.
_OPENROUTER: dict[str, tuple[int, str, JSON | None]] = {
    "insufficient_credits": (
        402,
        f"Insufficient credits. Add more using {_SETTINGS}/credits",
        None,
    ),
    "cannot_afford": (
        402,
        "This request requires more credits, or fewer max_tokens. You requested up to 4096"
        " tokens, but can only afford 1203. To increase, visit"
        f" {_SETTINGS}/credits and upgrade to a paid account",
        {"provider_name": None},
    ),
    "key_limit_daily": (
        403,
        f"Key limit exceeded (daily limit). Manage it using {_SETTINGS}/keys",
        None,
    ),
    "key_limit_total": (
        403,
        f"Key limit exceeded (total limit). Manage it using {_SETTINGS}/keys",
        None,
    ),
    "free_models_per_day": (
        429,
        "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model"
        " requests per day",
        {
            "headers": {
                "X-RateLimit-Limit": "50",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": "1746057600000",
            },
            "provider_name": None,
        },
    ),
    "upstream_rate_limited": (
        429,
        "anthropic/claude-3.5-haiku is temporarily rate-limited upstream. Please retry shortly,"
        f" or add your own key to accumulate your rate limits: {_SETTINGS}/integrations",
        {"raw": "rate limited", "provider_name": "Anthropic"},
    ),
    "user_not_found": (401, "User not found.", None),
    "no_endpoints": (404, "No endpoints found for openrouter/nope.", None),
    "context_length_exceeded": (
        400,
        "This endpoint's maximum context length is 200000 tokens. However, you requested about"
        " 250000 tokens (250000 of text input). Please reduce the length of either one, or use"
        ' the "middle-out" transform to compress your prompt automatically.',
        None,
    ),
    "invalid_request": (400, 'Input required: specify "prompt" or "messages"', None),
    "server_error": (500, "Internal Server Error", None),
    "provider_error": (
        502,
        "Provider returned error",
        {"raw": "upstream connect error", "provider_name": "Anthropic"},
    ),
    "no_providers": (503, "No allowed providers are available for the selected model.", None),
}


def _openrouter_error(status: int, message: str, metadata: JSON | None) -> JSON:
    error: JSON = {"message": message, "code": status}
    return {"error": error | {"metadata": metadata} if metadata else error}


_OPENROUTER_HEADERS = {"upstream_rate_limited": {"retry-after": "7"}}
OPENROUTER_ERRORS: dict[str, Error] = {
    name: (status, _openrouter_error(status, message, meta), _OPENROUTER_HEADERS.get(name, {}))
    for name, (status, message, meta) in _OPENROUTER.items()
}
_OPENAI_BY_STATUS = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "unsupported_country",
    404: "model_not_found",
    429: "rate_limit",
    500: "server_error",
    502: "bad_gateway",
    503: "overloaded",
}
_OPENROUTER_BY_STATUS = {
    400: "invalid_request",
    401: "user_not_found",
    402: "insufficient_credits",
    403: "key_limit_total",
    404: "no_endpoints",
    429: "free_models_per_day",
    500: "server_error",
    502: "provider_error",
    503: "no_providers",
}


def raw_stream(body: bytes) -> Reply:
    """A 200 event stream whose body is exactly `body` (empty, malformed, custom events)."""
    return Reply(kind="raw", body=body)


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event."""
    head = f"event: {event}\n".encode() if event else b""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return head + b"data: " + text.encode() + b"\n\n"


def is_reasoning_model(name: str) -> bool:
    return bool(_REASONING.match(name))


def pieces(text: str) -> list[str]:
    """Text as the token-sized pieces a stream delivers it in."""
    return re.findall(r"\S+\s*|\s+", text)


def arguments_of(call: ToolCall) -> str:
    return json.dumps(dict(call.arguments), separators=(",", ":"))


def halves(text: str) -> list[str]:
    middle = len(text) // 2
    return [p for p in (text[:middle], text[middle:]) if p]


@dataclass
class AutoCache:
    """OpenAI's automatic prompt cache: prefixes of prompts of `min_tokens` or more, per model
    and `prompt_cache_key`, kept `ttl` seconds after their last use. A prompt is read in order
    (tools, instructions, then each message or input item); a part is `len(its JSON) // 4`
    tokens, as the fake counts."""

    min_tokens: int = 1024
    step: int = 128
    ttl: float = 600.0
    clock: Callable[[], float] = time.monotonic
    entries: dict[str, float] = default(default_factory=dict)

    def cached(self, data: JSON, prompt: int) -> int:
        """The cached part of this prompt, and the prompt's prefixes remembered for later."""
        parts = [data.get("tools"), data.get("instructions")]
        items = data.get("messages") if "messages" in data else data.get("input")
        parts += items if isinstance(items, list) else [items]
        seed = f"{data.get('model')}|{data.get('prompt_cache_key') or ''}"
        digest = hashlib.sha256(seed.encode())
        now, size, hit = self.clock(), 0, 0
        ttl = 86400.0 if data.get("prompt_cache_retention") == "24h" else self.ttl
        for part in parts:
            if part is None:
                continue
            text = json.dumps(part, sort_keys=True, separators=(",", ":"))
            digest.update(text.encode())
            size += len(text) // 4
            key = digest.hexdigest()
            if self.entries.get(key, 0.0) > now:
                hit = size
            if size >= self.min_tokens:
                self.entries[key] = now + ttl
        if hit < self.min_tokens or prompt < self.min_tokens:
            return 0
        return min(self.min_tokens + (hit - self.min_tokens) // self.step * self.step, prompt)


class FakeOpenAI(FakeUpstream):
    """OpenAI on 127.0.0.1: `/v1/chat/completions`, `/v1/responses`, `/v1/models`."""

    base_path = "/v1"
    errors = OPENAI_ERRORS
    by_status = _OPENAI_BY_STATUS
    reasoning_field = "reasoning_content"  # where chat answers put thinking (DeepSeek, vLLM)
    checks_reasoning = True
    usage_always = False

    def __init__(
        self,
        script: Iterable[Reply | int] = (),
        default: Reply | None = None,
        *,
        key: str | None = None,
        auth: bool = True,
        models: Iterable[str] | None = None,
    ) -> None:
        super().__init__(script, default)
        self.key = key
        self.auth = auth
        self.models = tuple(models) if models is not None else None
        self.cache = AutoCache()
        self.routes = (
            ("POST", f"{self.base_path}/chat/completions"),
            ("POST", f"{self.base_path}/responses"),
        )

    @property
    def base_url(self) -> str:
        """What a provider's `base_url` is set to."""
        return self.url + self.base_path

    # -- scripting ---------------------------------------------------------------------------

    def error(self, name: str) -> Reply:
        """One of the real error answers, by name (`insufficient_quota`, `overloaded`, ...)."""
        status, body, headers = self.errors[name]
        return Reply.error(status, body, headers)

    def error_reply(self, status: int) -> Reply:
        name = self.by_status.get(status)
        if name is None:
            return Reply.error(status, _err(f"HTTP {status}", "server_error"))
        return self.error(name)

    # -- checks before answering -------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        problem = self.check_auth(request.headers) or self.check(request.path, data)
        if problem is None:
            return await super().handle(request)
        self.received.append(Received(request.method, request.path, dict(request.headers), data))
        status, body = problem
        return web.json_response(body, status=status)

    def check_auth(self, headers: Mapping[str, str]) -> tuple[int, JSON] | None:
        if not self.auth:
            return None
        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not given:
            return 401, self.missing_key_body()
        if self.key is not None and given != self.key:
            return 401, self.wrong_key_body(given)
        return None

    def missing_key_body(self) -> JSON:
        return _err(
            "You didn't provide an API key. You need to provide your API key in an"
            " Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or"
            " as the password field (with blank username) if you're accessing the API from your"
            " browser and are prompted for a username and password. You can obtain an API key"
            " from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
        )

    def wrong_key_body(self, given: str) -> JSON:
        masked = (
            f"{given[:8]}{'*' * (len(given) - 12)}{given[-4:]}" if len(given) > 12 else "sk-***"
        )
        return _err(
            f"Incorrect API key provided: {masked}. You can find your API key at"
            " https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )

    def check(self, path: str, data: Any) -> tuple[int, JSON] | None:
        """The 400/404 the real API sends for this body, or None."""
        if not isinstance(data, dict):
            return 400, _err(
                "We could not parse the JSON body of your request. (HINT: This likely means"
                " you aren't using your HTTP library correctly. The OpenAI API expects a JSON"
                " payload, but what was sent was not valid JSON.)",
                "invalid_request_error",
            )
        if not isinstance(data.get("model"), str):
            return 400, _err("you must provide a model parameter", "invalid_request_error")
        if self.models is not None and data["model"] not in self.models:
            return 404, _err(
                f"The model `{data['model']}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        if path.endswith("/responses"):
            return self._check_responses(data) or self._check_sampling(data)
        return self._check_sampling(data) or self._check_chat(data)

    def _check_sampling(self, data: JSON) -> tuple[int, JSON] | None:
        if not (self.checks_reasoning and is_reasoning_model(data["model"])):
            return None
        if "max_tokens" in data:
            return _invalid(
                "Unsupported parameter: 'max_tokens' is not supported with this model. Use"
                " 'max_completion_tokens' instead.",
                "unsupported_parameter",
                "max_tokens",
            )
        for key in ("temperature", "top_p"):
            if key in data and data[key] != 1:
                return _invalid(
                    f"Unsupported value: '{key}' does not support {data[key]} with this model."
                    " Only the default (1) value is supported.",
                    "unsupported_value",
                    key,
                )
        return None

    def _check_chat(self, data: JSON) -> tuple[int, JSON] | None:
        messages = data.get("messages")
        if messages is None:
            return _invalid(
                "Missing required parameter: 'messages'.", "missing_required_parameter", "messages"
            )
        if not isinstance(messages, list) or not messages:
            return _invalid(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but"
                " got an empty array instead.",
                "empty_array",
                "messages",
            )
        return _check_tool_pairs(messages)

    def _check_responses(self, data: JSON) -> tuple[int, JSON] | None:
        if "messages" in data:
            return _invalid("Unknown parameter: 'messages'.", "unknown_parameter", "messages")
        if "max_tokens" in data:
            return _invalid(
                "Unsupported parameter: 'max_tokens'. In the Responses API, this parameter has"
                " moved to 'max_output_tokens'.",
                "unsupported_parameter",
                "max_tokens",
            )
        return _check_input(data.get("input"))

    # -- answers -----------------------------------------------------------------------------

    def _add_extra_routes(self, app: web.Application) -> None:
        app.router.add_get(f"{self.base_path}/models", self.list_models)

    async def list_models(self, request: web.Request) -> web.Response:
        problem = self.check_auth(request.headers)
        if problem is not None:
            return web.json_response(problem[1], status=problem[0])
        names = self.models or ("gpt-4o-mini", "o3-mini", "gpt-5.1-codex")
        data = [
            {"id": n, "object": "model", "created": CREATED, "owned_by": "system"} for n in names
        ]
        return web.json_response({"object": "list", "data": data})

    def resolve_model(self, requested: str) -> str:
        """The model name an answer reports for the requested one."""
        return requested

    def render(self, reply: Reply, data: Any) -> Any:
        if "messages" in data:
            return self.render_chat(reply, data)
        return self.render_responses(reply, data)

    def stream_frames(self, reply: Reply, data: Any) -> list[tuple[bytes, bool]]:
        if reply.kind == "raw":
            return [(reply.body, False)] if reply.body else []
        if "messages" in data:
            return self.chat_frames(reply, data)
        return self.responses_frames(reply, data)

    # -- Chat Completions --------------------------------------------------------------------

    def render_chat(self, reply: Reply, data: JSON) -> JSON:
        message: JSON = {
            "role": "assistant",
            "content": reply.text or None,
            "refusal": None,
            "annotations": [],
        }
        if reply.tool_calls:
            message["tool_calls"] = [self._chat_call(i, c) for i, c in enumerate(reply.tool_calls)]
        if reply.thinking:
            message[self.reasoning_field] = reply.thinking
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": _FINISH[reply.stop],
        }
        head = self._chat_head(reply, data, "chat.completion")
        return {**head, "choices": [choice], "usage": self.chat_usage(reply, data)}

    def _chat_call(self, index: int, call: ToolCall) -> JSON:
        function = {"name": call.name, "arguments": arguments_of(call)}
        return {"id": call.id or f"call_{index}", "type": "function", "function": function}

    def _chat_head(self, reply: Reply, data: JSON, kind: str) -> JSON:
        return {
            "id": "chatcmpl-fake" + str(CREATED),
            "object": kind,
            "created": CREATED,
            "model": reply.model or self.resolve_model(data["model"]),
            "service_tier": "default",
            "system_fingerprint": "fp_fake0001",
        }

    def chat_usage(self, reply: Reply, data: JSON) -> JSON:
        prompt, completion = usage_for(reply, data)
        cached = self.cache.cached(data, prompt) if reply.usage is None else 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def chat_frames(self, reply: Reply, data: JSON) -> list[tuple[bytes, bool]]:
        with_usage = self.usage_always or bool(
            (data.get("stream_options") or {}).get("include_usage")
        )
        head = self._chat_head(reply, data, "chat.completion.chunk")

        def frame(delta: JSON, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**head, "choices": [choice]} | ({"usage": None} if with_usage else {}))

        frames = [(frame({"role": "assistant", "content": "", "refusal": None}), False)]
        frames += [(frame({self.reasoning_field: p}), True) for p in pieces(reply.thinking)]
        frames += [(frame({"content": p}), True) for p in pieces(reply.text)]
        for i, call in enumerate(reply.tool_calls):
            start = self._chat_call(i, call)
            start["function"] = {"name": call.name, "arguments": ""}
            frames.append((frame({"tool_calls": [{"index": i, **start}]}), True))
            for part in halves(arguments_of(call)):
                delta = {"tool_calls": [{"index": i, "function": {"arguments": part}}]}
                frames.append((frame(delta), True))
        frames.append((frame({}, _FINISH[reply.stop]), False))
        if with_usage:
            usage = {**head, "choices": [], "usage": self.chat_usage(reply, data)}
            frames.append((sse(usage), False))
        return [*frames, (sse("[DONE]"), False)]

    # -- Responses API -----------------------------------------------------------------------

    def render_responses(self, reply: Reply, data: JSON) -> JSON:
        return self._response(reply, data, self._output_items(reply), final=True)

    def _response(self, reply: Reply, data: JSON, output: list[JSON], *, final: bool) -> JSON:
        incomplete = final and reply.stop == "max_tokens"
        status = "incomplete" if incomplete else "completed" if final else "in_progress"
        prompt, completion = usage_for(reply, data)
        cached = self.cache.cached(data, prompt) if final and reply.usage is None else 0
        usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        }
        return {
            "id": "resp_fake" + str(CREATED),
            "object": "response",
            "created_at": CREATED,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": data.get("instructions"),
            "max_output_tokens": data.get("max_output_tokens"),
            "model": reply.model or self.resolve_model(data["model"]),
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": data.get("store", True),
            "temperature": data.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": data.get("tool_choice", "auto"),
            "tools": data.get("tools", []),
            "top_p": data.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage if final else None,
            "user": None,
            "metadata": {},
        }

    def _output_items(self, reply: Reply) -> list[JSON]:
        items: list[JSON] = []
        if reply.thinking:
            summary = [{"type": "summary_text", "text": reply.thinking}]
            items.append({"id": "rs_fake", "type": "reasoning", "summary": summary})
        if reply.text:
            items.append(_message_item(reply.text, "completed"))
        for i, call in enumerate(reply.tool_calls):
            items.append(_call_item(i, call, arguments_of(call), "completed"))
        return items

    def responses_frames(self, reply: Reply, data: JSON) -> list[tuple[bytes, bool]]:
        events = _ResponsesEvents()
        started = self._response(reply, data, [], final=False)
        events.add("response.created", response=started)
        events.add("response.in_progress", response=started)
        for index, item in enumerate(self._output_items(reply)):
            events.item(index, item)
        final = self._response(reply, data, self._output_items(reply), final=True)
        events.add(f"response.{final['status']}", response=final)
        return events.frames


def _message_item(text: str, status: str) -> JSON:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "id": "msg_fake",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content if status == "completed" else [],
    }


def _call_item(index: int, call: ToolCall, arguments: str, status: str) -> JSON:
    return {
        "id": f"fc_fake{index}",
        "type": "function_call",
        "status": status,
        "call_id": call.id or f"call_{index}",
        "name": call.name,
        "arguments": arguments,
    }


class _ResponsesEvents:
    """The typed event sequence of a streamed response; every `*.delta` event is content."""

    def __init__(self) -> None:
        self.frames: list[tuple[bytes, bool]] = []

    def add(self, kind: str, **fields: Any) -> None:
        body = {"type": kind, "sequence_number": len(self.frames), **fields}
        self.frames.append((sse(body, kind), kind.endswith(".delta")))

    def item(self, index: int, item: JSON) -> None:
        if item["type"] == "message":
            self._message(index, item)
        elif item["type"] == "function_call":
            self._call(index, item)
        else:
            self._reasoning(index, item)
        self.add("response.output_item.done", output_index=index, item=item)

    def _message(self, index: int, item: JSON) -> None:
        text = item["content"][0]["text"]
        at = {"output_index": index, "item_id": item["id"], "content_index": 0}
        empty = {"type": "output_text", "text": "", "annotations": []}
        started = _message_item(text, "in_progress")
        self.add("response.output_item.added", output_index=index, item=started)
        self.add("response.content_part.added", **at, part=empty)
        for part in pieces(text):
            self.add("response.output_text.delta", **at, delta=part, logprobs=[])
        self.add("response.output_text.done", **at, text=text, logprobs=[])
        self.add("response.content_part.done", **at, part={**empty, "text": text})

    def _call(self, index: int, item: JSON) -> None:
        at = {"output_index": index, "item_id": item["id"]}
        started = {**item, "arguments": "", "status": "in_progress"}
        self.add("response.output_item.added", output_index=index, item=started)
        for part in halves(item["arguments"]):
            self.add("response.function_call_arguments.delta", **at, delta=part)
        self.add("response.function_call_arguments.done", **at, arguments=item["arguments"])

    def _reasoning(self, index: int, item: JSON) -> None:
        at = {"output_index": index, "item_id": item["id"], "summary_index": 0}
        self.add("response.output_item.added", output_index=index, item={**item, "summary": []})
        for part in pieces(item["summary"][0]["text"]):
            self.add("response.reasoning_summary_text.delta", **at, delta=part)


def _invalid(message: str, code: str | None, param: str | None) -> tuple[int, JSON]:
    return 400, _err(message, "invalid_request_error", code, param)


def _check_tool_pairs(messages: list[Any]) -> tuple[int, JSON] | None:
    """Each tool message answers a call of the assistant turn before it; each call is answered."""
    open_calls: list[str] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "tool":
            if message.get("tool_call_id") not in open_calls:
                return _invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a"
                    " preceeding message with 'tool_calls'.",
                    None,
                    f"messages.[{i}].role",
                )
            open_calls.remove(message["tool_call_id"])
            continue
        if open_calls:
            return _invalid(
                "An assistant message with 'tool_calls' must be followed by tool messages"
                " responding to each 'tool_call_id'. The following tool_call_ids did not have"
                f" response messages: {', '.join(open_calls)}",
                None,
                f"messages.[{i}].role",
            )
        if role == "assistant":
            open_calls = [c.get("id") for c in message.get("tool_calls") or []]
    return None


def _check_input(items: Any) -> tuple[int, JSON] | None:
    """Each function_call_output follows its function_call; assistant text is output_text."""
    if not isinstance(items, list):
        return None
    calls: set[str] = set()
    for i, item in enumerate(items):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "function_call":
            calls.add(item.get("call_id"))
        elif kind == "function_call_output" and item.get("call_id") not in calls:
            return _invalid(
                f"No tool call found for function call output with call_id {item.get('call_id')}.",
                None,
                "input",
            )
        elif kind == "message" and item.get("role") == "assistant":
            for j, part in enumerate(
                item.get("content") or [] if isinstance(item.get("content"), list) else []
            ):
                if part.get("type") not in ("output_text", "refusal"):
                    return _invalid(
                        f"Invalid value: '{part.get('type')}'. Supported values are:"
                        " 'output_text' and 'refusal'.",
                        "invalid_value",
                        f"input[{i}].content[{j}]",
                    )
    return None


class FakeOpenRouter(FakeOpenAI):
    """OpenRouter on 127.0.0.1 (`/api/v1`): resolves `openrouter/auto`, reports `usage.cost`."""

    base_path = "/api/v1"
    errors = OPENROUTER_ERRORS
    by_status = _OPENROUTER_BY_STATUS
    reasoning_field = "reasoning"
    checks_reasoning = False
    usage_always = True
    resolved = {
        "openrouter/auto": "anthropic/claude-3.5-haiku",
        "openrouter/free": "meta-llama/llama-3.3-70b-instruct:free",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.routes = (("POST", f"{self.base_path}/chat/completions"),)

    def resolve_model(self, requested: str) -> str:
        return self.resolved.get(requested, requested)

    def _add_extra_routes(self, app: web.Application) -> None:
        super()._add_extra_routes(app)
        app.router.add_get(f"{self.base_path}/key", self.key_info)

    async def key_info(self, request: web.Request) -> web.Response:
        """`GET /api/v1/key`: the calling key's label, limit and usage (what `check` asks)."""
        problem = self.check_auth(request.headers)
        if problem is not None:
            return web.json_response(problem[1], status=problem[0])
        info: dict[str, Any] = {"label": "sk-or-v1-fak...ijk", "limit": None, "usage": 0.0}
        info |= {"limit_remaining": None, "is_free_tier": False, "is_provisioning_key": False}
        return web.json_response({"data": info})

    def missing_key_body(self) -> JSON:
        return {"error": {"message": "No auth credentials found", "code": 401}}

    def wrong_key_body(self, given: str) -> JSON:
        return {"error": {"message": "User not found.", "code": 401}}

    def chat_usage(self, reply: Reply, data: JSON) -> JSON:
        usage = super().chat_usage(reply, data)
        cost = reply.cost
        if cost is None:  # claude-3.5-haiku list prices: $0.80 / $4 per million tokens
            cost = (usage["prompt_tokens"] * 0.8 + usage["completion_tokens"] * 4) / 1_000_000
        return {
            **usage,
            "cost": cost,
            "is_byok": False,
            "cost_details": {"upstream_inference_cost": None},
        }

    def _chat_head(self, reply: Reply, data: JSON, kind: str) -> JSON:
        head = super()._chat_head(reply, data, kind)
        head.pop("service_tier")
        return {**head, "id": "gen-fake" + str(CREATED), "provider": "Anthropic"}
