"""Bad input on both chat endpoints: always a clean 4xx in the caller's format, never a 500.

Unknown fields are accepted and ignored (as OpenAI-compatible servers such as vLLM and Ollama
do): clients send vendor extensions (`store`, `service_tier`, `reasoning_effort`) that a gateway
in front of several providers cannot all know.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from stellwerk.testing._server import Reply

OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"
ENDPOINTS = [OPENAI, ANTHROPIC]
USER = {"role": "user", "content": "hi"}


def _body(path: str, **fields: object) -> dict:
    base = {"model": "auto:simple", "messages": [USER]}
    if path == ANTHROPIC:
        base["max_tokens"] = 50
    return {**base, **fields}


async def _assert_error(response, path: str, status: int = 400) -> dict:
    assert response.status == status, await response.text()
    body = await response.json()
    if path == ANTHROPIC:
        assert body["type"] == "error"
        assert set(body["error"]) >= {"type", "message"}
        return body["error"]
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]


RAW = {
    "truncated": b'{"model": "auto", "messages": [{"role": "user", "content": "hi"',
    "empty": b"",
    "whitespace": b"  \n ",
    "array": b'[{"role": "user", "content": "hi"}]',
    "string": b'"hello"',
    "null": b"null",
    "number": b"42",
    "nan": b'{"model": "auto", "temperature": NaN, "messages": []}',
    "invalid-utf8": b'{"model": "auto", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    "form": b"model=auto&messages=hi",
    "deep": b"[" * 100_000,
    "trailing-garbage": b'{"model": "auto"} {"x": 1}',
}


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("name", list(RAW))
async def test_raw_garbage_is_400(gw, path, name):
    response = await gw.client.post(
        path, data=RAW[name], headers={"content-type": "application/json"}
    )
    await _assert_error(response, path)
    assert gw.world.requests() == 0


async def test_invalid_utf8_says_so(gw):
    response = await gw.client.post(OPENAI, data=RAW["invalid-utf8"])
    error = await _assert_error(response, OPENAI)
    assert error["message"] == "the request body is not valid UTF-8"


WRONG_TYPES = {
    "messages-string": {"messages": "hi"},
    "messages-empty": {"messages": []},
    "message-not-object": {"messages": ["hi"]},
    "role-unknown": {"messages": [{"role": "robot", "content": "hi"}]},
    "content-number": {"messages": [{"role": "user", "content": 5}]},
    "model-number": {"model": 5},
    "model-empty": {"model": ""},
    "max-tokens-string": {"max_tokens": "ten"},
    "max-tokens-negative": {"max_tokens": -1},
    "max-tokens-bool": {"max_tokens": True},
    "stream-string": {"stream": "yes"},
    "temperature-string": {"temperature": "hot"},
    "tools-object": {"tools": {"name": "x"}},
    "tools-strings": {"tools": ["x"]},
    "tool-choice-number": {"tool_choice": 5},
}


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("name", list(WRONG_TYPES))
async def test_wrong_types_are_400(gw, path, name):
    response = await gw.client.post(path, json=_body(path, **WRONG_TYPES[name]))
    error = await _assert_error(response, path)
    assert error["message"]
    assert gw.world.requests() == 0


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_unknown_fields_are_accepted_and_ignored(gw, path):
    extras = {"frobnicate": 1, "store": True, "service_tier": "auto", "x_vendor": {"a": [1]}}
    response = await gw.client.post(path, json=_body(path, **extras))
    assert response.status == 200
    sent = gw.world.fakes["openai"].received[0].json
    assert "frobnicate" not in sent and "x_vendor" not in sent


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_any_content_type_with_json_is_read(gw, path):
    data = json.dumps(_body(path)).encode()
    response = await gw.client.post(path, data=data, headers={"content-type": "text/plain"})
    assert response.status == 200


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_oversized_body_is_413_by_content_length(make_gateway, path):
    gw = await make_gateway(max_body=4096)
    big = _body(path, messages=[{"role": "user", "content": "x" * 10_000}])
    response = await gw.client.post(path, json=big)
    error = await _assert_error(response, path, 413)
    assert "4096" in error["message"]
    assert gw.world.requests() == 0


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_oversized_chunked_body_is_413(make_gateway, path):
    gw = await make_gateway(max_body=4096)
    payload = json.dumps(_body(path, messages=[{"role": "user", "content": "x" * 10_000}]))

    async def chunks():
        for i in range(0, len(payload), 1000):
            yield payload[i : i + 1000].encode()

    response = await gw.client.post(path, data=chunks())
    await _assert_error(response, path, 413)


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_a_body_just_under_the_limit_is_served(make_gateway, path):
    gw = await make_gateway(max_body=4096)
    body = _body(path, messages=[{"role": "user", "content": "x" * 3000}])
    assert (await gw.client.post(path, json=body)).status == 200


# -- clients that hang up --------------------------------------------------------------------

SLOW = Reply.ok(" ".join(["word"] * 1000), chunk_delay=0.05)  # ~50 s if read to the end


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_stream_client_hang_up_cancels_upstream_and_records_one_decision(gw, path):
    gw.world.fakes["openai"].push(SLOW)
    response = await gw.client.post(path, json=_body(path, stream=True))
    assert response.status == 200
    assert await response.content.readany()
    response.close()  # the client goes away mid-stream
    [decision] = await gw.wait_decisions(1)
    assert decision.answered_by is None
    assert decision.error == "cancelled (client disconnected)"
    assert len(gw.world.fakes["anthropic"].received) == 0
    await asyncio.sleep(0.1)
    assert len(gw.decisions) == 1
    metrics = await (await gw.client.get("/metrics")).text()
    assert 'outcome="cancelled"' in metrics


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_plain_client_hang_up_cancels_upstream_and_records_one_decision(gw, path):
    gw.world.fakes["openai"].push(Reply.hang(30))
    with pytest.raises(asyncio.TimeoutError):
        await gw.client.post(path, json=_body(path), timeout=aiohttp.ClientTimeout(total=0.3))
    [decision] = await gw.wait_decisions(1)
    assert decision.answered_by is None
    assert decision.error == "cancelled (client disconnected)"
    assert decision.attempts == []  # no failure recorded, no fallback started
    assert len(gw.world.fakes["anthropic"].received) == 0
