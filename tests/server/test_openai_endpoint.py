"""POST /v1/chat/completions in-process: answers, streams, tools, notices and every error status."""

from __future__ import annotations

import json

import pytest

from stellwerk.errors import BudgetExhausted
from stellwerk.testing._server import Reply, ToolCall
from stellwerk.testing.world import KEYS

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_plain_answer_names_the_model_that_answered(gw):
    gw.world.fakes["openai"].push(Reply.ok("Hello there."))
    response = await gw.chat({})
    assert response.status == 200
    body = await response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "openai/gpt-4o-mini"
    assert body["choices"][0]["message"]["content"] == "Hello there."
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] > 0
    headers = response.headers
    assert headers["x-stellwerk-task"] == "simple"
    assert headers["x-stellwerk-model"] == "openai/gpt-4o-mini"
    assert headers["x-stellwerk-attempts"] == "1"
    assert "x-stellwerk-fallback" not in headers
    assert body["id"] == headers["x-stellwerk-request-id"]
    assert gw.decisions[0].request_id == headers["x-stellwerk-request-id"]


async def test_fallback_is_named_in_headers_and_body_model(gw):
    gw.world.fakes["openai"].push(gw.world.fakes["openai"].error("server_error"))
    response = await gw.chat({})
    assert response.status == 200
    body = await response.json()
    assert body["model"] == "anthropic/claude-haiku-4-5"
    assert response.headers["x-stellwerk-model"] == "anthropic/claude-haiku-4-5"
    assert response.headers["x-stellwerk-attempts"] == "2"
    assert response.headers["x-stellwerk-fallback"] == "openai/gpt-4o-mini: server"
    assert "[stellwerk]" not in body["choices"][0]["message"]["content"]


async def test_inline_notice_is_added_only_when_a_fallback_answered(make_gateway):
    gw = await make_gateway(inline_notice=True)
    plain = await (await gw.chat({})).json()
    assert "[stellwerk]" not in plain["choices"][0]["message"]["content"]
    gw.world.fakes["openai"].push(gw.world.fakes["openai"].error("insufficient_quota"))
    fallback = await (await gw.chat({})).json()
    text = fallback["choices"][0]["message"]["content"]
    assert text.startswith("Hello from the fake.\n\n[stellwerk] answered by anthropic/claude-haiku")
    assert "openai/gpt-4o-mini failed: billing" in text


async def test_explicit_task_header_selects_the_chain(gw):
    response = await gw.chat({"model": "auto"}, headers={"x-stellwerk-task": "simple"})
    assert response.headers["x-stellwerk-task"] == "simple"
    assert response.headers["x-stellwerk-model"] == "openai/gpt-4o-mini"


