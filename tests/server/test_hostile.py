"""Hostile input at the gateway's edge: a clean 4xx in the caller's format, never a 500.

Deep nesting, a false compression header, bytes in a key header that are not UTF-8, prompts that
fit no target and requests that need a capability no allowed model has (issue 15).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from typing import Any

import msgspec
import pytest

from stellwerk.errors import NoRouteAvailable
from stellwerk.server.errors import problem_for
from stellwerk.wire.limits import MAX_JSON_DEPTH

OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"
ENDPOINTS = [OPENAI, ANTHROPIC]
USER = {"role": "user", "content": "hi"}
KEY = "sk-client-test-0123456789"


def _body(path: str, **fields: object) -> dict[str, Any]:
    base: dict[str, Any] = {"model": "auto:simple", "messages": [USER]}
    if path == ANTHROPIC:
        base["max_tokens"] = 50
    return {**base, **fields}


async def assert_error(response: Any, path: str, status: int = 400) -> dict[str, Any]:
    """The error object of an answer in the caller's format, after checking the status."""
    assert response.status == status, await response.text()
    body = await response.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error"
        assert set(body["error"]) >= {"type", "message"}
        return dict(body["error"])
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return dict(body["error"])


async def post(gw: Any, path: str, body: Any) -> Any:
    """POST a JSON body (encoded by msgspec: `json.dumps` itself recurses too deep)."""
    data = io.BytesIO(msgspec.json.encode(body))
    return await gw.client.post(path, data=data, headers={"content-type": "application/json"})


def nested(depth: int) -> msgspec.Raw:
    """`{"a": {"a": ... {"leaf": 1}}}`, `depth` + 1 objects deep, as raw JSON (no encoder
    recursion in the test itself)."""
    return msgspec.Raw(('{"a":' * depth + '{"leaf":1}' + "}" * depth).encode())


def deep_json(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _openai_tool_turn(arguments: str) -> list[dict[str, Any]]:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
    ]


# -- deep nesting ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["anthropic/claude-haiku-4-5", "ollama/qwen3-4b"])
async def test_deep_tool_call_arguments_are_400(gw, model):
    body = _body(OPENAI, model=model, messages=_openai_tool_turn(deep_json(1000)))
    error = await assert_error(await post(gw, OPENAI, body), OPENAI)
    assert error["param"] == "messages[1].tool_calls[0].function.arguments"
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in error["message"]
    assert gw.world.requests() == 0


async def test_tool_call_arguments_just_under_the_limit_pass(gw):
    body = _body(OPENAI, model="anthropic/claude-haiku-4-5")
    body["messages"] = _openai_tool_turn(deep_json(MAX_JSON_DEPTH - 1))
    assert (await post(gw, OPENAI, body)).status == 200


async def test_deep_openai_tool_schema_is_400(gw):
    tool = {"type": "function", "function": {"name": "f", "parameters": nested(970)}}
    response = await post(gw, OPENAI, _body(OPENAI, tools=[tool]))
    error = await assert_error(response, OPENAI)
    assert error["param"] == "tools[0].function.parameters"
    assert gw.world.requests() == 0


@pytest.mark.parametrize("path", [ANTHROPIC, "/v1/messages/count_tokens"])
async def test_deep_anthropic_tool_schema_is_400(gw, path):
    tool = {"name": "f", "input_schema": nested(970)}
    response = await post(gw, path, _body(ANTHROPIC, tools=[tool]))
    error = await assert_error(response, path)
    assert error["message"].startswith("tools.0.input_schema: ")
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("model", ["auto:simple", "openai/gpt-4o-mini", "ollama/qwen3-4b"])
async def test_deep_tool_use_input_is_400(gw, model):
    use = {"type": "tool_use", "id": "t1", "name": "f", "input": nested(970)}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}
    messages = [
        USER,
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result]},
    ]
    response = await post(gw, ANTHROPIC, _body(ANTHROPIC, model=model, messages=messages))
    error = await assert_error(response, ANTHROPIC)
    assert error["message"].startswith("messages.1.content.0.input: ")
    assert gw.world.requests() == 0


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_deep_body_elsewhere_is_400_naming_the_field(gw, path):
    response = await post(gw, path, _body(path, metadata=nested(500)))
    error = await assert_error(response, path)
    assert error["message"].startswith("metadata: ")


# -- a false compression header --------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_false_content_encoding_is_400(gw, path, encoding):
    data = json.dumps(_body(path)).encode()
    headers = {"content-type": "application/json", "content-encoding": encoding}
    response = await gw.client.post(path, data=data, headers=headers)
    error = await assert_error(response, path)
    assert encoding in error["message"]
    assert gw.world.requests() == 0


