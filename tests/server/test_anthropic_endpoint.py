"""POST /v1/messages in-process: answers, the full SSE event sequence, tools and errors."""

from __future__ import annotations

import pytest

from stellwerk.testing._server import Reply, ToolCall

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


async def test_plain_answer_in_messages_shape(gw):
    gw.world.fakes["openai"].push(Reply.ok("Hello there."))
    response = await gw.messages({"system": "Be brief."})
    assert response.status == 200
    body = await response.json()
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "openai/gpt-4o-mini"
    assert body["content"] == [{"type": "text", "text": "Hello there."}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["output_tokens"] > 0
    request_id = response.headers["x-stellwerk-request-id"]
    assert body["id"] == "msg_" + request_id.removeprefix("req_")
    assert response.headers["x-stellwerk-model"] == "openai/gpt-4o-mini"
    sent = gw.world.fakes["openai"].received[0].json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_fallback_to_anthropic_is_named(gw):
    gw.world.fakes["openai"].push(gw.world.fakes["openai"].error("rate_limit"))
    response = await gw.messages({})
    body = await response.json()
    assert body["model"] == "anthropic/claude-haiku-4-5"
    assert response.headers["x-stellwerk-fallback"] == "openai/gpt-4o-mini: rate_limit"
    assert response.headers["x-stellwerk-attempts"] == "2"


async def test_stream_is_the_full_event_sequence(gw):
    gw.world.fakes["openai"].push(Reply.ok("one two"))
    response = await gw.messages({"stream": True})
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    text = await response.text()
    assert gw.sse_events(text) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = gw.sse_data(text)
    assert data[0]["message"]["model"] == "openai/gpt-4o-mini"
    assert "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta") == (
        "one two"
    )
    assert data[-2]["delta"]["stop_reason"] == "end_turn"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_tool_use_comes_back_in_anthropic_shape(gw, stream):
    gw.world.fakes["openai"].push(Reply.tools(ToolCall("get_weather", {"city": "Oslo"}, "c1")))
    response = await gw.messages({"tools": [WEATHER], "stream": stream})
    assert response.status == 200
    if not stream:
        body = await response.json()
        assert body["stop_reason"] == "tool_use"
        block = body["content"][-1]
        assert (block["type"], block["name"], block["input"]) == (
            "tool_use",
            "get_weather",
            {"city": "Oslo"},
        )
        return
    data = gw.sse_data(await response.text())
    start = next(d for d in data if d["type"] == "content_block_start")
    assert start["content_block"]["type"] == "tool_use"
    partial = "".join(
        d["delta"]["partial_json"]
        for d in data
        if d["type"] == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    )
    assert partial.replace(" ", "") == '{"city":"Oslo"}'
    assert data[-2]["delta"]["stop_reason"] == "tool_use"


async def test_stream_broken_after_first_chunk_ends_with_event_error(gw):
    gw.world.fakes["openai"].push(Reply.ok("alpha beta gamma delta", break_after=1))
    response = await gw.messages({"stream": True})
    assert response.status == 200
    text = await response.text()
    events = gw.sse_events(text)
    assert events[-1] == "error"
    assert "message_stop" not in events
    error = gw.sse_data(text)[-1]
    assert error["type"] == "error"
    assert error["error"]["type"] == "api_error"
    assert "stream_broken" in error["error"]["message"]


async def test_inline_notice_in_a_stream_is_a_text_delta(make_gateway):
    gw = await make_gateway(inline_notice=True)
    gw.world.fakes["openai"].push(500)
    text = await (await gw.messages({"stream": True})).text()
    deltas = [d["delta"].get("text", "") for d in gw.sse_data(text) if "delta" in d]
    assert deltas[-2].startswith("\n\n[stellwerk] answered by anthropic/claude-haiku-4-5")


# -- errors in Anthropic's shape -------------------------------------------------------------


async def _error(response, status: int) -> dict:
    assert response.status == status
    body = await response.json()
    assert body["type"] == "error"
    return body["error"]


async def test_missing_model_is_invalid_request_error(gw):
    response = await gw.client.post(
        "/v1/messages", json={"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    )
    error = await _error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("model:")


async def test_unknown_model_is_not_found_error(gw):
    error = await _error(await gw.messages({"model": "nonesuch-9"}), 404)
    assert error["type"] == "not_found_error"


async def test_all_failed_is_502_api_error_with_attempts(gw):
    for name in ("openai", "anthropic", "ollama"):
        gw.world.fakes[name].push(503)
    error = await _error(await gw.messages({}), 502)
    assert error["type"] == "api_error"
    assert [a["target"] for a in error["attempts"]] == [
        "openai/gpt-4o-mini",
        "anthropic/claude-haiku-4-5",
        "ollama/qwen3-4b",
    ]


async def test_no_route_is_503_overloaded_error(make_gateway):
    gw = await make_gateway(
        {"providers": {"anthropic": {"keys": []}}, "stack": ["anthropic/claude-haiku-4-5"]}
    )
    error = await _error(await gw.messages({"model": "anthropic/claude-haiku-4-5"}), 503)
    assert error["type"] == "overloaded_error"


async def test_upstream_invalid_request_is_400(gw):
    gw.world.fakes["openai"].push(gw.world.fakes["openai"].error("invalid_request"))
    error = await _error(await gw.messages({}), 400)
    assert error["type"] == "invalid_request_error"


async def test_oversized_body_is_413_request_too_large(make_gateway):
    gw = await make_gateway(max_body=2048)
    big = [{"role": "user", "content": "x" * 4096}]
    error = await _error(await gw.messages({"messages": big}), 413)
    assert error["type"] == "request_too_large"


async def test_count_tokens_gives_an_estimate_without_calling_a_model(gw):
    response = await gw.client.post(
        "/v1/messages/count_tokens",
        json={"model": "auto", "messages": [{"role": "user", "content": "x" * 300}]},
    )
    assert response.status == 200
    assert (await response.json())["input_tokens"] >= 100
    assert gw.world.requests() == 0


async def test_anthropic_clients_get_anthropic_errors_on_every_path(make_gateway):
    gw = await make_gateway(api_keys=["sk-client-0123456789"])
    response = await gw.client.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
    error = await _error(response, 401)
    assert error["type"] == "authentication_error"
