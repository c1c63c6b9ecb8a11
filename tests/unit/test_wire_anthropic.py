"""Anthropic Messages translation as tables, both directions.

Upstream: ChatRequest -> POST /v1/messages JSON, answers and stream events -> our types.
Client side: a client's Messages body -> ChatRequest, our answers and chunks -> Messages JSON / SSE.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from stellwerk.errors import ProviderError, RequestError
from stellwerk.failures import FailureClass
from stellwerk.policy import ModelSpec
from stellwerk.providers.anthropic import (
    SseDecoder,
    StreamParser,
    messages_url,
    parse_response,
    to_payload,
)
from stellwerk.types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    ImagePart,
    Message,
    StopReason,
    StreamEnd,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    Tier,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
)
from stellwerk.wire.anthropic import (
    REDACTED,
    StreamRenderer,
    messages_to_wire,
    parse_request,
    render_error,
    render_response,
    tool_choice_from_wire,
    tool_choice_to_wire,
    usage_to_wire,
)

MODEL = ModelSpec(
    id="anthropic/claude-sonnet-4-0",
    provider="anthropic",
    upstream="claude-sonnet-4-0",
    tier=Tier.PREMIUM,
    input_price=3_000_000,
    output_price=15_000_000,
    context_window=200_000,
    max_output=64_000,
)
WEATHER = Tool("get_weather", "Weather for a city", {"type": "object", "properties": {}})
CALL = ToolCallPart("toolu_01", "get_weather", '{"city":"Paris"}')
RESULT = ToolResultPart("toolu_01", "18 degrees")
PNG = "iVBORw0KGgo="


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


TOOL_USE = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
TOOL_RESULT = {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18 degrees"}


# -- request -> payload ----------------------------------------------------------------------

BASE = ChatRequest.of("hi")


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (BASE, {"max_tokens": 4096}),
        (replace(BASE, system="Be brief."), {"system": "Be brief."}),
        (replace(BASE, max_tokens=100), {"max_tokens": 100}),
        (replace(BASE, max_tokens=100_000), {"max_tokens": 64_000}),  # capped at the model's
        (replace(BASE, temperature=0.3), {"temperature": 0.3}),
        (replace(BASE, temperature=1.7), {"temperature": 1.0}),  # OpenAI range, Anthropic caps
        (replace(BASE, temperature=0.3, top_p=0.9), {"temperature": 0.3, "top_p": None}),
        (replace(BASE, top_p=0.9), {"top_p": 0.9}),
        (replace(BASE, stop=("END",)), {"stop_sequences": ["END"]}),
        (
            replace(BASE, metadata={"user_id": "u-1", "other": "x"}),
            {"metadata": {"user_id": "u-1"}},
        ),
        (replace(BASE, metadata={"other": "x"}), {"metadata": None}),
    ],
)
def test_payload_fields(request_: ChatRequest, expected: dict[str, Any]) -> None:
    payload = to_payload(request_, MODEL)
    assert payload["model"] == "claude-sonnet-4-0"
    assert payload["messages"] == [user(text("hi"))]
    assert {k: payload.get(k) for k in expected} == expected
    assert "stream" not in payload


def test_payload_streams_only_when_asked() -> None:
    assert to_payload(BASE, MODEL, stream=True)["stream"] is True


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
        ({"type": "tool", "name": "get_weather"}, {"type": "tool", "name": "get_weather"}),
        ({"type": "function", "function": {}}, None),
        ("sometimes", None),
    ],
)
def test_tool_choice_to_wire(choice: Any, expected: Any) -> None:
    assert tool_choice_to_wire(choice) == expected


def test_payload_tools_carry_schema_and_choice() -> None:
    payload = to_payload(
        replace(BASE, tools=(WEATHER, Tool("noop")), tool_choice="required"), MODEL
    )
    assert payload["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER.parameters,
        },
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert payload["tool_choice"] == {"type": "any"}


def test_tool_history_without_tools_gets_stand_ins_that_cannot_be_called() -> None:
    history = (
        Message.of("user", "weather?"),
        Message("assistant", (CALL,)),
        Message("tool", (RESULT,)),
    )
    payload = to_payload(ChatRequest(messages=history), MODEL)
    assert payload["tools"] == [
        {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}
    ]
    assert payload["tool_choice"] == {"type": "none"}


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        pytest.param(
            [Message.of("user", "a"), Message.of("user", "b")],
            [user(text("a"), text("b"))],
            id="same-role turns merged",
        ),
        pytest.param(
            [
                Message.of("user", "weather?"),
                Message("assistant", (TextPart("Checking."), CALL)),
                Message("tool", (RESULT,)),
                Message("tool", (ToolResultPart("toolu_02", "", is_error=True),)),
                Message.of("user", "thanks"),
            ],
            [
                user(text("weather?")),
                assistant(text("Checking."), TOOL_USE),
                user(
                    TOOL_RESULT,
                    {"type": "tool_result", "tool_use_id": "toolu_02", "is_error": True},
                    text("thanks"),
                ),
            ],
            id="tool results become one user turn, results first",
        ),
        pytest.param(
            [Message("user", (TextPart("see"), RESULT))],
            [user(TOOL_RESULT, text("see"))],
            id="tool results first within a turn",
        ),
        pytest.param(
            [
                Message.of("user", "q"),
                Message(
                    "assistant",
                    (
                        ThinkingPart("hmm", "sig"),
                        ThinkingPart("unsigned"),
                        ThinkingPart("", REDACTED + "xyz"),
                        TextPart("a"),
                    ),
                ),
            ],
            [
                user(text("q")),
                assistant(
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    text("a"),
                ),
            ],
            id="signed and redacted thinking kept, unsigned dropped",
        ),
        pytest.param(
            [Message("user", (TextPart(""), ThinkingPart("x", "sig"))), Message.of("user", "q")],
            [user(text("q"))],
            id="empty text and user thinking dropped",
        ),
        pytest.param(
            [
                Message(
                    "user",
                    (
                        ImagePart(data=PNG, media_type="image/png"),
                        ImagePart(url="https://example.com/a.jpg"),
                        ImagePart(url=f"data:image/jpeg;base64,{PNG}"),
                        ImagePart(),
                    ),
                )
            ],
            [
                user(
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.jpg"},
                    },
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG},
                    },
                )
            ],
            id="images: base64, url, data URL",
        ),
        pytest.param(
            [
                Message(
                    "assistant",
                    (ToolCallPart("t1", "f", "not json"), ToolCallPart("t2", "f", "[1]")),
                )
            ],
            [
                assistant(
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                    {"type": "tool_use", "id": "t2", "name": "f", "input": {}},
                )
            ],
            id="arguments that are not a JSON object become {}",
        ),
    ],
)
def test_messages_to_wire(messages: list[Message], expected: list[dict[str, Any]]) -> None:
    assert messages_to_wire(messages) == expected


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
        ("https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"),
        ("https://proxy.example/v1", "https://proxy.example/v1/messages"),
    ],
)
def test_messages_url(base: str, url: str) -> None:
    assert messages_url(base) == url


# -- answers -> ChatResponse -----------------------------------------------------------------


def answer(content: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    body = {
        "id": "msg_01X",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 5},
    }
    return body | kw


@pytest.mark.parametrize(
    ("content", "parts"),
    [
        ([text("Hello")], (TextPart("Hello"),)),
        (
            [{"type": "thinking", "thinking": "hmm", "signature": "EqSig"}, text("Hi"), TOOL_USE],
            (ThinkingPart("hmm", "EqSig"), TextPart("Hi"), CALL),
        ),
        (
            [{"type": "redacted_thinking", "data": "opaque"}],
            (ThinkingPart("", REDACTED + "opaque"),),
        ),
        (
            [
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                text("x"),
            ],
            (TextPart("x"),),
        ),
        ([], ()),
    ],
)
def test_parse_response_content(content: list[dict[str, Any]], parts: tuple[Any, ...]) -> None:
    response = parse_response(answer(content), MODEL)
    assert response.content == parts
    assert response.target == "anthropic/claude-sonnet-4-0"
    assert response.upstream_model == "claude-sonnet-4-20250514"
    assert response.id == "msg_01X"


@pytest.mark.parametrize(
    ("wire", "ours"),
    [
        ("end_turn", "end"),
        ("max_tokens", "max_tokens"),
        ("stop_sequence", "stop_sequence"),
        ("tool_use", "tool_use"),
        ("pause_turn", "end"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "max_tokens"),
        (None, "end"),
    ],
)
def test_stop_reasons(wire: str | None, ours: StopReason) -> None:
    assert parse_response(answer([], stop_reason=wire), MODEL).stop_reason == ours


def test_usage_counts_the_whole_prompt_with_cache_parts_apart() -> None:
    usage = {
        "input_tokens": 10,
        "cache_read_input_tokens": 900,
        "cache_creation_input_tokens": 50,
        "output_tokens": 7,
    }
    response = parse_response(answer([], usage=usage), MODEL)
    assert response.usage == Usage(960, 7, cache_read_tokens=900, cache_write_tokens=50)
    split = {"ephemeral_5m_input_tokens": 50, "ephemeral_1h_input_tokens": 0}
    assert usage_to_wire(response.usage) == {**usage, "cache_creation": split}  # and back


def test_usage_reads_the_split_of_cache_writes_by_ttl() -> None:
    split = {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 30}
    usage = {"input_tokens": 10, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 50}
    response = parse_response(
        answer([], usage={**usage, "cache_creation": split, "output_tokens": 7}), MODEL
    )
    assert response.usage.cache_write_tokens == 50
    assert response.usage.cache_write_1h_tokens == 30


def test_missing_usage_is_estimated() -> None:
    response = parse_response(answer([text("Hello there")], usage=None), MODEL, BASE)
    assert response.usage.estimated
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("data", "failure"),
    [
        (None, FailureClass.SERVER),
        ([], FailureClass.SERVER),
        ({"id": "msg_01", "type": "message"}, FailureClass.SERVER),
        ({"content": [{"type": "text", "text": 5}]}, FailureClass.SERVER),
        (
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            FailureClass.OVERLOADED,
        ),
    ],
)
def test_parse_response_rejects_what_is_not_an_answer(data: Any, failure: FailureClass) -> None:
    with pytest.raises(ProviderError) as info:
        parse_response(data, MODEL)
    assert info.value.failure is failure
    assert info.value.target == MODEL.id


# -- stream events -> chunks -----------------------------------------------------------------


def ev(kind: str, **fields: Any) -> tuple[str, str]:
    return kind, json.dumps({"type": kind, **fields})


START = ev(
    "message_start",
    message={
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 25, "cache_read_input_tokens": 3, "output_tokens": 1},
    },
)


def block_start(index: int, block: dict[str, Any]) -> tuple[str, str]:
    return ev("content_block_start", index=index, content_block=block)


def delta(index: int, **d: Any) -> tuple[str, str]:
    return ev("content_block_delta", index=index, delta=d)


def feed_all(events: list[tuple[str, str]], parser: StreamParser | None = None) -> list[Chunk]:
    parser = parser or StreamParser(MODEL, BASE)
    return [chunk for event in events for chunk in parser.feed(*event)]


END = [
    ev(
        "message_delta",
        delta={"stop_reason": "tool_use", "stop_sequence": None},
        usage={"output_tokens": 42},
    ),
    ev("message_stop"),
]


def test_stream_events_become_chunks_in_order() -> None:
    events = [
        START,
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        ev("ping"),
        delta(0, type="thinking_delta", thinking="Let me "),
        delta(0, type="thinking_delta", thinking="see."),
        delta(0, type="signature_delta", signature="EqSig"),
        ev("content_block_stop", index=0),
        block_start(1, {"type": "text", "text": ""}),
        delta(1, type="text_delta", text="Checking"),
        ev("content_block_stop", index=1),
        block_start(2, {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}),
        delta(2, type="input_json_delta", partial_json=""),
        delta(2, type="input_json_delta", partial_json='{"city": '),
        delta(2, type="input_json_delta", partial_json='"Paris"}'),
        ev("content_block_stop", index=2),
        block_start(3, {"type": "redacted_thinking", "data": "opaque"}),
        block_start(4, {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}}),
        delta(4, type="input_json_delta", partial_json="{}"),
        *END,
    ]
    assert feed_all(events) == [
        ThinkingDelta("Let me "),
        ThinkingDelta("see."),
        ThinkingDelta("", "EqSig"),
        TextDelta("Checking"),
        ToolCallStart(0, "toolu_a", "get_weather"),
        ToolCallDelta(0, '{"city": '),
        ToolCallDelta(0, '"Paris"}'),
        ThinkingDelta("", REDACTED + "opaque"),
        ToolCallStart(1, "toolu_b", "get_time"),
        ToolCallDelta(1, "{}"),
        StreamEnd("tool_use", Usage(28, 42, cache_read_tokens=3), "claude-sonnet-4-20250514"),
    ]


def test_message_delta_usage_overrides_message_start() -> None:
    end = ev(
        "message_delta",
        delta={"stop_reason": "end_turn"},
        usage={"input_tokens": 30, "output_tokens": 9},
    )
    chunks = feed_all([START, end, ev("message_stop")])
    assert chunks == [
        StreamEnd("end", Usage(33, 9, cache_read_tokens=3), "claude-sonnet-4-20250514")
    ]


def test_stream_without_usage_is_estimated() -> None:
    events = [
        ev("message_start", message={"id": "m", "model": "claude-x", "content": []}),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Hello there"),
        ev("message_delta", delta={"stop_reason": "end_turn"}),
        ev("message_stop"),
    ]
    end = feed_all(events)[-1]
    assert isinstance(end, StreamEnd)
    assert end.usage.estimated and end.usage.output_tokens > 0 and end.usage.input_tokens > 0


@pytest.mark.parametrize(
    ("kind", "failure"),
    [
        ("overloaded_error", FailureClass.OVERLOADED),
        ("rate_limit_error", FailureClass.RATE_LIMIT),
        ("api_error", FailureClass.SERVER),
    ],
)
@pytest.mark.parametrize("after_text", [False, True])
def test_error_event_is_classified(kind: str, failure: FailureClass, after_text: bool) -> None:
    parser = StreamParser(MODEL, BASE)
    events = [START, block_start(0, {"type": "text", "text": ""})]
    if after_text:
        events.append(delta(0, type="text_delta", text="Hel"))
    feed_all(events, parser)
    with pytest.raises(ProviderError) as info:
        parser.feed(*ev("error", error={"type": kind, "message": "Overloaded"}))
    assert info.value.failure is failure
    assert info.value.after_first_token is after_text
    assert info.value.fallback is not after_text


def test_malformed_frame_breaks_the_stream() -> None:
    parser = StreamParser(MODEL, BASE)
    with pytest.raises(ProviderError) as info:
        parser.feed("content_block_delta", '{"type": "content_block_delta", "index": 0, "delta": {')
    assert info.value.failure is FailureClass.STREAM_BROKEN
    assert not info.value.after_first_token


def test_unfinished_stream_reports_broken() -> None:
    parser = StreamParser(MODEL, BASE)
    assert "empty" in str(parser.broken())
    feed_all(
        [
            START,
            block_start(0, {"type": "text", "text": ""}),
            delta(0, type="text_delta", text="Hi"),
        ],
        parser,
    )
    error = parser.broken()
    assert error.failure is FailureClass.STREAM_BROKEN
    assert error.after_first_token and not error.fallback
    assert "message_stop" in str(error)


def test_sse_decoder() -> None:
    decoder = SseDecoder()
    lines = [
        b": comment",
        b"event: ping",
        b'data: {"type": "ping"}',
        b"",
        b"",
        b"data: a",
        b"data: b",
        b"",
    ]
    assert [e for line in lines if (e := decoder.feed(line))] == [
        ("ping", '{"type": "ping"}'),
        ("", "a\nb"),
    ]


# -- client request -> ChatRequest -----------------------------------------------------------


def body(**kw: Any) -> dict[str, Any]:
    return {
        "model": "auto",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
    } | kw


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (body(), ChatRequest(messages=(Message.of("user", "hi"),), max_tokens=1024)),
        (body(max_tokens=None), ChatRequest(messages=(Message.of("user", "hi"),))),
        (
            body(
                system=[text("You are terse."), text("Use metric units.")],
                stream=True,
                temperature=0.2,
            ),
            ChatRequest(
                messages=(Message.of("user", "hi"),),
                system="You are terse.\n\nUse metric units.",
                system_blocks=(TextPart("You are terse."), TextPart("Use metric units.")),
                max_tokens=1024,
                stream=True,
                temperature=0.2,
            ),
        ),
        (
            body(
                model="anthropic/claude-haiku-4-5",
                stop_sequences=["END"],
                top_p=0.5,
                metadata={"user_id": "u-1"},
                tools=[
                    {
                        "name": "get_weather",
                        "description": "Weather",
                        "input_schema": {"type": "object"},
                    }
                ],
                tool_choice={"type": "tool", "name": "get_weather"},
            ),
            ChatRequest(
                messages=(Message.of("user", "hi"),),
                model="anthropic/claude-haiku-4-5",
                max_tokens=1024,
                top_p=0.5,
                stop=("END",),
                tools=(Tool("get_weather", "Weather", {"type": "object"}),),
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
                metadata={"user_id": "u-1"},
            ),
        ),
    ],
)
def test_parse_request(data: dict[str, Any], expected: ChatRequest) -> None:
    assert parse_request(data) == expected


def test_parse_request_conversation_with_tools_images_and_thinking() -> None:
    messages = [
        user(
            text("weather?"), {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}
        ),
        assistant(
            {"type": "thinking", "thinking": "hmm", "signature": "EqSig"},
            {"type": "redacted_thinking", "data": "op"},
            TOOL_USE,
        ),
        user(
            {
                "type": "tool_result",
                "tool_use_id": "toolu_01",
                "content": [
                    text("18 degrees"),
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                ],
                "is_error": False,
            },
            text("and tomorrow?"),
        ),
    ]
    request = parse_request(body(messages=messages))
    assert request.messages == (
        Message("user", (TextPart("weather?"), ImagePart(url="https://x/a.png"))),
        Message(
            "assistant", (ThinkingPart("hmm", "EqSig"), ThinkingPart("", REDACTED + "op"), CALL)
        ),
        Message(
            "user",
            (RESULT, ImagePart(data=PNG, media_type="image/png"), TextPart("and tomorrow?")),
        ),
    )
    # and the same conversation goes upstream unchanged
    assert messages_to_wire(request.messages)[1] == messages[1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "request body must be a JSON object"),
        (body(model=None), "model: field required"),
        (body(messages=[]), "messages: expected a non-empty list"),
        (
            body(messages=[{"role": "system", "content": "x"}]),
            "messages.0.role: expected 'user' or 'assistant'",
        ),
        (
            body(messages=[{"role": "user", "content": 5}]),
            "messages.0.content: expected a string or a list",
        ),
        (
            body(messages=[user({"type": "document", "source": {}})]),
            "messages.0.content.0: unsupported content block type 'document'",
        ),
        (body(messages=[user({"type": "text"})]), "messages.0.content.0.text: expected a string"),
        (
            body(messages=[user({"type": "image", "source": {"type": "file"}})]),
            "messages.0.content.0.source: expected a base64 or url",
        ),
        (
            body(messages=[assistant({"type": "tool_use", "id": "t", "name": "f", "input": []})]),
            "messages.0.content.0.input: expected an object",
        ),
        (body(max_tokens=0), "max_tokens: expected a positive integer"),
        (body(max_tokens="9"), "max_tokens: expected a positive integer"),
        (body(temperature="hot"), "temperature: expected a number"),
        (body(stream="yes"), "stream: expected true or false"),
        (body(stop_sequences="END"), "stop_sequences: expected a list of strings"),
        (
            body(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
            "tools.0: server tool 'web_search_20250305'",
        ),
        (body(tools=[{"name": "f"}]), "tools.0.input_schema: expected a JSON schema object"),
        (body(tool_choice={"type": "tool"}), "tool_choice: expected type auto, any, none, or tool"),
        (
            body(system=[{"type": "image", "source": {"type": "url", "url": "u"}}]),
            "system: expected a string or a list of text blocks",
        ),
    ],
)
def test_parse_request_rejects_bad_input(data: Any, message: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(data)
    assert message in str(info.value)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("wire", "ours"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice_round_trip(wire: dict[str, Any], ours: Any) -> None:
    assert tool_choice_from_wire(wire) == ours
    assert tool_choice_to_wire(ours) == wire


# -- ChatResponse -> client answer -----------------------------------------------------------

RESPONSE = ChatResponse(
    target="openai/gpt-4o-mini",
    content=(ThinkingPart("plan"), TextPart("Checking."), CALL),
    stop_reason="tool_use",
    usage=Usage(20, 8, cache_read_tokens=4),
    id="msg_abc",
)


@pytest.mark.parametrize(
    ("stop", "wire"),
    [
        ("end", "end_turn"),
        ("max_tokens", "max_tokens"),
        ("tool_use", "tool_use"),
        ("stop_sequence", "stop_sequence"),
        ("content_filter", "refusal"),
        ("error", "end_turn"),
    ],
)
def test_render_response_stop_reason(stop: StopReason, wire: str) -> None:
    assert render_response(replace(RESPONSE, stop_reason=stop), "auto")["stop_reason"] == wire


def test_render_response() -> None:
    assert render_response(RESPONSE, "claude-sonnet-4-0") == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-0",
        "content": [
            {"type": "thinking", "thinking": "plan", "signature": ""},
            text("Checking."),
            TOOL_USE,
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 16,  # Anthropic counts the cached 4 apart
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 4,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 8,
        },
    }


def test_render_response_gets_an_id_when_upstream_had_none() -> None:
    assert render_response(replace(RESPONSE, id=""), "auto")["id"].startswith("msg_")


def test_rendered_answer_parses_back() -> None:
    parsed = parse_response(render_response(RESPONSE, "x"), MODEL)
    assert parsed.content == (ThinkingPart("plan"), TextPart("Checking."), CALL)
    assert (parsed.stop_reason, parsed.usage) == ("tool_use", RESPONSE.usage)


def test_render_error() -> None:
    assert render_error("overloaded_error", "Overloaded") == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


# -- chunks -> client SSE --------------------------------------------------------------------

CHUNKS: list[Chunk] = [
    ThinkingDelta("Let me "),
    ThinkingDelta("see."),
    ThinkingDelta("", "EqSig"),
    ThinkingDelta("", REDACTED + "opaque"),
    TextDelta("Check"),
    TextDelta("ing."),
    ToolCallStart(0, "toolu_a", "get_weather"),
    ToolCallDelta(0, '{"city": '),
    ToolCallDelta(0, '"Paris"}'),
    ToolCallStart(1, "toolu_b", "get_time"),
    ToolCallDelta(1, "{}"),
    StreamEnd("tool_use", Usage(25, 42)),
]


def render_events(
    chunks: list[Chunk], renderer: StreamRenderer
) -> list[tuple[str, dict[str, Any]]]:
    raw = renderer.start() + b"".join(renderer.feed(c) for c in chunks)
    decoder = SseDecoder()
    events = [e for line in raw.split(b"\n") if (e := decoder.feed(line))]
    return [(name, json.loads(data)) for name, data in events]


def test_stream_renderer_event_sequence() -> None:
    events = render_events(CHUNKS, StreamRenderer("claude-sonnet-4-0", message_id="msg_1"))
    short = {"content_block_start": "[", "content_block_delta": "d", "content_block_stop": "]"}
    names = " ".join(short.get(name, name) for name, _ in events)
    assert names == "message_start [ d d d ] [ ] [ d d ] [ d d ] [ d ] message_delta message_stop"
    assert all(data["type"] == name for name, data in events)
    starts = [d["index"] for n, d in events if n == "content_block_start"]
    assert starts == [0, 1, 2, 3, 4]
    assert events[0][1]["message"]["id"] == "msg_1"
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"]["output_tokens"] == 42


def test_rendered_stream_parses_back_to_the_same_chunks() -> None:
    events = render_events(CHUNKS, StreamRenderer("claude-sonnet-4-0"))
    parsed = feed_all([(name, json.dumps(data)) for name, data in events])
    assert parsed[:-1] == CHUNKS[:-1]
    end = parsed[-1]
    assert isinstance(end, StreamEnd)
    assert (end.stop_reason, end.usage) == ("tool_use", Usage(25, 42))


def test_stream_renderer_error_event() -> None:
    renderer = StreamRenderer("auto")
    data = renderer.error("overloaded_error", "Overloaded")
    assert data.startswith(b"event: error\ndata: ")
    assert json.loads(data.split(b"data: ")[1]) == render_error("overloaded_error", "Overloaded")


def test_stream_renderer_skips_empty_text_and_stray_arguments() -> None:
    renderer = StreamRenderer("auto")
    assert renderer.feed(TextDelta("")) == b""
    assert renderer.feed(ToolCallDelta(3, "{}")) == b""
