"""The cooldown rules as tables: which keys a failure cools down, for how long, and how it reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from stellwerk.config import policy_from_dict
from stellwerk.failures import FailureClass as F
from stellwerk.policy import Policy, ProviderSpec
from stellwerk.state import FOREVER, Cooldown
from stellwerk.state.base import credential_key, credential_parts
from stellwerk.state.cooldown import (
    STRIKE_MEMORY,
    cooldown_keys,
    describe,
    duration,
    duration_rule,
    next_cooldown,
    next_strikes,
)

POLICY: Policy = policy_from_dict({})
COOLDOWNS = POLICY.cooldowns
SONNET, AUTO, R1 = "anthropic/claude-sonnet-4-0", "openrouter/auto", "ollama/deepseek-r1"


def provider(name: str) -> ProviderSpec:
    return POLICY.providers[name]


@pytest.mark.parametrize(
    ("failure", "name", "credential", "model", "keys"),
    [
        (F.BILLING, "anthropic", "anthropic#1", SONNET, ("cred:anthropic#1",)),
        (F.AUTH, "anthropic", "anthropic#1", SONNET, ("cred:anthropic#1",)),
        (F.CONNECT, "anthropic", "anthropic#2", SONNET, ("cred:anthropic#2",)),
        (F.RATE_LIMIT, "anthropic", "anthropic#1", SONNET, (f"cred:anthropic#1|{SONNET}",)),
        (F.OVERLOADED, "anthropic", "anthropic#1", SONNET, (f"cred:anthropic#1|{SONNET}",)),
        (F.SERVER, "openai", "openai#1", "openai/o3-mini", ("cred:openai#1|openai/o3-mini",)),
        (F.TIMEOUT, "anthropic", "anthropic#1", SONNET, (f"cred:anthropic#1|{SONNET}",)),
        (F.STREAM_BROKEN, "anthropic", "anthropic#1", SONNET, (f"cred:anthropic#1|{SONNET}",)),
        (F.MODEL_NOT_FOUND, "anthropic", "anthropic#1", SONNET, (f"model:{SONNET}",)),
        (F.CONTEXT_OVERFLOW, "anthropic", "anthropic#1", SONNET, ()),
        (F.INVALID_REQUEST, "anthropic", "anthropic#1", SONNET, ()),
        # aggregators: one model's failure never takes the whole key out, except a bad key
        (F.BILLING, "openrouter", "openrouter#1", AUTO, (f"cred:openrouter#1|{AUTO}",)),
        (F.CONNECT, "openrouter", "openrouter#1", AUTO, (f"cred:openrouter#1|{AUTO}",)),
        (F.RATE_LIMIT, "openrouter", "openrouter#1", AUTO, (f"cred:openrouter#1|{AUTO}",)),
        (F.AUTH, "openrouter", "openrouter#1", AUTO, ("cred:openrouter#1",)),
        # local providers without a key use a pseudo credential
        (F.CONNECT, "ollama", None, R1, ("cred:ollama#local",)),
        (F.SERVER, "ollama", None, R1, (f"cred:ollama#local|{R1}",)),
        (F.BILLING, "ollama", None, R1, ("cred:ollama#local",)),
        (F.MODEL_NOT_FOUND, "ollama", None, R1, (f"model:{R1}",)),
    ],
)
def test_cooldown_keys(
    failure: F, name: str, credential: str | None, model: str, keys: tuple[str, ...]
) -> None:
    assert cooldown_keys(failure, provider(name), credential, model) == keys


@pytest.mark.parametrize("failure", list(F))
@pytest.mark.parametrize("name", ["anthropic", "openai", "openrouter", "ollama"])
def test_no_failure_cools_down_a_whole_provider(failure: F, name: str) -> None:
    keys = cooldown_keys(failure, provider(name), f"{name}#1", f"{name}/m")
    assert f"cred:{name}" not in keys
    assert all(k.startswith((f"cred:{name}#1", "model:")) for k in keys)


@pytest.mark.parametrize(
    ("name", "seconds"),
    [
        ("anthropic", 7200),
        ("openai", 7200),
        ("openai-codex", 7200),
        ("openrouter", 1800),
        ("ollama", 0),
    ],
)
def test_billing_waits_the_providers_billing_period(name: str, seconds: float) -> None:
    for strikes in (1, 4):
        assert duration(F.BILLING, strikes, provider(name), COOLDOWNS, None) == seconds


@pytest.mark.parametrize(
    ("strikes", "retry_after", "seconds"),
    [
        (1, None, 30),
        (2, None, 60),
        (3, None, 120),
        (5, None, 480),
        (6, None, 600),  # capped at rate_limit.max
        (50, None, 600),
        (1, 12, 12),  # the provider said when to come back
        (1, 1000, 300),  # but no longer than retry_after_cap
        (1, 0, 0),
        (1, -5, 0),
        (3, 12, 120),  # repeats: the longer of Retry-After and the backoff
        (5, 1000, 480),
        (2, 200, 200),
    ],
)
def test_rate_limit_honours_retry_after_and_backs_off(
    strikes: int, retry_after: float | None, seconds: float
) -> None:
    got = duration(F.RATE_LIMIT, strikes, provider("anthropic"), COOLDOWNS, retry_after)
    assert got == seconds


@pytest.mark.parametrize("failure", [F.OVERLOADED, F.SERVER, F.TIMEOUT, F.CONNECT, F.STREAM_BROKEN])
@pytest.mark.parametrize(
    ("strikes", "seconds"), [(0, 30), (1, 30), (2, 60), (3, 120), (6, 600), (100_000, 600)]
)
def test_breaker_doubles_up_to_the_cap(failure: F, strikes: int, seconds: float) -> None:
    assert duration(failure, strikes, provider("openai"), COOLDOWNS, None) == seconds


@pytest.mark.parametrize(
    ("failure", "seconds"),
    [
        (F.AUTH, FOREVER),
        (F.MODEL_NOT_FOUND, FOREVER),
        (F.CONTEXT_OVERFLOW, 0),
        (F.INVALID_REQUEST, 0),
    ],
)
def test_disabled_forever_or_not_at_all(failure: F, seconds: float) -> None:
    assert duration(failure, 1, provider("anthropic"), COOLDOWNS, 30) == seconds


def test_duration_rule_binds_everything_but_strikes() -> None:
    rule = duration_rule(F.RATE_LIMIT, provider("openai"), COOLDOWNS, retry_after=7)
    assert [rule(1), rule(2), rule(3)] == [7, 60, 120]


NOW = datetime(2025, 3, 1, 12, 5, tzinfo=UTC).timestamp()


def cooldown(until: float, strikes: int = 1, reason: F = F.RATE_LIMIT) -> Cooldown:
    return Cooldown("cred:a#1", until, reason, strikes, since=NOW - 100)


@pytest.mark.parametrize(
    ("previous", "strikes"),
    [
        (None, 1),
        (cooldown(NOW + 10, strikes=2), 3),  # still cooling down
        (cooldown(NOW - STRIKE_MEMORY + 1, strikes=4), 5),  # expired recently
        (cooldown(NOW - STRIKE_MEMORY - 1, strikes=4), 1),  # quiet long enough
        (cooldown(FOREVER, strikes=1, reason=F.AUTH), 2),
    ],
)
def test_next_strikes(previous: Cooldown | None, strikes: int) -> None:
    assert next_strikes(previous, NOW) == strikes


def test_next_cooldown_keeps_the_start_of_a_run() -> None:
    got = next_cooldown(cooldown(NOW + 5), "cred:a#1", F.RATE_LIMIT, NOW, lambda s: 10 * s, "x")
    assert got == Cooldown("cred:a#1", NOW + 20, F.RATE_LIMIT, 2, NOW - 100, "x")


def test_next_cooldown_without_duration_blocks_nothing() -> None:
    got = next_cooldown(None, "cred:a#1", F.CONTEXT_OVERFLOW, NOW, lambda s: 0)
    assert got.until == NOW and not got.active(NOW)


@pytest.mark.parametrize(
    ("until", "reason", "text"),
    [
        (NOW + 7200, F.BILLING, "cooldown until 14:05 (billing, 2h left)"),
        (NOW + 5400, F.BILLING, "cooldown until 13:35 (billing, 1h30m left)"),
        (NOW + 30, F.RATE_LIMIT, "cooldown until 12:05:30 (rate_limit, 30s left)"),
        (NOW + 150.2, F.SERVER, "cooldown until 12:07:30 (server, 2m31s left)"),
        (NOW + 20 * 3600, F.BILLING, "cooldown until 2025-03-02 08:05 (billing, 20h left)"),
        (FOREVER, F.AUTH, "disabled until reset (auth)"),
        (FOREVER, F.MODEL_NOT_FOUND, "unavailable until reset (model_not_found)"),
        (NOW - 30, F.RATE_LIMIT, "cooldown ended at 12:04:30 (rate_limit)"),
    ],
)
def test_describe(until: float, reason: F, text: str) -> None:
    assert describe(cooldown(until, reason=reason), NOW, tz=UTC) == text


def test_describe_in_the_callers_timezone() -> None:
    berlin = timezone(timedelta(hours=1))
    assert describe(cooldown(NOW + 7200, reason=F.BILLING), NOW, berlin).startswith(
        "cooldown until 15:05 "
    )


def test_a_credential_key_reads_back_as_its_provider_credential_and_model() -> None:
    assert credential_parts(credential_key("openai#2", "openai/gpt-4o")) == (
        "openai",
        "openai#2",
        "openai/gpt-4o",
    )
    assert credential_parts(credential_key("anthropic#1")) == ("anthropic", "anthropic#1", "")
    assert credential_parts("model:openai/gpt-4o") is None
    assert credential_parts("health:ollama") is None
