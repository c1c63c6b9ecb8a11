"""`redaction.scrub`: what an upstream echoes of a key is gone before anything cuts or keeps it."""

from __future__ import annotations

import json

import pytest

from stellwerk.errors import AllTargetsFailed, ProviderError
from stellwerk.failures import FailureClass
from stellwerk.providers._http import error_from_response, upstream_message
from stellwerk.redaction import remember, scrub, scrub_bytes, secret_headers
from stellwerk.server.errors import Problem, redact

ANT = "sk-ant-api03-" + "Unit7Ant" * 11 + "-QQ"
PROJ = "sk-proj-" + "Unit9Oai" * 18 + "Wv"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"invalid x-api-key: {ANT}", "invalid x-api-key: sk-ant-…"),
        (f"Incorrect API key provided: {PROJ}.", "Incorrect API key provided: sk-proj-…."),
        # OpenAI's own starred echo: prefix and the last four go too
        ("Incorrect API key provided: sk-proj-********abcd. You", "provided: sk-proj-…. You"),
        ("Incorrect API key provided: sk-wrong***********1234. You", "provided: sk-…. You"),
        ("key sk-or-v1-0123456789abcdef0123456789 was refused", "key sk-or-v1-… was refused"),
        ("legacy sk-" + "a1B2" * 12 + " here", "legacy sk-… here"),
        ("Authorization: Bearer eyJhbGciOi.J9xQ-_z", "Authorization: Bearer …"),
        ("google AIzaSyA-0123456789abcdefghijklmnop", "google AIza…"),
    ],
)
def test_provider_key_shapes_are_masked_keeping_their_kind(text: str, shown: str) -> None:
    assert shown in scrub(text)


@pytest.mark.parametrize(
    "text",
    [
        "task-QWERTYUIOPASDFGHJKLZXCVBNM",  # `sk-` inside a word is no key
        "use scikit-learn (sk-learn) here",  # a short `sk-` word
        "messages: text content blocks must be non-empty",
        "the bearer of bad news",
    ],
)
def test_ordinary_texts_stay_as_they_are(text: str) -> None:
    assert scrub(text) == text


def test_a_known_secret_of_any_shape_goes_whole_or_in_part() -> None:
    secret = "Zx81" * 5 + "-gw-" + "Kp33" * 5
    remember(secret)
    assert scrub(f"token {secret} refused") == "token Zx8…Kp33 refused"
    assert scrub(f"token {secret[:14]}") == "token …"  # cut short: its front goes
    assert scrub(f"{secret[-14:]} refused") == "… refused"  # its front cut off: its back goes
    assert scrub("mine", ["short"]) == "mine"  # too short to be a secret


def test_scrubbing_twice_changes_nothing_more() -> None:
    text = f"a {ANT} b {PROJ} Bearer abcdefgh12345678"
    once = scrub(text)
    assert scrub(once) == once


def test_the_auth_headers_are_the_secrets_sent() -> None:
    headers = {
        "authorization": "Bearer abc123456789",
        "x-api-key": "sk-ant-xyz123456",
        "anthropic-version": "2023-06-01",
        "idempotency-key": "per-request-value",
    }
    assert secret_headers(headers.items()) == ["abc123456789", "sk-ant-xyz123456"]


def test_a_key_straddling_the_300_character_cut_leaves_nothing() -> None:
    """The issue's case: a key that starts at 290 survived in part (its first 14 characters)."""
    secret = "Straddle" + "Q7w" * 30  # a key of no known shape, known because it was sent
    remember(secret)
    message = "x" * 290 + secret
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
    exc = error_from_response(400, body, {}, "openai/gpt-4o-mini")
    assert "Straddle" not in str(exc) and "Q7wQ7w" not in str(exc)
    assert exc.body is not None and b"Straddle" not in exc.body
    assert len(upstream_message(scrub_bytes(body))) <= 300


def test_every_provider_error_is_scrubbed_however_it_was_made() -> None:
    exc = ProviderError(FailureClass.AUTH, f"stream error: {ANT}", body=ANT.encode())
    assert "Unit7Ant" not in str(exc) and exc.body == b"sk-ant-\xe2\x80\xa6"
    failed = AllTargetsFailed([("anthropic/claude-haiku-4-5", "auth", f"said {PROJ}")])
    assert "Unit9Oai" not in str(failed) and "Unit9Oai" not in failed.attempts[0][2]


def test_answers_are_redacted_of_client_keys_and_key_shapes() -> None:
    problem = Problem(502, f"x {PROJ} y client-key-123456789", details={"a": [f"{ANT}"]})
    shown = problem.redacted(["client-key-123456789"])
    assert "Unit9Oai" not in shown.message and "client-key-123456789" not in shown.message
    assert "Unit7Ant" not in json.dumps(shown.details)
    assert redact("plain", []) == "plain"