async def test_real_gzip_body_is_served(gw):
    data = gzip.compress(json.dumps(_body(OPENAI)).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    assert (await gw.client.post(OPENAI, data=data, headers=headers)).status == 200


# -- bytes that are not UTF-8 in a key header ------------------------------------------------


async def raw_request(gw: Any, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send raw bytes to the gateway; its status and body (the connection is closed after)."""
    server = gw.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head + b"\r\n\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return status, payload


def _request_head(method: str, path: str, *headers: bytes, length: int = 0) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: gateway", b"Connection: close"]
    lines.append(f"Content-Length: {length}".encode())
    return b"\r\n".join([*lines, *headers])


@pytest.mark.parametrize(
    "header", [b"Authorization: Bearer \xff\xfe", b"x-api-key: \xc3\x28", b"x-api-key: \xff"]
)
@pytest.mark.parametrize("path", ["/api/status", OPENAI, ANTHROPIC])
async def test_key_header_with_bad_bytes_is_401(make_gateway, header, path):
    gw = await make_gateway(api_keys=[KEY])
    body = json.dumps(_body(path)).encode()
    method = "GET" if path == "/api/status" else "POST"
    status, payload = await raw_request(
        gw, _request_head(method, path, header, length=len(body)), body
    )
    assert status == 401, payload
    error = json.loads(payload)
    if path == ANTHROPIC:
        assert error["error"]["type"] == "authentication_error"
    else:
        assert error["error"]["code"] == "invalid_api_key"


async def test_a_good_key_still_passes(make_gateway):
    gw = await make_gateway(api_keys=[KEY])
    response = await gw.client.get("/api/status", headers={"x-api-key": KEY})
    assert response.status == 200


# -- prompts that fit nowhere, capabilities no allowed model has ------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_prompt_too_long_for_every_target_is_400_context_length(gw, path):
    body = _body(path, messages=[{"role": "user", "content": "x" * 10_000_000}])
    error = await assert_error(await post(gw, path, body), path)
    assert "prompt is too long" in error["message"]
    if path == OPENAI:
        assert error["code"] == "context_length_exceeded"
        assert error["param"] == "messages"
    else:
        assert error["type"] == "invalid_request_error"
    assert gw.world.requests() == 0


async def test_200001_messages_are_400_context_length(gw):
    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "hi"} for i in range(200_001)
    ]
    error = await assert_error(
        await post(gw, ANTHROPIC, _body(ANTHROPIC, messages=turns)), ANTHROPIC
    )
    assert "prompt is too long" in error["message"]


IMAGE = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChw"
    "GA60e6kgAAAABJRU5ErkJggg=="
)


async def test_vision_with_only_text_models_allowed_is_400(make_gateway):
    gw = await make_gateway({"stack": ["ollama/qwen3-4b"]})
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": IMAGE}},
    ]
    body = _body(OPENAI, model="ollama/qwen3-4b", messages=[{"role": "user", "content": content}])
    error = await assert_error(await post(gw, OPENAI, body), OPENAI)
    assert "vision" in error["message"] and "image" in error["message"]
    assert error["code"] == "capability_unavailable"
    assert gw.world.requests() == 0


@pytest.mark.parametrize(
    "reasons",
    [
        ["context 3333k > window 128k", "cooling down (rate limit) until 14:05:00"],
        ["context 3333k > window 128k", "no key"],
        ["lacks vision", "anthropic down (health check)"],
    ],
)
def test_targets_left_out_for_availability_still_give_503(reasons):
    """Only a request no allowed target could ever take is the caller's 400; a chain that is
    merely unavailable now stays 503."""
    skipped = [(f"m/{i}", reason) for i, reason in enumerate(reasons)]
    assert problem_for(NoRouteAvailable(skipped)).status == 503


def test_targets_too_small_or_lacking_are_400():
    skipped = [("a/big", "context 3333k > window 200k"), ("b/local", "lacks tools, vision")]
    problem = problem_for(NoRouteAvailable(skipped))
    assert problem.status == 400
    assert problem.message.startswith("prompt is too long")


# -- echoed strings --------------------------------------------------------------------------


class _Ledger:
    def __init__(self) -> None:
        self.records: list[Any] = []

    async def record(self, decision: Any) -> None:
        self.records.append(decision)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_a_huge_unknown_model_name_is_not_echoed_or_stored_whole(gw, path):
    gw.router.ledger = ledger = _Ledger()
    name = "m" * 1_000_000
    response = await post(gw, path, _body(path, model=name))
    error = await assert_error(response, path, 404)
    assert len(error["message"]) < 400 and "…" in error["message"]
    [decision] = ledger.records
    assert len(decision.error) < 400


async def test_a_huge_path_is_not_echoed(gw):
    response = await gw.client.get("/v1/models/" + "x" * 5000)
    error = await assert_error(response, OPENAI, 404)
    assert len(error["message"]) < 400
    response = await gw.client.get("/nope/" + "y" * 5000)
    assert len((await assert_error(response, OPENAI, 404))["message"]) < 400


async def test_a_huge_session_header_is_stored_as_a_digest(gw):
    response = await gw.chat({}, headers={"x-stellwerk-session": "s" * 5000})
    assert response.status == 200


# -- validation before an attempt is spent ---------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        (ANTHROPIC, {"temperature": -1}),
        (ANTHROPIC, {"top_k": "many"}),
        (OPENAI, {"max_completion_tokens": 100, "max_tokens": -1}),
        (OPENAI, {"presence_penalty": 9}),
    ],
)
async def test_what_the_provider_rejects_spends_no_attempt(gw, path, fields):
    await assert_error(await post(gw, path, _body(path, **fields)), path)
    assert gw.world.requests() == 0


async def test_an_image_in_emergency_mode_is_400_not_a_placeholder(make_gateway):
    """Only local, text-only models are allowed in emergency mode: fitting may turn tools into
    text, but an image it could only replace with a placeholder the model would answer about."""
    gw = await make_gateway({})
    assert (await gw.client.post("/api/emergency", json={"on": True})).status == 200
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": IMAGE}},
    ]
    body = _body(OPENAI, model="auto", messages=[{"role": "user", "content": content}])
    error = await assert_error(await post(gw, OPENAI, body), OPENAI)
    assert error["code"] == "capability_unavailable"
    assert gw.world.requests() == 0
