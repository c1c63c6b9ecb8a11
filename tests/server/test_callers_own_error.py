"""The caller's own 400, as is (issue 15): when the upstream rejects the request as the caller's
own error, the caller gets the upstream's error, type, message, param and code unchanged, in its
own format; which target said so goes into `x-stellwerk-*` headers. The bodies are the ones the
providers send (the fakes quote them)."""

from __future__ import annotations

from typing import Any

from stellwerk.testing._server import Reply
from stellwerk.testing.anthropic import anthropic_error, raw_stream, sse
from stellwerk.testing.openai import OPENAI_ERRORS

from .conftest import Gateway

# api.openai.com, for `max_tokens` sent to a reasoning model
UNSUPPORTED = {
    "error": {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model."
        " Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unsupported_parameter",
    }
}
EMPTY_TEXT = "messages: text content blocks must be non-empty"  # api.anthropic.com
HAIKU = "anthropic/claude-haiku-4-5"


async def test_openai_callers_get_openais_error_unchanged(gw: Gateway) -> None:
    gw.world.fakes["openai"].push(Reply.error(400, UNSUPPORTED))
    response = await gw.chat({})
    assert response.status == 400
    assert await response.json() == UNSUPPORTED  # no `HTTP 400: `, param and code kept
    assert response.headers["x-stellwerk-upstream"] == "openai/gpt-4o-mini"
    assert response.headers["x-stellwerk-upstream-status"] == "400"
    assert response.headers["x-stellwerk-attempts"] == "1"  # no fallback
    assert len(gw.world.fakes["anthropic"].received) == 0


async def test_the_fakes_invalid_type_body_comes_back_whole(gw: Gateway) -> None:
    status, body, _ = OPENAI_ERRORS["invalid_request"]
    gw.world.fakes["openai"].push(Reply.error(status, body))
    response = await gw.chat({"stream": True})  # refused before the first byte: a JSON answer
    assert response.status == 400
    assert await response.json() == body
    assert body["error"]["param"] == "messages[0].content"


async def test_anthropic_callers_get_openais_message_as_invalid_request_error(
    gw: Gateway,
) -> None:
    gw.world.fakes["openai"].push(Reply.error(400, UNSUPPORTED))
    response = await gw.messages({})
    assert response.status == 400
    assert await response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": UNSUPPORTED["error"]["message"]},
    }
    assert response.headers["x-stellwerk-upstream-code"] == "unsupported_parameter"
    assert response.headers["x-stellwerk-upstream-param"] == "max_tokens"


async def test_anthropics_error_comes_back_as_is_in_both_formats(gw: Gateway) -> None:
    anthropic = gw.world.fakes["anthropic"]
    anthropic.push(anthropic_error(400, "invalid_request_error", EMPTY_TEXT))
    response = await gw.messages({"model": HAIKU})
    assert response.status == 400
    assert await response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": EMPTY_TEXT},
    }
    anthropic.push(anthropic_error(400, "invalid_request_error", EMPTY_TEXT))
    response = await gw.chat({"model": HAIKU})
    assert response.status == 400
    error: dict[str, Any] = (await response.json())["error"]
    assert error == {
        "message": EMPTY_TEXT,
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert response.headers["x-stellwerk-upstream"] == HAIKU


async def test_an_error_event_before_the_first_token_is_the_callers_400_too(gw: Gateway) -> None:
    event = {"type": "error", "error": {"type": "invalid_request_error", "message": EMPTY_TEXT}}
    gw.world.fakes["anthropic"].push(raw_stream(sse("error", event)))
    response = await gw.messages({"model": HAIKU, "stream": True})
    assert response.status == 400
    assert await response.json() == event


async def test_a_key_in_the_callers_400_is_scrubbed_and_nothing_else_changes(gw: Gateway) -> None:
    leaked = "sk-proj-" + "Leak4Four" * 12
    body = {
        "error": {
            "message": f"Unknown field near {leaked}",
            "type": "invalid_request_error",
            "param": "x",
            "code": None,
        }
    }
    gw.world.fakes["openai"].push(Reply.error(400, body))
    response = await gw.chat({})
    assert await response.json() == {
        "error": {**body["error"], "message": "Unknown field near sk-proj-…"}
    }
