"""A lean fake upstream for the overhead benchmark: OpenAI and Anthropic, plain and streaming.

The fakes in `stellwerk.testing` are faithful (scripts, faults, recorded requests) but each answer
passes through aiohttp's full server; a benchmark needs an upstream whose own cost is small and
steady, so what it measures is the gateway. This one is a raw asyncio protocol speaking just
enough HTTP/1.1 (keep-alive, Content-Length request bodies, chunked responses for streams) to
answer in about a tenth of a millisecond.

    .venv/bin/python bench/upstream.py [--port 0] [--ready-file F] [--chunks 8] [--chunk-delay-ms 1]

Behaviour is chosen by the key a request carries (`Authorization: Bearer K` or `x-api-key: K`):
`sk-fail-402` gets a billing failure (402), `sk-fail-503` a fast 503, anything else an answer.
Paths ending in `/chat/completions` speak OpenAI, paths ending in `/messages` speak Anthropic;
`/healthz` answers `ok`. A stream sends `--chunks` content frames, `--chunk-delay-ms` apart, so
a client can tell a relayed stream from one buffered whole.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

WORDS = ("Signal", " boxes", " set", " every", " train's", " route", " and", " keep", " them", ".")
USAGE_IN, USAGE_OUT = 12, 8
_REASONS = {200: "OK", 402: "Payment Required", 404: "Not Found", 503: "Service Unavailable"}
_FAULTS = {
    b"sk-fail-402": (402, {"error": {"message": "insufficient credits", "type": "billing"}}),
    b"sk-fail-503": (503, {"error": {"message": "upstream unavailable", "type": "server_error"}}),
}


# -- the answers -----------------------------------------------------------------------------


def _head(status: int, content_type: bytes, length: int | None) -> bytes:
    framing = b"transfer-encoding: chunked" if length is None else b"content-length: %d" % length
    return b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\n%s\r\n\r\n" % (
        status,
        _REASONS.get(status, "Error").encode(),
        content_type,
        framing,
    )


def plain(status: int, body: Any) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return _head(status, b"application/json", len(data)) + data


def openai_answer(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(WORDS)},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": USAGE_IN,
            "completion_tokens": USAGE_OUT,
            "total_tokens": USAGE_IN + USAGE_OUT,
        },
    }


def anthropic_answer(model: str) -> dict[str, Any]:
    return {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "".join(WORDS)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT},
    }


def _sse(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n".encode()


def openai_frames(model: str, chunks: int) -> tuple[bytes, list[bytes], bytes]:
    """(opening frame, content frames, closing frames) of a Chat Completions stream."""

    def frame(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
        body: dict[str, Any] = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            body["usage"], body["choices"] = usage, []
        return _sse(body)

    usage = {"prompt_tokens": USAGE_IN, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    opening = frame({"role": "assistant", "content": ""})
    content = [frame({"content": WORDS[i % len(WORDS)]}) for i in range(chunks)]
    closing = frame({}, "stop") + frame({}, usage=usage) + _sse("[DONE]")
    return opening, content, closing


def anthropic_frames(model: str, chunks: int) -> tuple[bytes, list[bytes], bytes]:
    """(opening events, content events, closing events) of a Messages stream."""
    message = {**anthropic_answer(model), "content": [], "stop_reason": None}
    message["usage"] = {"input_tokens": USAGE_IN, "output_tokens": 1}
    opening = _sse({"type": "message_start", "message": message}, "message_start") + _sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )
    content = [
        _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": WORDS[i % len(WORDS)]},
            },
            "content_block_delta",
        )
        for i in range(chunks)
    ]
    closing = (
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        + _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            },
            "message_delta",
        )
        + _sse({"type": "message_stop"}, "message_stop")
    )
    return opening, content, closing


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# -- the protocol ----------------------------------------------------------------------------


class Upstream:
    """The answers of one fake: cached per model, since a benchmark asks the same thing often."""

    def __init__(self, chunks: int, chunk_delay: float) -> None:
        self.chunks = chunks
        self.chunk_delay = chunk_delay
        self._plain: dict[tuple[str, str], bytes] = {}
        self._frames: dict[tuple[str, str], tuple[bytes, list[bytes], bytes]] = {}

    def answer(self, kind: str, model: str) -> bytes:
        key = (kind, model)
        if key not in self._plain:
            body = openai_answer(model) if kind == "openai" else anthropic_answer(model)
            self._plain[key] = plain(200, body)
        return self._plain[key]

    def frames(self, kind: str, model: str) -> tuple[bytes, list[bytes], bytes]:
        key = (kind, model)
        if key not in self._frames:
            build = openai_frames if kind == "openai" else anthropic_frames
            self._frames[key] = build(model, self.chunks)
        return self._frames[key]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: requests are answered in the order they arrive."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy: asyncio.Task[None] | None = None  # a stream being written

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy is not None:
            self.busy.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.busy is None:
            self._serve_buffered()

    def _serve_buffered(self) -> None:
        while self.transport is not None and self.busy is None:
            request = _take_request(self)
            if request is None:
                return
            self._answer(*request)

    def _answer(self, path: bytes, key: bytes, body: bytes) -> None:
        assert self.transport is not None
        if path.endswith(b"/healthz"):
            self.transport.write(plain(200, b'{"status":"ok"}'))
            return
        kind = "anthropic" if path.endswith(b"/messages") else "openai"
        if not path.endswith((b"/messages", b"/chat/completions")):
            self.transport.write(plain(404, {"error": {"message": "no such path"}}))
            return
        if key in _FAULTS:
            self.transport.write(plain(*_FAULTS[key]))
            return
        request = json.loads(body or b"{}")
        model = str(request.get("model") or "bench")
        if not request.get("stream"):
            self.transport.write(self.upstream.answer(kind, model))
            return
        frames = self.upstream.frames(kind, model)
        if self.upstream.chunk_delay <= 0:
            self.transport.write(_stream_bytes(frames))
            return
        self.busy = asyncio.get_running_loop().create_task(self._paced(frames))

    async def _paced(self, frames: tuple[bytes, list[bytes], bytes]) -> None:
        opening, content, closing = frames
        write: Callable[[bytes], None] = self.transport.write  # type: ignore[union-attr]
        write(_head(200, b"text/event-stream", None) + _chunked(opening))
        for i, frame in enumerate(content):
            if i:
                await asyncio.sleep(self.upstream.chunk_delay)
            if self.transport is None:
                return
            write(_chunked(frame))
        write(_chunked(closing) + b"0\r\n\r\n")
        self.busy = None
        self._serve_buffered()


def _stream_bytes(frames: tuple[bytes, list[bytes], bytes]) -> bytes:
    opening, content, closing = frames
    parts = [_chunked(opening), *(_chunked(f) for f in content), _chunked(closing), b"0\r\n\r\n"]
    return _head(200, b"text/event-stream", None) + b"".join(parts)


def _take_request(conn: _Connection) -> tuple[bytes, bytes, bytes] | None:
    """(path, key, body) of the next complete request in the buffer, or None."""
    buffer = conn.buffer
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buffer[:end].split(b"\r\n")
    length, key = 0, b""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"authorization":
            key = value.strip().removeprefix(b"Bearer ").removeprefix(b"bearer ")
        elif name == b"x-api-key":
            key = value.strip()
    if len(buffer) < end + 4 + length:
        return None
    body = buffer[end + 4 : end + 4 + length]
    conn.buffer = buffer[end + 4 + length :]
    parts = lines[0].split(b" ")
    path = parts[1].split(b"?")[0] if len(parts) > 1 else b"/"
    return path, key, body


# -- running it ------------------------------------------------------------------------------


async def serve(port: int, ready_file: Path | None, chunks: int, chunk_delay: float) -> None:
    upstream = Upstream(chunks, chunk_delay)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(upstream), "127.0.0.1", port, backlog=1024
    )
    bound = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{bound}"
    if ready_file is not None:
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(url + "\n")
        os.replace(tmp, ready_file)
    else:
        print(url, flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a fast fake OpenAI/Anthropic upstream")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--chunks", type=int, default=8, help="content frames per stream")
    parser.add_argument("--chunk-delay-ms", type=float, default=1.0, help="pause between frames")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port, args.ready_file, args.chunks, args.chunk_delay_ms / 1000))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