async def test_stream_sends_chunks_usage_and_done(gw):
    gw.world.fakes["openai"].push(Reply.ok("one two three"))
    body = {"stream": True, "stream_options": {"include_usage": True}}
    response = await gw.chat(body)
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-stellwerk-model"] == "openai/gpt-4o-mini"
    assert response.headers["x-stellwerk-attempts"] == "1"
    frames = gw.sse_data(await response.text())
    assert frames[-1] == "[DONE]"
    chunks = frames[:-1]
    assert {c["model"] for c in chunks} == {"openai/gpt-4o-mini"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two three"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_stream_fails_over_before_the_first_chunk(make_gateway):
    gw = await make_gateway(inline_notice=True)
    gw.world.fakes["openai"].push(Reply.ok("never", break_after=0))
    response = await gw.chat({"stream": True})
    assert response.status == 200
    assert response.headers["x-stellwerk-model"] == "anthropic/claude-haiku-4-5"
    assert response.headers["x-stellwerk-attempts"] == "2"
    assert response.headers["x-stellwerk-fallback"] == "openai/gpt-4o-mini: stream_broken"
    chunks = gw.sse_data(await response.text())[:-1]
    assert {c["model"] for c in chunks} == {"anthropic/claude-haiku-4-5"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert "never" not in text
    assert "[stellwerk] answered by anthropic/claude-haiku-4-5" in text


async def test_stream_broken_after_the_first_chunk_ends_with_an_error_frame(gw):
    gw.world.fakes["openai"].push(Reply.ok("alpha beta gamma delta", break_after=2))
    response = await gw.chat({"stream": True})
    assert response.status == 200
    frames = gw.sse_data(await response.text())
    assert "[DONE]" not in frames
    error = frames[-1]["error"]
    assert error["type"] == "upstream_error"
    assert error["code"] == "stream_broken"
    text = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames[:-1])
    assert text == "alpha beta "
    assert len(gw.world.fakes["anthropic"].received) == 0
    assert len(gw.decisions) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_tool_calls_come_back_in_openai_shape(gw, stream):
    call = ToolCall("get_weather", {"city": "Oslo"}, id="call_1")
    gw.world.fakes["openai"].push(Reply.tools(call))
    response = await gw.chat({"tools": [WEATHER], "stream": stream})
    assert response.status == 200
    sent = gw.world.fakes["openai"].received[0].json
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    if not stream:
        message = (await response.json())["choices"][0]
        assert message["finish_reason"] == "tool_calls"
        call_json = message["message"]["tool_calls"][0]
        assert call_json["function"]["name"] == "get_weather"
        assert json.loads(call_json["function"]["arguments"]) == {"city": "Oslo"}
        return
    frames = gw.sse_data(await response.text())[:-1]
    deltas = [f["choices"][0]["delta"] for f in frames]
    calls = [c for d in deltas for c in d.get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "get_weather"
    arguments = "".join(c["function"].get("arguments", "") for c in calls)
    assert json.loads(arguments) == {"city": "Oslo"}
    assert frames[-1]["choices"][0]["finish_reason"] == "tool_calls"


# -- error statuses --------------------------------------------------------------------------


async def test_missing_messages_is_400_naming_the_field(gw):
    response = await gw.chat({"messages": None})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages"
    assert gw.world.requests() == 0


async def test_unknown_model_is_404(gw):
    response = await gw.chat({"model": "nonesuch/gpt-9"})
    assert response.status == 404
    error = (await response.json())["error"]
    assert error["code"] == "model_not_found"
    assert "gpt-9" in error["message"]


async def test_budget_exhausted_is_429_and_not_retried(gw, monkeypatch):
    async def blocked(request):
        raise BudgetExhausted("daily all: 5.00 USD used of 5.00 USD")

    monkeypatch.setattr(gw.router, "complete", blocked)
    response = await gw.chat({})
    assert response.status == 429
    assert response.headers["x-should-retry"] == "false"
    assert (await response.json())["error"]["code"] == "budget_exhausted"


async def test_no_route_is_503_listing_why_each_target_was_skipped(make_gateway):
    gw = await make_gateway(
        {"providers": {"anthropic": {"keys": []}}, "stack": ["anthropic/claude-haiku-4-5"]}
    )
    response = await gw.chat({"model": "anthropic/claude-haiku-4-5"})
    assert response.status == 503
    error = (await response.json())["error"]
    assert error["code"] == "no_route_available"
    assert error["skipped"] == [{"target": "anthropic/claude-haiku-4-5", "reason": "no key"}]
    assert response.headers["x-stellwerk-attempts"] == "0"
    assert len(gw.decisions) == 1


async def test_all_targets_failed_is_502_listing_every_attempt(gw):
    for name in ("openai", "anthropic", "ollama"):
        gw.world.fakes[name].push(500)
    response = await gw.chat({})
    assert response.status == 502
    error = (await response.json())["error"]
    assert error["code"] == "all_targets_failed"
    assert [(a["target"], a["failure"]) for a in error["attempts"]] == [
        ("openai/gpt-4o-mini", "server"),
        ("anthropic/claude-haiku-4-5", "server"),
        ("ollama/qwen3-4b", "server"),
    ]
    assert response.headers["x-stellwerk-attempts"] == "3"
    assert response.headers["x-should-retry"] == "false"


async def test_stream_that_fails_everywhere_is_a_json_502_not_a_stream(gw):
    for name in ("openai", "anthropic", "ollama"):
        gw.world.fakes[name].push(500)
    response = await gw.chat({"stream": True})
    assert response.status == 502
    assert response.headers["content-type"].startswith("application/json")
    assert (await response.json())["error"]["code"] == "all_targets_failed"


async def test_upstream_invalid_request_is_the_callers_400(gw):
    gw.world.fakes["openai"].push(gw.world.fakes["openai"].error("invalid_request"))
    response = await gw.chat({})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["code"], error["param"]) == ("invalid_type", "messages[0].content")  # as is
    assert not error["message"].startswith("HTTP 400")
    assert len(gw.world.fakes["anthropic"].received) == 0


async def test_upstream_secrets_never_reach_the_caller(gw):
    leak = f"bad key {KEYS['OPENAI_API_KEY']} and {KEYS['ANTHROPIC_API_KEY']}"
    gw.world.fakes["openai"].push(Reply.error(500, {"error": {"message": leak}}))
    gw.world.fakes["anthropic"].push(Reply.error(500, {"error": {"message": leak}}))
    gw.world.fakes["ollama"].push(Reply.error(500, {"error": leak}))
    response = await gw.chat({})
    text = await response.text()
    assert response.status == 502
    assert not any(key in text for key in KEYS.values())


async def test_unexpected_error_is_a_clean_500(gw, monkeypatch, caplog):
    async def broken(request):
        raise RuntimeError("boom: internal detail")

    monkeypatch.setattr(gw.router, "complete", broken)
    response = await gw.chat({})
    assert response.status == 500
    body = await response.json()
    assert body["error"]["type"] == "server_error"
    assert "boom" not in body["error"]["message"]
    assert "Traceback" not in await response.text()
    assert response.headers["x-stellwerk-request-id"] in body["error"]["message"]
    assert "boom: internal detail" in caplog.text
