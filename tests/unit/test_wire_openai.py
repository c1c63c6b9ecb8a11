"""Tables for the pure OpenAI translations: the client side (`wire.openai`) and the upstream side
(`providers.openai_chat`, `providers.openai_responses`), and that tool calls survive both formats.

Bodies the gateway renders for clients are validated against the official `openai` SDK models.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from stellwerk import wire as wire_json
from stellwerk.errors import ProviderError, RequestError
from stellwerk.failures import FailureClass
from stellwerk.policy import ModelSpec
from stellwerk.providers import openai_chat, openai_responses
from stellwerk.providers._http import MAX_LINE, iter_lines
from stellwerk.providers.openai import sse_data
from stellwerk.types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    ImagePart,
    Message,
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
from stellwerk.wire import openai as wire

MODEL = ModelSpec(
    id="openai/gpt-4o-mini",
    provider="openai",
    upstream="gpt-4o-mini",
    tier=Tier.BUDGET,
    input_price=150_000,
    output_price=600_000,
    context_window=128_000,
    max_output=16_384,
)
CALL = ToolCallPart("call_1", "get_weather", '{"city":"Bern"}')
CHAT_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Bern"}'},
}
USER = {"role": "user", "content": "Weather in Bern?"}


def body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": list(messages), **fields}


# -- client requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (body(USER), ChatRequest(messages=(Message.of("user", "Weather in Bern?"),))),
        (
            body(
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
                USER,
                model="openai/gpt-4o-mini",
            ),
            ChatRequest(
                messages=(Message.of("user", "Weather in Bern?"),),
                system="Be brief.\n\nUse metric.",
                model="openai/gpt-4o-mini",
            ),
        ),
        (
            body(
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
                    ],
                }
            ),
            ChatRequest(
                messages=(
                    Message(
                        "user",
                        (
                            TextPart("What is this?"),
                            ImagePart(url="https://x.test/a.png"),
                            ImagePart(data="QUJD", media_type="image/jpeg"),
                        ),
                    ),
                )
            ),
        ),
        (
            body(
                USER,
                {"role": "assistant", "content": None, "tool_calls": [CHAT_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "12°C"},
            ),
            ChatRequest(
                messages=(
                    Message.of("user", "Weather in Bern?"),
                    Message("assistant", (CALL,)),
                    Message("tool", (ToolResultPart("call_1", "12°C"),)),
                )
            ),
        ),
        (
            body(
                USER,
                max_tokens=100,
                max_completion_tokens=200,
                temperature=0.5,
                top_p=1,
                stop="END",
                stream=True,
                metadata={"user": "ada"},
                tools=[
                    {
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "description": "Weather",
                            "parameters": {"type": "object"},
                        },
                    }
                ],
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
            ),
            ChatRequest(
                messages=(Message.of("user", "Weather in Bern?"),),
                max_tokens=200,
                temperature=0.5,
                top_p=1.0,
                stop=("END",),
                stream=True,
                metadata={"user": "ada"},
                tools=(Tool("get_weather", "Weather", {"type": "object"}),),
                tool_choice={"name": "get_weather"},
            ),
        ),
    ],
    ids=["minimal", "system", "images", "tools-history", "parameters"],
)
def test_parse_request(data: dict[str, Any], expected: ChatRequest) -> None:
    assert wire.parse_request(data) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "JSON object"),
        ({"model": "auto"}, "messages: expected a non-empty array"),
        (body(), "messages: expected a non-empty array"),
        (body({"role": "system", "content": "x"}), "at least one user message"),
        (body({"role": "wizard", "content": "x"}), "messages[0].role: unsupported role 'wizard'"),
        (body({"role": "user", "content": 5}), "messages[0].content: expected a string"),
        (
            body({"role": "user", "content": [{"type": "audio"}]}),
            "messages[0].content[0]: unsupported content part type 'audio'",
        ),
        (body({"role": "tool", "content": "x"}), "messages[0].tool_call_id"),
        (
            body({"role": "assistant", "tool_calls": [{"id": "c"}]}),
            "messages[0].tool_calls[0]: expected",
        ),
        (body(USER, model=""), "model: expected a model name"),
        (body(USER, max_tokens=0), "max_tokens: expected a positive integer"),
        (body(USER, temperature=3), "temperature: expected a number between 0 and 2"),
        (body(USER, stop=5), "stop: expected a string or an array"),
        (body(USER, stream="yes"), "stream: expected true or false"),
        (body(USER, tools=[{"type": "web_search"}]), "tools[0]: only tools of type 'function'"),
        (body(USER, tools=[{"type": "function", "function": {}}]), "tools[0].function.name"),
        (body(USER, tool_choice="sometimes"), "tool_choice: expected auto, none, required"),
        (body(USER, n=2), "n: only n=1 is supported"),
    ],
)
def test_parse_request_rejects_bad_input(data: Any, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        wire.parse_request(data)
    assert message in str(caught.value)


def test_include_usage() -> None:
    assert wire.include_usage({"stream_options": {"include_usage": True}})
    assert not wire.include_usage({"stream": True})


# -- client answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop"),
        ("content_filter", "content_filter"),
    ],
)
def test_render_response(stop: Any, finish: str) -> None:
    response = ChatResponse(
        target="openai/gpt-4o-mini",
        content=(ThinkingPart("hm"), TextPart("It is "), TextPart("12°C."), CALL),
        stop_reason=stop,
        usage=Usage(100, 20, cache_read_tokens=64),
    )
    rendered = wire.render_response(response, "auto", "chatcmpl-1", created=7)
    completion = ChatCompletion.model_validate(rendered)
    assert (completion.id, completion.model, completion.created) == ("chatcmpl-1", "auto", 7)
    choice = completion.choices[0]
    assert choice.finish_reason == finish
    assert choice.message.content == "It is 12°C."
    assert [c.model_dump() for c in choice.message.tool_calls or []] == [CHAT_CALL]
    assert rendered["choices"][0]["message"]["reasoning_content"] == "hm"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.total_tokens) == (100, 120)
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 64


STREAM: list[Chunk] = [
    ThinkingDelta("hm"),
    TextDelta("Let me check."),
    ToolCallStart(0, "call_1", "get_weather"),
    ToolCallDelta(0, '{"city":'),
    ToolCallDelta(0, '"Bern"}'),
    StreamEnd("tool_use", Usage(30, 9)),
]


def frames(data: bytes) -> list[str]:
    return [line[6:] for line in data.decode().split("\n\n") if line.startswith("data: ")]


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_renderer_frames_validate(include_usage: bool) -> None:
    renderer = wire.StreamRenderer("auto", "chatcmpl-1", include_usage=include_usage, created=7)
    data = renderer.start() + b"".join(renderer.chunk(c) for c in STREAM)
    texts = frames(data)
    assert texts[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(t) for t in texts[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1 - include_usage].choices[0].finish_reason == "tool_calls"
    assert (chunks[-1].usage is not None) is include_usage
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 9  # type: ignore[union-attr]


def test_rendered_stream_parses_back_to_the_same_chunks() -> None:
    renderer = wire.StreamRenderer("gpt-4o-mini", "c", include_usage=True, created=7)
    parser = openai_chat.ChatStream(ChatRequest.of("x"), MODEL)
    data = renderer.start() + b"".join(renderer.chunk(c) for c in STREAM)
    parsed = [chunk for text in frames(data) for chunk in parser.feed(text)]
    assert parsed + [parser.finish()] == STREAM[:-1] + [
        StreamEnd("tool_use", Usage(30, 9), "gpt-4o-mini", None)
    ]


def test_stream_error_frame_is_what_the_sdk_raises_from() -> None:
    frame = wire.StreamRenderer("auto", "c").error("upstream failed", "server_error")
    assert json.loads(frames(frame)[0]) == {
        "error": {"message": "upstream failed", "type": "server_error", "param": None, "code": None}
    }


# -- messages and tools towards an upstream --------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (Message.of("user", "hi"), [{"role": "user", "content": "hi"}]),
        (
            Message("user", (TextPart("see"), ImagePart(data="QUJD", media_type="image/png"))),
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "see"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
                    ],
                }
            ],
        ),
        (
            Message("user", (ToolResultPart("call_1", "12°C"), TextPart("and now?"))),
            [
                {"role": "tool", "tool_call_id": "call_1", "content": "12°C"},
                {"role": "user", "content": "and now?"},
            ],
        ),
        (
            Message("assistant", (ThinkingPart("hm", "sig"), TextPart("Checking."), CALL)),
            [{"role": "assistant", "content": "Checking.", "tool_calls": [CHAT_CALL]}],
        ),
        (
            Message("assistant", (CALL,)),
            [{"role": "assistant", "content": None, "tool_calls": [CHAT_CALL]}],
        ),
    ],
    ids=["text", "image", "tool-result", "assistant", "only-call"],
)
def test_message_json(message: Message, expected: list[dict[str, Any]]) -> None:
    assert wire.message_json(message) == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ("any", "required"),
        ({"name": "f"}, {"type": "function", "function": {"name": "f"}}),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
        ({"type": "any"}, "required"),
        ({"type": "auto"}, "auto"),
        (
            {"type": "function", "function": {"name": "f"}},
            {"type": "function", "function": {"name": "f"}},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    assert wire.tool_choice_json(choice) == expected


def test_tool_without_schema_gets_an_empty_object_schema() -> None:
    assert wire.tool_json(Tool("ping")) == {
        "type": "function",
        "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}},
    }


REQUEST = ChatRequest(
    messages=(Message.of("user", "hi"),),
    system="sys",
    max_tokens=None,
    temperature=0.2,
    top_p=0.9,
    stop=("X",),
)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {},
            {"max_tokens": 4096, "temperature": 0.2, "top_p": 0.9, "stop": ["X"]},
        ),
        (
            {"max_tokens_field": "max_completion_tokens", "reasoning": True},
            {"stop": ["X"]},  # no limit: hidden reasoning would use it up
        ),
        (
            {"stream": True, "extra": {"usage": {"include": True}}},
            {
                "max_tokens": 4096,
                "temperature": 0.2,
                "top_p": 0.9,
                "stop": ["X"],
                "stream": True,
                "stream_options": {"include_usage": True},
                "usage": {"include": True},
            },
        ),
    ],
    ids=["plain", "reasoning", "stream-extra"],
)
def test_chat_payload(options: dict[str, Any], expected: dict[str, Any]) -> None:
    payload = openai_chat.to_payload(REQUEST, MODEL, **options)
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    assert payload == {"model": "gpt-4o-mini", "messages": messages, **expected}


def test_chat_payload_tools_and_explicit_limit() -> None:
    request = ChatRequest(
        messages=(Message.of("user", "hi"),),
        max_tokens=50,
        tools=(Tool("f", "does f", {"type": "object"}),),
        tool_choice={"name": "f"},
    )
    payload = openai_chat.to_payload(request, MODEL)
    assert payload["max_tokens"] == 50
    assert payload["tools"] == [
        {
            "type": "function",
            "function": {"name": "f", "description": "does f", "parameters": {"type": "object"}},
        }
    ]
    assert payload["tool_choice"] == {"type": "function", "function": {"name": "f"}}


# -- upstream answers ------------------------------------------------------------------------


def completion(
    message: dict[str, Any], finish: str | None = "stop", **extra: Any
) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    return {
        "id": "c1",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [choice],
        "usage": usage,
        **extra,
    }


@pytest.mark.parametrize(
    ("data", "content", "stop"),
    [
        (completion({"content": "hi"}), (TextPart("hi"),), "end"),
        (completion({"content": "hi"}, "length"), (TextPart("hi"),), "max_tokens"),
        (
            completion({"content": None, "tool_calls": [CHAT_CALL]}, "tool_calls"),
            (CALL,),
            "tool_use",
        ),
        (
            completion({"content": "", "refusal": "I can't."}, "content_filter"),
            (TextPart("I can't."),),
            "content_filter",
        ),
        (
            completion({"content": "4", "reasoning_content": "2+2"}),
            (ThinkingPart("2+2"), TextPart("4")),
            "end",
        ),
        (
            completion({"content": "4", "reasoning": "2+2"}, None),
            (ThinkingPart("2+2"), TextPart("4")),
            "end",
        ),
    ],
    ids=["text", "length", "tool-call", "refusal", "reasoning-content", "reasoning"],
)
def test_parse_chat_response(data: dict[str, Any], content: tuple[Any, ...], stop: str) -> None:
    response = openai_chat.parse_response(data, MODEL, REQUEST)
    assert (response.content, response.stop_reason) == (content, stop)
    assert response.usage == Usage(10, 5, cache_read_tokens=4)
    assert (response.id, response.upstream_model, response.target) == (
        "c1",
        "gpt-4o-mini-2024-07-18",
        MODEL.id,
    )


def test_parse_chat_response_cost_and_missing_usage() -> None:
    data = completion({"content": "hi"})
    data["usage"]["cost"] = 0.0025
    assert openai_chat.parse_response(data, MODEL, REQUEST).cost_micros == 2500
    del data["usage"]
    usage = openai_chat.parse_response(data, MODEL, REQUEST).usage
    assert usage.estimated and usage.input_tokens > 0 and usage.output_tokens == 1


@pytest.mark.parametrize(
    ("data", "failure"),
    [
        ({"id": "x"}, FailureClass.SERVER),
        ({"choices": []}, FailureClass.SERVER),
        ({"choices": [{"message": {"tool_calls": "nope"}}]}, FailureClass.SERVER),
        ({"error": {"message": "Provider returned error", "code": 502}}, FailureClass.SERVER),
        ({"error": {"message": "Rate limit", "code": 429}}, FailureClass.RATE_LIMIT),
    ],
)
def test_parse_chat_response_failures(data: Any, failure: FailureClass) -> None:
    with pytest.raises(ProviderError) as caught:
        openai_chat.parse_response(data, MODEL, REQUEST)
    assert caught.value.failure == failure


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        ({"message": "x", "type": "server_error", "code": None}, FailureClass.SERVER),
        (
            {"message": "x", "type": "requests", "code": "rate_limit_exceeded"},
            FailureClass.RATE_LIMIT,
        ),
        (
            {"message": "x", "type": "insufficient_quota", "code": "insufficient_quota"},
            FailureClass.BILLING,
        ),
        (
            {
                "message": "Your input exceeds the context window of this model.",
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
            },
            FailureClass.CONTEXT_OVERFLOW,
        ),
        ({"message": "Invalid prompt", "code": "invalid_prompt"}, FailureClass.INVALID_REQUEST),
        ({"message": "x", "code": "server_error"}, FailureClass.SERVER),
        ({"message": "Provider disconnected", "code": 502}, FailureClass.SERVER),
        ({"message": "Insufficient credits", "code": 402}, FailureClass.BILLING),
        ({"message": "something odd"}, FailureClass.STREAM_BROKEN),
        ("plain text", FailureClass.STREAM_BROKEN),
    ],
)
def test_upstream_error_classes(error: Any, failure: FailureClass) -> None:
    assert openai_chat.upstream_error(error, "t").failure == failure


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return json.dumps({"id": "c", "model": "m", "choices": [choice], **extra})


def feed(
    parser: openai_chat.ChatStream | openai_responses.ResponsesStream, frames: list[str]
) -> list[Chunk]:
    return [c for frame in frames for c in parser.feed(frame)] + [parser.finish()]


def test_chat_stream_tool_calls_by_index_and_by_id() -> None:
    frames = [
        chunk(
            {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}}]}
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
        # some servers reuse index 0 for every parallel call: a new id is a new call
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "b",
                        "type": "function",
                        "function": {"name": "g", "arguments": "{}"},
                    }
                ]
            }
        ),
        chunk({}, "tool_calls", usage={"prompt_tokens": 3, "completion_tokens": 2}),
        "[DONE]",
    ]
    assert feed(openai_chat.ChatStream(REQUEST, MODEL), frames) == [
        ToolCallStart(0, "a", "f"),
        ToolCallDelta(0, "{"),
        ToolCallDelta(0, "}"),
        ToolCallStart(1, "b", "g"),
        ToolCallDelta(1, "{}"),
        StreamEnd("tool_use", Usage(3, 2), "m", None),
    ]


def test_chat_stream_needs_done() -> None:
    parser = openai_chat.ChatStream(REQUEST, MODEL)
    parser.feed(chunk({"content": "hi"}, "stop"))
    with pytest.raises(ProviderError) as caught:
        parser.finish()
    assert caught.value.failure == FailureClass.STREAM_BROKEN


@pytest.mark.parametrize(
    "frame",
    ["{nope", "[1, 2]", '{"choices": ["x"]}', '{"choices": [{"delta": {"tool_calls": [7]}}]}'],
)
def test_chat_stream_bad_frames(frame: str) -> None:
    with pytest.raises(ProviderError) as caught:
        openai_chat.ChatStream(REQUEST, MODEL).feed(frame)
    assert caught.value.failure == FailureClass.STREAM_BROKEN


# -- the Responses API -----------------------------------------------------------------------


def test_responses_input_items() -> None:
    messages = (
        Message("user", (TextPart("What is this?"), ImagePart(url="https://x.test/a.png"))),
        Message("assistant", (ThinkingPart("hm"), TextPart("Let me look."), CALL)),
        Message("user", (ToolResultPart("call_1", "12°C"), TextPart("Thanks"))),
    )
    assert openai_responses.input_items(messages) == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "auto"},
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Let me look."}],
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Bern"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "12°C"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("any", "required"),
        ({"name": "f"}, {"type": "function", "name": "f"}),
        (None, None),
    ],
)
def test_responses_tool_choice(choice: Any, expected: Any) -> None:
    assert openai_responses.tool_choice(choice) == expected


def test_responses_payload() -> None:
    request = ChatRequest(
        messages=(Message.of("user", "hi"),),
        system="sys",
        temperature=0.5,
        stop=("X",),
        tools=(Tool("f"),),
        tool_choice="required",
    )
    assert openai_responses.to_payload(request, MODEL, stream=True) == {
        "model": "gpt-4o-mini",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        ],
        "instructions": "sys",
        "max_output_tokens": 4096,
        "temperature": 0.5,
        "tools": [
            {
                "type": "function",
                "name": "f",
                "parameters": {"type": "object", "properties": {}},
                "strict": False,
            }
        ],
        "tool_choice": "required",
        "store": False,
        "stream": True,
    }
    assert "temperature" not in openai_responses.to_payload(request, MODEL, reasoning=True)


def response(status: str, *output: dict[str, Any], **extra: Any) -> dict[str, Any]:
    usage = {"input_tokens": 10, "output_tokens": 5, "input_tokens_details": {"cached_tokens": 2}}
    return {
        "id": "r1",
        "model": "gpt-5.1-codex",
        "status": status,
        "output": list(output),
        "usage": usage,
        **extra,
    }


MESSAGE = {
    "type": "message",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "hi", "annotations": []}],
}
FUNCTION_CALL = {
    "type": "function_call",
    "id": "fc_1",
    "call_id": "call_1",
    "name": "get_weather",
    "arguments": '{"city":"Bern"}',
}
REASONING = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hm"}]}


@pytest.mark.parametrize(
    ("data", "content", "stop"),
    [
        (response("completed", MESSAGE), (TextPart("hi"),), "end"),
        (
            response("completed", REASONING, MESSAGE, FUNCTION_CALL),
            (ThinkingPart("hm"), TextPart("hi"), CALL),
            "tool_use",
        ),
        (
            response("incomplete", MESSAGE, incomplete_details={"reason": "max_output_tokens"}),
            (TextPart("hi"),),
            "max_tokens",
        ),
        (
            response("incomplete", incomplete_details={"reason": "content_filter"}),
            (),
            "content_filter",
        ),
        (
            response(
                "completed", {"type": "message", "content": [{"type": "refusal", "refusal": "No."}]}
            ),
            (TextPart("No."),),
            "end",
        ),
    ],
    ids=["text", "tools", "max-tokens", "filtered", "refusal"],
)
def test_parse_responses_response(
    data: dict[str, Any], content: tuple[Any, ...], stop: str
) -> None:
    parsed = openai_responses.parse_response(data, MODEL, REQUEST)
    assert (parsed.content, parsed.stop_reason) == (content, stop)
    assert parsed.usage == Usage(10, 5, cache_read_tokens=2)
    assert (parsed.id, parsed.upstream_model) == ("r1", "gpt-5.1-codex")


@pytest.mark.parametrize(
    ("data", "failure"),
    [
        (
            {"status": "failed", "output": [], "error": {"code": "server_error", "message": "x"}},
            FailureClass.SERVER,
        ),
        ({"id": "r"}, FailureClass.SERVER),
        ({"output": [{"type": "function_call"}]}, FailureClass.SERVER),
        (
            {
                "error": {
                    "message": "Rate limit reached",
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                }
            },
            FailureClass.RATE_LIMIT,
        ),
    ],
)
def test_parse_responses_failures(data: Any, failure: FailureClass) -> None:
    with pytest.raises(ProviderError) as caught:
        openai_responses.parse_response(data, MODEL, REQUEST)
    assert caught.value.failure == failure


def event(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


def test_responses_stream_arguments_sent_whole() -> None:
    """A server may skip the argument deltas and send the arguments with the finished item."""
    frames = [
        event("response.created", response={"status": "in_progress"}),
        event(
            "response.output_item.added", output_index=0, item={**FUNCTION_CALL, "arguments": ""}
        ),
        event("response.output_item.done", output_index=0, item=FUNCTION_CALL),
        event("response.completed", response=response("completed", FUNCTION_CALL)),
    ]
    assert feed(openai_responses.ResponsesStream(REQUEST, MODEL), frames) == [
        ToolCallStart(0, "call_1", "get_weather"),
        ToolCallDelta(0, '{"city":"Bern"}'),
        StreamEnd("tool_use", Usage(10, 5, cache_read_tokens=2), "gpt-5.1-codex", None),
    ]


def test_responses_stream_call_announced_only_when_done() -> None:
    frames = [
        event("response.output_item.done", output_index=1, item=FUNCTION_CALL),
        event("response.completed", response=response("completed")),
    ]
    assert feed(openai_responses.ResponsesStream(REQUEST, MODEL), frames)[:2] == [
        ToolCallStart(0, "call_1", "get_weather"),
        ToolCallDelta(0, '{"city":"Bern"}'),
    ]


def test_responses_stream_incomplete_and_unknown_events() -> None:
    frames = [
        event("response.output_text.delta", output_index=0, delta="cut"),
        event("response.output_text.annotation.added", annotation={}),
        event(
            "response.incomplete",
            response=response("incomplete", incomplete_details={"reason": "max_output_tokens"}),
        ),
    ]
    chunks = feed(openai_responses.ResponsesStream(REQUEST, MODEL), frames)
    assert chunks[0] == TextDelta("cut") and isinstance(chunks[-1], StreamEnd)
    assert chunks[-1].stop_reason == "max_tokens"


@pytest.mark.parametrize(
    "frame",
    [
        "{oops",
        "{}",
        "[]",
        event("response.output_item.added", output_index="x", item=FUNCTION_CALL),
        event("response.completed", response="done"),
    ],
)
def test_responses_stream_bad_frames(frame: str) -> None:
    with pytest.raises(ProviderError) as caught:
        openai_responses.ResponsesStream(REQUEST, MODEL).feed(frame)
    assert caught.value.failure == FailureClass.STREAM_BROKEN


# -- tool calls survive both formats ---------------------------------------------------------


def test_tool_calls_round_trip_through_chat_and_responses() -> None:
    """A client's tool conversation goes upstream in both formats and the answer comes back."""
    client = body(
        {"role": "system", "content": "sys"},
        USER,
        {"role": "assistant", "content": "Checking.", "tool_calls": [CHAT_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12°C"},
        tools=[
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}},
            }
        ],
    )
    request = wire.parse_request(client)
    assert openai_chat.to_payload(request, MODEL)["messages"] == client["messages"]
    items = openai_responses.input_items(request.messages)
    assert items[2:] == [
        {"type": "function_call", "call_id": "call_1", **CHAT_CALL["function"]},  # type: ignore[dict-item]
        {"type": "function_call_output", "call_id": "call_1", "output": "12°C"},
    ]
    second = {**FUNCTION_CALL, "call_id": "call_2", "arguments": '{"city":"Thun"}'}
    answer = openai_responses.parse_response(response("completed", second), MODEL, request)
    rendered = wire.render_response(answer, "auto", "chatcmpl-9", created=1)
    calls = rendered["choices"][0]["message"]["tool_calls"]
    assert calls == [
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Thun"}'},
        }
    ]
    assert rendered["choices"][0]["finish_reason"] == "tool_calls"
    follow_up = body(
        *client["messages"],
        rendered["choices"][0]["message"],
        {"role": "tool", "tool_call_id": "call_2", "content": "9°C"},
    )
    again = wire.parse_request(follow_up)
    assert again.messages[-2] == Message(
        "assistant", (ToolCallPart("call_2", "get_weather", '{"city":"Thun"}'),)
    )
    assert openai_responses.input_items(again.messages)[-2:] == [
        {
            "type": "function_call",
            "call_id": "call_2",
            "name": "get_weather",
            "arguments": '{"city":"Thun"}',
        },
        {"type": "function_call_output", "call_id": "call_2", "output": "9°C"},
    ]


