"""Slow, big and odd clients (issue 15): timeouts on the request head and body, a bound on bodies
still arriving, big bodies decoded off the event loop, compression the gateway reads itself, and
the server's own errors in the caller's JSON format wherever a handler runs."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import threading
import zlib
from typing import Any

import pytest

from stellwerk.server import chat, limits

from .test_hostile import ANTHROPIC, OPENAI, _body, _request_head, assert_error, raw_request

ENDPOINTS = [OPENAI, ANTHROPIC]


async def _connect(gw: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    server = gw.client.server
    return await asyncio.open_connection(server.host, server.port)


# -- slow clients ----------------------------------------------------------------------------


async def test_a_head_trickled_a_byte_at_a_time_is_cut_off(make_gateway, monkeypatch):
    monkeypatch.setattr(limits, "HEADER_TIMEOUT", 0.5)
    gw = await make_gateway()
    reader, writer = await _connect(gw)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nX-Slow: "
    started = asyncio.get_running_loop().time()
    try:
        for byte in head + b"a" * 100:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)
            if reader.at_eof() or writer.is_closing():
                break
        data = await asyncio.wait_for(reader.read(), 5)
    except ConnectionError:
        data = b""
    finally:
        writer.close()
    assert data == b""  # closed, no answer: the request never arrived
    assert asyncio.get_running_loop().time() - started < 4


async def test_an_idle_connection_is_closed(make_gateway, monkeypatch):
    monkeypatch.setattr(limits, "HEADER_TIMEOUT", 0.3)
    gw = await make_gateway()
    reader, writer = await _connect(gw)
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_a_body_that_stalls_is_408_in_the_callers_format(make_gateway, monkeypatch, path):
    monkeypatch.setattr(limits, "BODY_TIMEOUT", 0.3)
    gw = await make_gateway()
    reader, writer = await _connect(gw)
    try:
        writer.write(_request_head("POST", path, length=1000) + b'\r\n\r\n{"model"')
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"408"
    error = json.loads(payload)
    if path == ANTHROPIC:
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    else:
        assert error["error"]["code"] == "request_timeout"
    assert gw.world.requests() == 0


async def test_bodies_still_arriving_are_bounded(make_gateway, monkeypatch):
    monkeypatch.setattr(limits, "MAX_READING", 2)
    gw = await make_gateway()
    stalled = []
    for _ in range(2):
        reader, writer = await _connect(gw)
        writer.write(_request_head("POST", OPENAI, length=1000) + b"\r\n\r\n{")
        await writer.drain()
        stalled.append(writer)
    try:
        for _ in range(100):  # both handlers are reading
            if gw.client.app[chat.GATEWAY].reading == 2:
                break
            await asyncio.sleep(0.01)
        response = await gw.chat({})
        error = await assert_error(response, OPENAI, 503)
        assert error["code"] == "too_many_uploads"
    finally:
        for writer in stalled:
            writer.close()
    for _ in range(100):  # the stalled ones are let go, and the gateway serves again
        if gw.client.app[chat.GATEWAY].reading == 0:
            break
        await asyncio.sleep(0.01)
    assert (await gw.chat({})).status == 200


# -- big clients -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_a_big_body_is_decoded_and_parsed_off_the_event_loop(gw, path, monkeypatch):
    seen: list[str] = []
    decode, loop_thread = chat._decode, threading.get_ident()

    def spy(*args: Any) -> Any:
        seen.append("loop" if threading.get_ident() == loop_thread else "worker")
        return decode(*args)

    monkeypatch.setattr(chat, "_decode", spy)
    small = _body(path)
    assert (await gw.client.post(path, json=small)).status == 200
    big = _body(path, metadata={"pad": "x" * (limits.OFF_LOOP_BYTES + 10)})
    data = io.BytesIO(json.dumps(big).encode())
    response = await gw.client.post(path, data=data, headers={"content-type": "application/json"})
    assert response.status == 200
    assert seen == ["loop", "worker"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_bodies_are_read(gw, encoding):
    raw = json.dumps(_body(OPENAI)).encode()
    if encoding == "gzip":
        data = gzip.compress(raw)
    elif encoding == "deflate":
        data = zlib.compress(raw)
    else:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data, encoding = packer.compress(raw) + packer.flush(), "deflate"
    headers = {"content-type": "application/json", "content-encoding": encoding}
    assert (await gw.client.post(OPENAI, data=data, headers=headers)).status == 200


async def test_a_compression_bomb_is_413(make_gateway):
    gw = await make_gateway(max_body=100_000)
    data = gzip.compress(b" " * 10_000_000)  # ~10 KB on the wire, 10 MB inside
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    response = await gw.client.post(OPENAI, data=data, headers=headers)
    await assert_error(response, OPENAI, 413)


async def test_a_truncated_gzip_body_is_400(gw):
    data = gzip.compress(json.dumps(_body(OPENAI)).encode())[:-12]
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    error = await assert_error(await gw.client.post(OPENAI, data=data, headers=headers), OPENAI)
    assert error["code"] == "invalid_content_encoding"


# -- odd clients: what the HTTP server itself would answer in plain text ----------------------


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "bogus"])
async def test_an_encoding_the_gateway_does_not_read_is_415_json(gw, path, encoding):
    data = json.dumps(_body(path)).encode()
    headers = {"content-type": "application/json", "content-encoding": encoding}
    response = await gw.client.post(path, data=data, headers=headers)
    error = await assert_error(response, path, 415)
    assert "gzip" in error["message"]
    assert gw.world.requests() == 0


@pytest.mark.parametrize("path", [*ENDPOINTS, "/api/status"])
async def test_an_unknown_expectation_is_417_json(gw, path):
    body = json.dumps(_body(path)).encode()
    method = "GET" if path == "/api/status" else "POST"
    head = _request_head(method, path, b"Expect: 999-nonsense", length=len(body))
    status, payload = await raw_request(gw, head, body)
    assert status == 417
    error = json.loads(payload)
    if path == ANTHROPIC:
        assert error["error"]["type"] == "invalid_request_error"
    else:
        assert error["error"]["code"] == "expectation_failed"


async def test_expect_100_continue_still_works(gw):
    body = json.dumps(_body(OPENAI)).encode()
    head = _request_head("POST", OPENAI, b"Expect: 100-continue", length=len(body))
    server = gw.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head + b"\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 100")
        writer.write(body)
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert b"HTTP/1.1 200 OK" in data


@pytest.mark.parametrize(
    "extra",
    [b"X-Big: " + b"a" * 16_384, b"\r\n".join(b"X-H%d: v" % i for i in range(2000))],
    ids=["16k-header", "2000-headers"],
)
async def test_what_aiohttp_refuses_before_a_request_exists_is_a_plain_400(gw, extra):
    """Documented in the README: no handler runs, so no JSON; but a 400, never a 500."""
    status, _ = await raw_request(gw, _request_head("POST", OPENAI, extra, length=0))
    assert status == 400
    assert (await gw.client.get("/healthz")).status == 200
