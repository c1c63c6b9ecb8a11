"""A scriptable fake upstream on 127.0.0.1, the base of every protocol fake.

Each fake answers from a script: a queue of `Reply` values, one per request, falling back to a
default reply when the queue is empty. A reply is either a semantic answer (`Reply.text("hi")`)
that the protocol fake renders in its own format, streaming or not as the request asked, or a
fault: an error status with the provider's real error body and headers, a delay, malformed JSON,
or a stream that breaks or ends early after N content frames. Every request is recorded, so tests
assert on exactly what was sent upstream.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any]
    id: str = ""


@dataclass(frozen=True)
class Reply:
    """One scripted answer. Build with the class methods."""

    kind: str = "text"  # text | error | malformed | raw
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    thinking: str = ""
    usage: tuple[int, int] | None = None  # (input, output); None: the fake computes some
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the first byte
    break_after: int | None = None  # streaming: drop the connection after N content frames
    truncate_after: int | None = None  # streaming: end cleanly, without the final event
    chunk_delay: float = 0.0  # streaming: pause between frames
    model: str | None = None  # the model the answer claims (openrouter/auto resolves)
    cost: float | None = None  # USD cost to report (OpenRouter)
    stop: str = "end"  # end | max_tokens | tool_use

    @classmethod
    def ok(cls, text: str = "ok", **kw: Any) -> Reply:
        return cls(kind="text", text=text, **kw)

    @classmethod
    def tools(cls, *calls: ToolCall, text: str = "", **kw: Any) -> Reply:
        return cls(kind="text", text=text, tool_calls=calls, stop="tool_use", **kw)

    @classmethod
    def error(
        cls, status: int, body: Any, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> Reply:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return cls(kind="error", status=status, body=raw, headers=headers or {}, **kw)

    @classmethod
    def malformed(cls, **kw: Any) -> Reply:
        return cls(kind="malformed", body=b'{"id": "x", "choices": [', **kw)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Reply:
        return cls(kind="text", text="late", delay=seconds)


@dataclass(frozen=True)
class Received:
    """One request the fake got."""

    method: str
    path: str
    headers: Mapping[str, str]
    json: Any

    @property
    def model(self) -> Any:
        return self.json.get("model") if isinstance(self.json, dict) else None


class FakeUpstream:
    """Base class: routes, script, recording, start/stop. Subclasses render replies."""

    routes: tuple[tuple[str, str], ...] = ()  # (method, path) pairs -> self.handle

    def __init__(self, script: Iterable[Reply | int] = (), default: Reply | None = None) -> None:
        self.script: deque[Reply] = deque(self._coerce(r) for r in script)
        self.default = default or Reply.ok("Hello from the fake.")
        self.received: list[Received] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for method, path in self.routes:
            app.router.add_route(method, path, self.handle)
        self._add_extra_routes(app)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _add_extra_routes(self, app: web.Application) -> None:
        """Hook for GET routes such as /v1/models or /api/tags."""

    # -- scripting ---------------------------------------------------------------------------

    def push(self, *replies: Reply | int) -> None:
        self.script.extend(self._coerce(r) for r in replies)

    def _coerce(self, reply: Reply | int) -> Reply:
        if isinstance(reply, int):
            return self.error_reply(reply)
        return reply

    def error_reply(self, status: int) -> Reply:
        """The provider's real error answer for a status; subclasses override."""
        return Reply.error(status, {"error": {"message": f"error {status}"}})

    def next_reply(self) -> Reply:
        return self.script.popleft() if self.script else self.default

    # -- serving -----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        self.received.append(Received(request.method, request.path, dict(request.headers), data))
        reply = self.next_reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.kind == "error":
            return web.Response(
                status=reply.status,
                body=reply.body,
                headers={"content-type": "application/json", **reply.headers},
            )
        if reply.kind == "malformed":
            return web.Response(status=200, body=reply.body, content_type="application/json")
        streaming = isinstance(data, dict) and bool(self.wants_stream(data))
        if streaming:
            return await self.send_frames(request, self.stream_frames(reply, data), reply)
        return web.json_response(self.render(reply, data))

    def wants_stream(self, data: Mapping[str, Any]) -> bool:
        return bool(data.get("stream"))

    def render(self, reply: Reply, data: Any) -> Any:
        """The non-streaming JSON body for a semantic reply."""
        raise NotImplementedError

    def stream_frames(self, reply: Reply, data: Any) -> list[tuple[bytes, bool]]:
        """The streaming frames for a reply: (bytes, is_content) in order, final event last."""
        raise NotImplementedError

    content_type = "text/event-stream"

    async def send_frames(
        self, request: web.Request, frames: list[tuple[bytes, bool]], reply: Reply
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": self.content_type})
        await response.prepare(request)
        content = 0
        for frame, is_content in frames:
            if is_content and reply.truncate_after is not None and content >= reply.truncate_after:
                break
            if is_content and reply.break_after is not None and content >= reply.break_after:
                assert request.transport is not None
                request.transport.abort()  # the connection drops mid-stream
                return response
            await response.write(frame)
            content += is_content
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
        await response.write_eof()
        return response


def usage_for(reply: Reply, data: Any) -> tuple[int, int]:
    """The usage a fake reports: the scripted one, or a deterministic count from the request."""
    if reply.usage is not None:
        return reply.usage
    prompt = json.dumps(data, separators=(",", ":")) if data is not None else ""
    out = reply.text + "".join(json.dumps(dict(c.arguments)) for c in reply.tool_calls)
    return max(1, len(prompt) // 4), max(1, len(out) // 4)
