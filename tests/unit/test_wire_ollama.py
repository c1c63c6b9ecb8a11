"""Ollama native API translation, as tables: request -> `/api/chat` JSON, answers -> our types."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from stellwerk.errors import ProviderError
from stellwerk.failures import FailureClass
from stellwerk.policy import ModelSpec
from stellwerk.providers.ollama import (
    StreamParser,
    arguments_object,
    context_length,
    parse_response,
    stop_reason,
    to_messages,
    to_payload,
)
from stellwerk.types import (
    ChatRequest,
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

R1 = ModelSpec(
    id="ollama/deepseek-r1",
    provider="ollama",
    upstream="deepseek-r1:8b",
    tier=Tier.LOCAL,
    input_price=0,
    output_price=0,
    context_window=16384,
    max_output=8192,
    capabilities=frozenset({"reasoning"}),
)
CODELLAMA = replace(
    R1, id="ollama/codellama", upstream="codellama:7b", max_output=2048, capabilities=frozenset()
)
WEATHER = Tool(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def _request(*messages: Message, **kw: Any) -> ChatRequest:
    return ChatRequest(messages=messages, **kw)


def _user(*parts: Any) -> Message:
    return Message("user", tuple(parts))


def _assistant(*parts: Any) -> Message:
    return Message("assistant", tuple(parts))


# -- request ---------------------------------------------------------------------------------


def test_payload_names_the_upstream_model_and_always_says_whether_to_stream() -> None:
    request = ChatRequest.of("hi")
    assert to_payload(request, R1)["model"] == "deepseek-r1:8b"
    assert to_payload(request, R1)["stream"] is False
    assert to_payload(request, R1, stream=True)["stream"] is True


@pytest.mark.parametrize(
    ("model", "request_kw", "options"),
    [
        (R1, {}, {"num_ctx": 16384, "num_predict": 4096}),
        (CODELLAMA, {}, {"num_ctx": 16384, "num_predict": 2048}),
        (R1, {"max_tokens": 300}, {"num_ctx": 16384, "num_predict": 300}),
        (
            R1,
            {"temperature": 0.0, "top_p": 0.9, "stop": ("END", "\n\n")},
            {
                "num_ctx": 16384,
                "num_predict": 4096,
                "temperature": 0.0,
                "top_p": 0.9,
                "stop": ["END", "\n\n"],
            },
        ),
    ],
)
def test_options_carry_the_window_and_the_sampling_settings(
    model: ModelSpec, request_kw: dict[str, Any], options: dict[str, Any]
) -> None:
    request = replace(ChatRequest.of("hi"), **request_kw)
    assert to_payload(request, model)["options"] == options


@pytest.mark.parametrize(("model", "think"), [(R1, True), (CODELLAMA, None)])
def test_think_is_requested_only_from_reasoning_models(model: ModelSpec, think: bool) -> None:
    assert to_payload(ChatRequest.of("hi"), model).get("think") is think


def test_tools_become_ollama_function_definitions() -> None:
    payload = to_payload(replace(ChatRequest.of("weather?"), tools=(WEATHER,)), R1)
    assert payload["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": dict(WEATHER.parameters),
            },
        }
    ]


@pytest.mark.parametrize(("choice", "sent"), [(None, True), ("auto", True), ("none", False)])
def test_tool_choice_none_withholds_the_tools(choice: str | None, sent: bool) -> None:
    request = replace(ChatRequest.of("weather?"), tools=(WEATHER,), tool_choice=choice)
    assert ("tools" in to_payload(request, R1)) is sent


def test_no_tools_no_tools_field() -> None:
    assert "tools" not in to_payload(ChatRequest.of("hi"), R1)


CALL = ToolCallPart("toolu_1", "get_weather", '{"city":"Berlin"}')
SECOND = ToolCallPart("toolu_2", "get_time", '{"zone":"CET"}')
_CALL_JSON = {
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Berlin"}},
}
_SECOND_JSON = {
    "type": "function",
    "function": {"name": "get_time", "arguments": {"zone": "CET"}, "index": 1},
}


@pytest.mark.parametrize(
    ("request_", "messages"),
    [
        (
            ChatRequest.of("hi", system="Be brief."),
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        ),
        (
            _request(_user(TextPart("what is this?"), ImagePart(data="iVBORw0K", media_type="x"))),
            [{"role": "user", "content": "what is this?", "images": ["iVBORw0K"]}],
        ),
        (  # Ollama takes base64 only: a URL image is dropped
            _request(_user(TextPart("and this?"), ImagePart(url="https://example.com/a.png"))),
            [{"role": "user", "content": "and this?"}],
        ),
        (  # arguments go as an object; index 0 is left out as Go's omitempty does
            _request(
                _user(TextPart("weather and time?")), _assistant(TextPart("Let me"), CALL, SECOND)
            ),
            [
                {"role": "user", "content": "weather and time?"},
                {
                    "role": "assistant",
                    "content": "Let me",
                    "tool_calls": [_CALL_JSON, _SECOND_JSON],
                },
            ],
        ),
        (  # OpenAI style: one tool message per result, named after the call it answers
            _request(
                _assistant(CALL, SECOND),
                Message("tool", (ToolResultPart("toolu_1", "12 °C"),)),
                Message("tool", (ToolResultPart("toolu_2", "14:00"),)),
            ),
            [
                {"role": "assistant", "content": "", "tool_calls": [_CALL_JSON, _SECOND_JSON]},
                {"role": "tool", "content": "12 °C", "tool_name": "get_weather"},
                {"role": "tool", "content": "14:00", "tool_name": "get_time"},
            ],
        ),
        (  # Anthropic style: results inside the user turn come first, then the user's text
            _request(
                _assistant(CALL),
                _user(ToolResultPart("toolu_1", "no such city", is_error=True), TextPart("hm?")),
            ),
            [
                {"role": "assistant", "content": "", "tool_calls": [_CALL_JSON]},
                {"role": "tool", "content": "Error: no such city", "tool_name": "get_weather"},
                {"role": "user", "content": "hm?"},
            ],
        ),
        (  # a result for a call the history does not hold goes without a name
            _request(Message("tool", (ToolResultPart("unknown", "42"),))),
            [{"role": "tool", "content": "42"}],
        ),
        (  # thinking of earlier turns is not sent back
            _request(_assistant(ThinkingPart("secret"), TextPart("Hi.")), _user(TextPart("ok"))),
            [{"role": "assistant", "content": "Hi."}, {"role": "user", "content": "ok"}],
        ),
    ],
)
def test_messages(request_: ChatRequest, messages: list[dict[str, Any]]) -> None:
    assert to_messages(request_) == messages


def test_repeated_synthesized_ids_name_the_latest_call() -> None:
    request = _request(
        _assistant(ToolCallPart("call_0", "get_weather", "{}")),
        Message("tool", (ToolResultPart("call_0", "sunny"),)),
        _assistant(ToolCallPart("call_0", "get_time", "{}")),
        Message("tool", (ToolResultPart("call_0", "noon"),)),
    )
    names = [m.get("tool_name") for m in to_messages(request) if m["role"] == "tool"]
    assert names == ["get_weather", "get_time"]


@pytest.mark.parametrize(
    ("text", "obj"),
    [
        ('{"city": "Berlin"}', {"city": "Berlin"}),
        ("", {}),
        ("  ", {}),
        ("[1, 2]", {"value": [1, 2]}),
        ("not json", {"value": "not json"}),
    ],
)
def test_arguments_object(text: str, obj: dict[str, Any]) -> None:
    assert arguments_object(text) == obj


# -- response --------------------------------------------------------------------------------


def _answer(message: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {
        "model": "deepseek-r1:8b",
        "created_at": "2025-10-17T23:14:07.414671Z",
        "message": {"role": "assistant", **message},
        "done": True,
        "done_reason": "stop",
        "total_duration": 174560334,
        "load_duration": 101397084,
        "prompt_eval_count": 11,
        "prompt_eval_duration": 13074791,
        "eval_count": 18,
        "eval_duration": 52479709,
        **kw,
    }


def test_plain_answer() -> None:
    response = parse_response(_answer({"content": "Hello! How can I help you today?"}), R1)
    assert response.text == "Hello! How can I help you today?"
    assert response.target == "ollama/deepseek-r1"
    assert response.upstream_model == "deepseek-r1:8b"
    assert response.stop_reason == "end"
    assert response.usage == Usage(input_tokens=11, output_tokens=18)


def test_thinking_becomes_a_thinking_part_before_the_text() -> None:
    data = _answer({"content": "3", "thinking": "s-t-r-a-w-b-e-r-r-y"})
    assert parse_response(data, R1).content == (
        ThinkingPart("s-t-r-a-w-b-e-r-r-y"),
        TextPart("3"),
    )


def test_tool_calls_with_object_arguments_become_json_text_with_ids() -> None:
    calls = [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris, FR"}}},
        {"id": "call_x7k2p9qa", "function": {"index": 1, "name": "get_time", "arguments": {}}},
    ]
    response = parse_response(_answer({"content": "", "tool_calls": calls}), R1)
    assert response.tool_calls == (
        ToolCallPart("call_0", "get_weather", '{"city":"Paris, FR"}'),
        ToolCallPart("call_x7k2p9qa", "get_time", "{}"),
    )
    assert response.stop_reason == "tool_use"
    assert response.text == ""


@pytest.mark.parametrize(
    ("done_reason", "tools", "expected"),
    [
        ("stop", False, "end"),
        ("stop", True, "tool_use"),
        ("length", False, "max_tokens"),
        ("load", False, "end"),
        (None, False, "end"),
    ],
)
def test_stop_reasons(done_reason: str | None, tools: bool, expected: str) -> None:
    assert stop_reason(done_reason, tools) == expected


def test_cached_prompt_without_prompt_eval_count_is_estimated() -> None:
    data = _answer({"content": "hi"})
    del data["prompt_eval_count"]
    usage = parse_response(data, R1, ChatRequest.of("x" * 300)).usage
    assert usage.estimated
    assert usage.input_tokens >= 100
    assert usage.output_tokens == 18


@pytest.mark.parametrize(
    ("data", "failure"),
    [
        ({"model": "x", "done": True}, FailureClass.SERVER),
        ([1, 2], FailureClass.SERVER),
        ({"error": "the input length exceeds the context length"}, FailureClass.CONTEXT_OVERFLOW),
        ({"message": {"tool_calls": [{"function": {}}]}}, FailureClass.SERVER),
    ],
)
def test_unusable_answers_raise_classified_errors(data: Any, failure: FailureClass) -> None:
    with pytest.raises(ProviderError) as info:
        parse_response(data, R1)
    assert info.value.failure is failure
    assert info.value.target == "ollama/deepseek-r1"


# -- streaming -------------------------------------------------------------------------------


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def _delta(**message: Any) -> bytes:
    body = {"role": "assistant", "content": "", **message}
    return _line({"model": "deepseek-r1:8b", "message": body, "done": False})


FINAL = _line(_answer({"content": ""}))


def test_stream_lines_become_deltas_then_one_end() -> None:
    parser = StreamParser(R1)
    chunks = [
        c
        for line in (
            _delta(thinking="Hmm"),
            b"",
            _delta(content="The"),
            _delta(content=" sky"),
            FINAL,
        )
        for c in parser.feed(line)
    ]
    assert chunks == [
        ThinkingDelta("Hmm"),
        TextDelta("The"),
        TextDelta(" sky"),
        StreamEnd("end", Usage(11, 18), upstream_model="deepseek-r1:8b"),
    ]
    assert parser.done
    parser.finish()


def test_stream_tool_calls_get_consecutive_indexes() -> None:
    parser = StreamParser(R1)
    first = {"function": {"name": "a", "arguments": {"x": 1}}}
    second = {"id": "call_abc", "function": {"index": 1, "name": "b", "arguments": {}}}
    chunks = parser.feed(_delta(tool_calls=[first])) + parser.feed(_delta(tool_calls=[second]))
    chunks += parser.feed(FINAL)
    assert chunks[:4] == [
        ToolCallStart(0, "call_0", "a"),
        ToolCallDelta(0, '{"x":1}'),
        ToolCallStart(1, "call_abc", "b"),
        ToolCallDelta(1, "{}"),
    ]
    assert isinstance(chunks[-1], StreamEnd) and chunks[-1].stop_reason == "tool_use"


def test_stream_without_counts_estimates_usage() -> None:
    parser = StreamParser(R1, ChatRequest.of("hello there"))
    parser.feed(_delta(content="x" * 30))
    (end,) = parser.feed(_line({"model": "deepseek-r1:8b", "done": True, "done_reason": "stop"}))
    assert isinstance(end, StreamEnd)
    assert end.usage.estimated
    assert end.usage.output_tokens == 10
    assert end.usage.input_tokens > 0


@pytest.mark.parametrize(
    ("lines", "after_first_token"),
    [((), False), ((_delta(thinking="Hm"),), True), ((_delta(content="Hi"),), True)],
)
def test_stream_without_final_object_is_broken(
    lines: tuple[bytes, ...], after_first_token: bool
) -> None:
    parser = StreamParser(R1)
    for line in lines:
        parser.feed(line)
    with pytest.raises(ProviderError) as info:
        parser.finish()
    assert info.value.failure is FailureClass.STREAM_BROKEN
    assert info.value.after_first_token is after_first_token


@pytest.mark.parametrize("bad", [b'{"model": "deepseek-r1:8b", "mess', b"[1]", b"<html>"])
@pytest.mark.parametrize("started", [False, True])
def test_malformed_line_is_stream_broken(bad: bytes, started: bool) -> None:
    parser = StreamParser(R1)
    if started:
        parser.feed(_delta(content="Hi"))
    with pytest.raises(ProviderError) as info:
        parser.feed(bad)
    assert info.value.failure is FailureClass.STREAM_BROKEN
    assert info.value.after_first_token is started


@pytest.mark.parametrize(
    ("message", "failure"),
    [
        ("an error was encountered while running the model", FailureClass.STREAM_BROKEN),
        ("the input length exceeds the context length", FailureClass.CONTEXT_OVERFLOW),
        ('model "deepseek-r1:8b" not found, try pulling it first', FailureClass.MODEL_NOT_FOUND),
        ("server overloaded, try again", FailureClass.OVERLOADED),
    ],
)
def test_error_line_in_stream_is_classified(message: str, failure: FailureClass) -> None:
    parser = StreamParser(R1)
    parser.feed(_delta(content="Yes"))
    with pytest.raises(ProviderError) as info:
        parser.feed(_line({"error": message}))
    assert info.value.failure is failure
    assert info.value.after_first_token
    assert not info.value.fallback


def test_lines_after_the_final_object_are_ignored() -> None:
    parser = StreamParser(R1)
    parser.feed(FINAL)
    assert parser.feed(_delta(content="late")) == []


# -- model management ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("show", "length"),
    [
        ({"model_info": {"general.architecture": "qwen3", "qwen3.context_length": 40960}}, 40960),
        ({"model_info": {"llama.context_length": 16384}}, 16384),
        ({"model_info": {}}, None),
        ({}, None),
    ],
)
def test_context_length_from_show(show: dict[str, Any], length: int | None) -> None:
    assert context_length(show) == length
