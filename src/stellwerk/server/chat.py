"""The two chat endpoints: read, parse, route, render; streaming and not.

A streamed answer is held back until its first chunk has arrived: until then the router may still
fail over, and the caller gets a plain JSON error with the right status if no target answers.
From the first chunk on the headers are sent (naming the model that is answering), and a failure
can only end the stream with an error event in the caller's format. A client that hangs up
closes the routed stream, which closes the upstream request; the router records the decision once.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import msgspec
from aiohttp import web

from ..affinity import SESSION
from ..decision import Decision
from ..errors import RequestError, StellwerkError, UnknownModelError
from ..router import RoutedStream
from ..tokens import estimate_prompt
from ..types import ChatRequest, ChatResponse, Chunk, StreamEnd, TextDelta, TextPart, ToolCallStart
from ..wire.limits import (
    MAX_ECHO,
    cap,
    deep_path,
    nesting_error,
    raw_deep_path,
    too_deep,
)
from . import limits
from .errors import (
    HTTPProblem,
    body_timeout,
    busy_reading,
    problem_for,
    too_large,
    undecodable,
    unsupported_encoding,
)
from .formats import ANTHROPIC, OPENAI, Format, StreamWriter
from .gateway import GATEWAY, REQUEST_ID, Gateway, json_response
from .notice import inline_notice, notice_headers

TASK_HEADER = "x-stellwerk-task"
SESSION_HEADER = "x-stellwerk-session"
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions (OpenAI)."""
    return await _chat(request, OPENAI)


