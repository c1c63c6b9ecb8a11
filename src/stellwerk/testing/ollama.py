"""A fake Ollama server: `/api/chat` plus the model-management endpoints `stellwerk check` reads.

It answers the way Ollama does, so the adapter is tested against the protocol rather than against
our own idea of it: chat streams NDJSON unless the request says `"stream": false` (Ollama
streams by default), each line a full object with `done: false` and the last one `done: true`
with `done_reason` and the counts; Go's `omitempty` drops a zero `prompt_eval_count` (a cached
prompt) and a zero tool-call `index`; errors are `{"error": "..."}` with Ollama's own sentences.
It checks what Ollama checks before it generates: a body, a model name, an installed model, and
the `think` and `tools` capabilities of that model. A `key` makes it act like Ollama behind an
authenticating proxy, answering 401 to a missing or wrong Bearer token.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._server import FakeUpstream, Received, Reply, usage_for

NS = 1_000_000  # durations are nanoseconds; the fake reports a fixed millisecond per step


@dataclass(frozen=True)
class InstalledModel:
    """One model as `/api/tags`, `/api/show` and `/api/ps` describe it."""

    name: str  # "deepseek-r1:8b"
    family: str = "llama"
    parameter_size: str = "8.0B"
    quantization_level: str = "Q4_K_M"
    context_length: int = 131072
    capabilities: tuple[str, ...] = ("completion",)
    size: int = 4_920_753_328

    @property
    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


DEFAULT_MODELS = (
    InstalledModel("deepseek-r1:8b", "qwen3", "8.2B", "Q4_K_M", 131072, ("completion", "thinking")),
    InstalledModel(
        "qwen3:4b",
        "qwen3",
        "4.0B",
        "Q4_K_M",
        40960,
        ("completion", "tools", "thinking"),
        2_497_293_931,
    ),
    InstalledModel("codellama:7b", "llama", "7B", "Q4_0", 16384, ("completion",), 3_825_819_519),
)

ERRORS: dict[int, str] = {
    400: "json: cannot unmarshal string into Go struct field ChatRequest.messages"
    " of type []api.Message",
    401: "unauthorized",
    403: "forbidden",
    404: 'model "llama9" not found, try pulling it first',
    429: "too many requests",
    500: "model requires more system memory (9.6 GiB) than is available (4.2 GiB)",
    502: "bad gateway",
    503: "server busy, please try again.  maximum pending requests exceeded",
}
CONTEXT_OVERFLOW = "the input length exceeds the context length"
STREAM_ERROR = "an error was encountered while running the model"
CREATED_AT = "2025-10-17T23:14:07.414671Z"


def _line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _pieces(text: str) -> list[str]:
    """Text split the way tokens arrive: words with their leading space."""
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words) if w or i == 0]


class FakeOllama(FakeUpstream):
    """Fake Ollama. `FakeOllama(script=[...], models=[...], key=None)`."""

    routes = (("POST", "/api/chat"),)
    content_type = "application/x-ndjson"

    def __init__(
        self,
        script: Iterable[Reply | int] = (),
        default: Reply | None = None,
        *,
        models: Iterable[InstalledModel] = DEFAULT_MODELS,
        key: str | None = None,
        version: str = "0.12.6",
    ) -> None:
        super().__init__(script, default)
        self.models = {m.name: m for m in models}
        self.key = key
        self.version = version
        self.loaded: dict[str, int] = {}  # model name -> num_ctx it was last run with

    # -- scripting helpers -----------------------------------------------------------------

    def error_reply(self, status: int) -> Reply:
        message = ERRORS.get(status, f"error {status}")
        return Reply.error(status, {"error": message})

    @staticmethod
    def raw_stream(*lines: bytes | Mapping[str, Any]) -> Reply:
        """A streaming answer of exactly these lines (dicts are encoded, bytes sent as they are)."""
        body = b"".join(line if isinstance(line, bytes) else _line(line) for line in lines)
        return Reply(kind="raw", body=body)

    @staticmethod
    def chunk(content: str = "", *, thinking: str = "", model: str = "qwen3:4b") -> bytes:
        """One `done: false` line, as Ollama streams it."""
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        return _line({"model": model, "created_at": CREATED_AT, "message": message, "done": False})

    # -- validation, as Ollama does it before generating -----------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        rejection = self._reject(request, raw)
        if rejection is None:
            return await super().handle(request)
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        self.received.append(Received(request.method, request.path, dict(request.headers), data))
        return rejection

    def _reject(self, request: web.Request, raw: bytes) -> web.Response | None:
        if (denied := self._check_key(request)) is not None:
            return denied
        if not raw:
            return _error(400, "missing request body")
        try:
            data = json.loads(raw)
        except ValueError:
            return _error(400, f"invalid character {raw[:1].decode(errors='replace')!r}")
        if not isinstance(data, dict):
            return _error(400, "json: cannot unmarshal into Go value of type api.ChatRequest")
        return self._check_chat(data)

    def _check_key(self, request: web.Request) -> web.Response | None:
        if self.key is None:
            return None
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return _error(401, "unauthorized")
        return None

    def _check_chat(self, data: Mapping[str, Any]) -> web.Response | None:
        name = data.get("model")
        if not isinstance(name, str) or not name:
            return _error(400, "model is required")
        if not isinstance(data.get("messages", []), list):
            return _error(400, ERRORS[400])
        model = self.find(name)
        if model is None:
            return _error(404, f"model {json.dumps(name)} not found, try pulling it first")
        if data.get("think") is True and "thinking" not in model.capabilities:
            return _error(400, f"{json.dumps(name)} does not support thinking")
        if data.get("tools") and "tools" not in model.capabilities:
            return _error(400, f"registry.ollama.ai/library/{model.name} does not support tools")
        options = data.get("options") or {}
        self.loaded[model.name] = int(options.get("num_ctx") or 4096)
        return None

    def find(self, name: str) -> InstalledModel | None:
        """The installed model a name means (`llama3` is `llama3:latest`)."""
        return self.models.get(name) or self.models.get(f"{name}:latest")

    # -- chat answers ----------------------------------------------------------------------

    def wants_stream(self, data: Mapping[str, Any]) -> bool:
        return data.get("stream", True) is not False

    def render(self, reply: Reply, data: Any) -> Any:
        if reply.kind == "raw":
            return json.loads(reply.body)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.thinking:
            message["thinking"] = reply.thinking
        if reply.tool_calls:
            message["tool_calls"] = self._tool_calls(reply)
        return {**self._head(reply, data), "message": message, **self._final(reply, data)}

    def stream_frames(self, reply: Reply, data: Any) -> list[tuple[bytes, bool]]:
        if reply.kind == "raw":
            return [(line + b"\n", True) for line in reply.body.splitlines()]
        head = self._head(reply, data)
        frames = [
            (_line({**head, "message": {"role": "assistant", "content": "", "thinking": piece}}))
            for piece in (_pieces(reply.thinking) if reply.thinking else [])
        ]
        frames += [
            _line({**head, "message": {"role": "assistant", "content": piece}})
            for piece in (_pieces(reply.text) if reply.text else [])
        ]
        if reply.tool_calls:
            calls = self._tool_calls(reply)
            message = {"role": "assistant", "content": "", "tool_calls": calls}
            frames.append(_line({**head, "message": message}))
        final = {
            **head,
            "message": {"role": "assistant", "content": ""},
            **self._final(reply, data),
        }
        return [(f, True) for f in frames] + [(_line(final), False)]

    def _head(self, reply: Reply, data: Any) -> dict[str, Any]:
        model = reply.model or (data.get("model") if isinstance(data, dict) else None)
        return {"model": model or "", "created_at": CREATED_AT, "done": False}

    def _final(self, reply: Reply, data: Any) -> dict[str, Any]:
        prompt, output = usage_for(reply, data)
        final: dict[str, Any] = {
            "done_reason": "length" if reply.stop == "max_tokens" else "stop",
            "done": True,
            "total_duration": 5 * NS,
            "load_duration": 1 * NS,
        }
        if prompt:  # Go's omitempty: a fully cached prompt reports no count at all
            final["prompt_eval_count"] = prompt
            final["prompt_eval_duration"] = 2 * NS
        final["eval_count"] = output
        final["eval_duration"] = 2 * NS
        return final

    def _tool_calls(self, reply: Reply) -> list[dict[str, Any]]:
        calls = []
        for index, call in enumerate(reply.tool_calls):
            function: dict[str, Any] = {"name": call.name, "arguments": dict(call.arguments)}
            if index:  # omitempty drops index 0
                function["index"] = index
            entry: dict[str, Any] = {"function": function}
            if call.id:  # Ollama 0.12 and later give ids; older servers none
                entry = {"id": call.id, **entry}
            calls.append(entry)
        return calls

    # -- model management ------------------------------------------------------------------

    def _add_extra_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._root)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_get("/api/version", self._version)
        app.router.add_post("/api/show", self._show)

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def _tags(self, request: web.Request) -> web.Response:
        self._record(request, None)
        if (denied := self._check_key(request)) is not None:
            return denied
        models = [self._summary(m) for m in self.models.values()]
        return web.json_response({"models": models})

    async def _ps(self, request: web.Request) -> web.Response:
        self._record(request, None)
        if (denied := self._check_key(request)) is not None:
            return denied
        running = [
            {**self._summary(self.models[name]), "context_length": ctx, "size_vram": 0}
            for name, ctx in self.loaded.items()
        ]
        return web.json_response({"models": running})

    async def _version(self, request: web.Request) -> web.Response:
        self._record(request, None)
        return web.json_response({"version": self.version})

    async def _show(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.read() or b"{}")
        except ValueError:
            data = None
        self._record(request, data)
        if (denied := self._check_key(request)) is not None:
            return denied
        name = data.get("model") or data.get("name") if isinstance(data, dict) else None
        if not name:
            return _error(400, "model is required")
        model = self.find(str(name))
        if model is None:
            return _error(404, f"model '{name}' not found")
        return web.json_response(self._details(model))

    def _record(self, request: web.Request, data: Any) -> None:
        self.received.append(Received(request.method, request.path, dict(request.headers), data))

    def _summary(self, model: InstalledModel) -> dict[str, Any]:
        return {
            "name": model.name,
            "model": model.name,
            "modified_at": "2025-10-03T23:34:03.409490317-07:00",
            "size": model.size,
            "digest": hashlib.sha256(model.name.encode()).hexdigest(),
            "details": model.details,
        }

    def _details(self, model: InstalledModel) -> dict[str, Any]:
        arch = model.family
        return {
            "parameters": "temperature 0.6\nstop <｜end▁of▁sentence｜>",
            "license": "MIT License",
            "modified_at": "2025-10-03T23:34:03.409490317-07:00",
            "template": "{{ .System }}{{ range .Messages }}{{ .Content }}{{ end }}",
            "details": model.details,
            "capabilities": list(model.capabilities),
            "model_info": {
                "general.architecture": arch,
                "general.parameter_count": 8_190_735_360,
                f"{arch}.block_count": 36,
                f"{arch}.context_length": model.context_length,
                f"{arch}.embedding_length": 4096,
            },
        }


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
