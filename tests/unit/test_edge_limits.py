"""The edge's depth limit and echo caps (`wire/limits.py`), and the recursion backstops behind
them in the adapters and the token estimate (issue 15)."""

from __future__ import annotations

import pytest

from stellwerk.errors import RequestError
from stellwerk.providers.ollama import arguments_object
from stellwerk.tokens import estimate_prompt
from stellwerk.types import ChatRequest, Message, Tool
from stellwerk.wire.anthropic import tool_input
from stellwerk.wire.limits import (
    MAX_ECHO,
    MAX_JSON_DEPTH,
    MAX_MESSAGE,
    cap,
    cap_message,
    deep_path,
    nesting_error,
    path_text,
    raw_deep_path,
    text_too_deep,
    too_deep,
)


def deep_text(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def deep_value(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_depth_of_decoded_json():
    assert not too_deep(deep_value(MAX_JSON_DEPTH))
    assert too_deep(deep_value(MAX_JSON_DEPTH + 1))
    assert not too_deep([1, [2, [3]], {"a": "b"}], limit=3)
    assert too_deep([[[[1]]]], limit=3)
    assert not too_deep("scalar", limit=0)


def test_depth_of_json_text_ignores_brackets_in_strings():
    assert not text_too_deep(deep_text(MAX_JSON_DEPTH))
    assert text_too_deep(deep_text(MAX_JSON_DEPTH + 1))
    assert not text_too_deep('"' + "[" * 10_000 + '"')
    assert not text_too_deep("[]" * 10_000)  # many, but side by side
    assert text_too_deep("[" * 10_000)  # not even valid JSON: still counted


def test_the_path_names_the_field_not_the_path_inside_it():
    body = {"model": "m", "tools": [{"name": "f", "input_schema": deep_value(200)}]}
    assert deep_path(body) == ("tools", 0, "input_schema")
    assert path_text(("tools", 0, "input_schema"), dotted=True) == "tools.0.input_schema"
    assert path_text(("tools", 0, "function"), dotted=False) == "tools[0].function"
    assert deep_path({"a": 1}) == ()


def test_raw_scan_finds_the_same_path():
    text = '{"model":"m","messages":[{"role":"user","content":"[[{"},'
    text += '{"role":"assistant","content":[{"type":"tool_use","input":' + deep_text(2000) + "}]}]}"
    assert raw_deep_path(text) == ("messages", 1, "content", 0, "input")
    assert raw_deep_path(b"[" * 1000) == (0,) * 6
    assert nesting_error((0, 0), dotted=True).startswith("the request body is nested deeper")


def test_caps():
    assert cap("x" * 10) == "x" * 10
    assert cap("x" * 1000) == "x" * (MAX_ECHO - 1) + "…"
    message = cap_message(f"model {'m' * 1_000_000!r} does not exist")
    assert message.endswith("… does not exist") and len(message) < MAX_ECHO + 40
    assert len(cap_message("word " * 10_000)) == MAX_MESSAGE


def test_adapters_survive_json_nested_1000_deep():
    """What an upstream answers is not checked at the edge: the adapters must not raise."""
    text = deep_text(5000)
    assert tool_input(text) == {}
    assert arguments_object(text) == {"value": text}


def test_token_estimate_of_a_schema_too_deep_is_a_request_error():
    tool = Tool("f", "", deep_value(5000))  # type: ignore[arg-type]
    request = ChatRequest(messages=(Message.of("user", "hi"),), tools=(tool,))
    with pytest.raises(RequestError, match="nested too deeply"):
        estimate_prompt(request)