async def messages(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages (Anthropic)."""
    return await _chat(request, ANTHROPIC)


async def count_tokens(request: web.Request) -> web.Response:
    """POST /v1/messages/count_tokens (Anthropic): Stellwerk's estimate, which errs high."""
    data = await read_json(request, request.app[GATEWAY].max_body)
    return json_response({"input_tokens": estimate_prompt(ANTHROPIC.parse(data))})


async def _chat(request: web.Request, fmt: Format) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    request_id = REQUEST_ID.get()
    data, big = await read_body(request, gateway.max_body)
    parsed = await asyncio.to_thread(fmt.parse, data) if big else fmt.parse(data)
    chat = _prepared(parsed, request, request_id, fmt.name)
    gateway.decisions[request_id] = None  # the sink hands the decision back here
    if chat.stream:
        return await _stream(request, gateway, fmt, chat, data)
    answer = await gateway.router.complete(chat)
    response = answer.response
    if gateway.inline_notice:
        response = with_notice(response, answer.decision)
    body = fmt.render(response, request_id)
    return json_response(body, headers=notice_headers(answer.decision))


async def read_json(request: web.Request, limit: int) -> Any:
    """The request body as JSON (`read_body`)."""
    data, _ = await read_body(request, limit)
    return data


async def read_body(request: web.Request, limit: int) -> tuple[Any, bool]:
    """The request body as JSON, and whether it was big (handled on a worker thread).

    413 above `limit` bytes (also after decompression), 400 for anything that is not JSON, for
    a body its `Content-Encoding` does not describe and for JSON nested deeper than
    `MAX_JSON_DEPTH` (naming the field); 415 for an encoding the gateway does not read; 408 when
    the body takes longer than `BODY_TIMEOUT`; 503 while `MAX_READING` bodies are arriving.
    Bodies above `OFF_LOOP_BYTES`, and compressed ones, are handled on a worker thread, so a
    10 MB body does not stall the other requests."""
    if request.content_length is not None and request.content_length > limit:
        raise HTTPProblem(too_large(limit))
    encoding = _encoding(request)
    body = await _read(request, limit)
    if not body.strip():
        raise RequestError("the request body is empty; expected a JSON object")
    dotted = request.path.startswith("/v1/messages")
    big = len(body) > limits.OFF_LOOP_BYTES or encoding != "identity"
    if big:
        return await asyncio.to_thread(_decode, body, dotted, encoding, limit), True
    return _decode(body, dotted, encoding, limit), False


def _encoding(request: web.Request) -> str:
    raw = request.headers.get("content-encoding", "").strip().lower() or "identity"
    if raw not in limits.ENCODINGS:
        raise HTTPProblem(unsupported_encoding(raw, limits.ENCODINGS))
    return raw


async def _read(request: web.Request, limit: int) -> bytes:
    gateway = request.app[GATEWAY]
    if gateway.reading >= limits.MAX_READING:
        raise HTTPProblem(busy_reading(limits.MAX_READING))
    gateway.reading += 1
    try:
        async with asyncio.timeout(limits.BODY_TIMEOUT):
            return await request.read()
    except TimeoutError:
        raise HTTPProblem(body_timeout(limits.BODY_TIMEOUT)) from None
    except web.HTTPRequestEntityTooLarge:
        raise HTTPProblem(too_large(limit)) from None
    except web.RequestPayloadError:  # aiohttp decompressing (an app built without handler_args)
        raise HTTPProblem(undecodable(request.headers.get("content-encoding", ""))) from None
    finally:
        gateway.reading -= 1


def _decompressed(body: bytes, encoding: str, limit: int) -> bytes:
    """The body as sent before `Content-Encoding`; never more than `limit` bytes of it."""
    if encoding == "identity":
        return body
    attempts = [16 + zlib.MAX_WBITS] if encoding in ("gzip", "x-gzip") else [zlib.MAX_WBITS]
    if encoding == "deflate":
        attempts.append(-zlib.MAX_WBITS)  # raw deflate, as some clients send it
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit:
            raise HTTPProblem(too_large(limit))
        if inflater.eof:
            return out
    raise HTTPProblem(undecodable(encoding))


def _decode(body: bytes, dotted: bool, encoding: str = "identity", limit: int = 0) -> Any:
    body = _decompressed(body, encoding, limit)
    if not body.strip():
        raise RequestError("the request body is empty; expected a JSON object")
    try:
        data = msgspec.json.decode(body)
    except RecursionError:  # msgspec's own limit, about 1,000 levels
        raise RequestError(nesting_error(raw_deep_path(body), dotted=dotted)) from None
    except (msgspec.DecodeError, ValueError) as exc:
        # Said in Stellwerk's own words where it can: msgspec's wording changes between releases
        # (0.23 reports bad UTF-8 as a DecodeError), so the body is checked here, on errors only.
        if not _is_utf8(body):
            raise RequestError("the request body is not valid UTF-8") from None
        raise RequestError(f"the request body is not valid JSON: {exc}") from None
    if too_deep(data):  # a walk of the containers: cheaper than counting a 60 KB body's brackets
        raise RequestError(nesting_error(deep_path(data), dotted=dotted))
    return data


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _prepared(chat: ChatRequest, request: web.Request, request_id: str, client: str) -> ChatRequest:
    """The parsed request with the gateway's request id, its client format (for the ledger),
    an explicit task header and a client's session id (which keeps turns of two sessions that
    start alike apart: `affinity.py`)."""
    if len(chat.model) > MAX_ECHO:  # no name in any catalog is this long: no lookup, no echo
        hint = "(`stellwerk models` lists the models)"
        raise UnknownModelError(f"unknown model {cap(chat.model)!r} {hint}")
    metadata = {**chat.metadata, "request_id": request_id, "client": client}
    if session := request.headers.get(SESSION_HEADER):
        metadata[SESSION] = _bounded(session)
    task = request.headers.get(TASK_HEADER) or chat.task
    return replace(chat, metadata=metadata, task=task)


def _bounded(value: str) -> str:
    """A client's id as it is stored: as sent, or a digest of it when it is longer than
    `MAX_ECHO` (still one id per value, never a megabyte in the state store)."""
    if len(value) <= MAX_ECHO:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
    return f"sha256:{digest}"


def with_notice(response: ChatResponse, decision: Decision) -> ChatResponse:
    """The answer with the inline fallback notice appended (not to tool calls)."""
    text = inline_notice(decision)
    if text is None or response.tool_calls:
        return response
    return replace(response, content=(*response.content, TextPart(text)))


# -- streaming -------------------------------------------------------------------------------


async def _stream(
    request: web.Request, gateway: Gateway, fmt: Format, chat: ChatRequest, data: Any
) -> web.StreamResponse:
    routed = gateway.router.stream(chat)
    chunks = aiter(routed)
    try:
        first = await anext(chunks, None)  # failover happens here; errors become JSON answers
        if first is None or routed.decision is None or routed.target is None:
            raise StellwerkError("the stream ended before any answer")
        headers = notice_headers(routed.decision, routed.target, streaming=True)
        response = web.StreamResponse(headers={**SSE_HEADERS, **headers})
        await response.prepare(request)
        writer = fmt.writer(routed.target, REQUEST_ID.get(), chat, data)
        try:
            await _relay(response, writer, first, chunks, routed.decision, gateway)
        except ConnectionResetError:
            _hung_up(routed)
        return response
    except asyncio.CancelledError:  # the client went away while the handler waited
        _hung_up(routed)
        raise
    finally:
        await routed.aclose()


async def _relay(
    response: web.StreamResponse,
    writer: StreamWriter,
    first: Chunk,
    chunks: AsyncIterator[Chunk],
    decision: Decision,
    gateway: Gateway,
) -> None:
    """Write every chunk; a failure after the first one ends the stream with an error event."""
    await response.write(writer.start())
    chunk: Chunk | None = first
    tools = False
    try:
        while chunk is not None:
            tools = tools or isinstance(chunk, ToolCallStart)
            if isinstance(chunk, StreamEnd) and gateway.inline_notice and not tools:
                if text := inline_notice(decision):
                    await response.write(writer.chunk(TextDelta(text)))
            await response.write(writer.chunk(chunk))
            chunk = await anext(chunks, None)
    except ConnectionResetError:
        raise
    except Exception as exc:
        problem = problem_for(exc, decision.request_id).redacted(gateway.secrets())
        await response.write(writer.error(problem))
    await response.write_eof()


def _hung_up(routed: RoutedStream) -> None:
    """Name the reason in the decision before the stream is closed under it."""
    decision = routed.decision
    if decision is not None and decision.finished is None and decision.error is None:
        decision.error = "client disconnected"