# -- server-sent events ----------------------------------------------------------------------


async def lines(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def test_sse_data() -> None:
    stream = lines(
        b": OPENROUTER PROCESSING",
        b"",
        b"event: response.created",
        b'data: {"a": 1}',
        b"",
        b"data: first",
        b"data:second",
        b"",
        b"data: [DONE]",
    )
    assert [d async for d in sse_data(stream)] == ['{"a": 1}', "first\nsecond", "[DONE]"]


class _Content:
    """What `iter_lines` reads of a response: the body as the network delivered it."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    async def iter_any(self) -> AsyncIterator[bytes]:
        for data in self.reads:
            yield data


class _Response:
    def __init__(self, *reads: bytes) -> None:
        self.content = _Content(list(reads))


async def test_iter_lines_splits_what_each_read_delivered() -> None:
    """Several events in one read, one line cut across reads, CRLF, a last line without its
    line break: the same lines as reading line by line."""
    response = _Response(b'data: {"a":1}\r\n\r\ndata: {"b"', b":2}\n\n", b"da", b"ta: [DONE]")
    found = [line async for line in iter_lines(response, "openai/x")]  # type: ignore[arg-type]
    assert found == [b'data: {"a":1}', b"", b'data: {"b":2}', b"", b"data: [DONE]"]


async def test_iter_lines_refuses_a_line_that_never_ends() -> None:
    response = _Response(b"data: " + b"x" * MAX_LINE, b"x" * 10)
    with pytest.raises(ProviderError) as caught:
        _ = [line async for line in iter_lines(response, "openai/x")]  # type: ignore[arg-type]
    assert caught.value.failure is FailureClass.STREAM_BROKEN


def test_stream_json_means_what_json_means() -> None:
    """The per-chunk JSON (msgspec) reads and writes what `json` did: a text msgspec cannot
    encode (a lone surrogate) or a frame only `json` reads still works, as before."""
    assert wire_json.loads('{"a":"ü","n":[1,2.5]}') == {"a": "ü", "n": [1, 2.5]}
    assert wire_json.loads('{"t":"\\ud83d"}') == {"t": "\ud83d"}  # half an emoji, as sent
    assert json.loads(wire_json.dumps({"t": "\ud83d", "u": "ü"})) == {"t": "\ud83d", "u": "ü"}
    assert wire_json.dumps({"a": "ü", "b": None}) == '{"a":"ü","b":null}'.encode()
    with pytest.raises(ValueError):
        wire_json.loads("{not json")
