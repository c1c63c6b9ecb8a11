"""When emergency mode starts and when the cloud is tried again: the pure rules, as tables."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC

import pytest

from stellwerk import emergency
from stellwerk.config import policy_from_dict
from stellwerk.failures import FailureClass
from stellwerk.plan import plan_route
from stellwerk.state import FOREVER, Cooldown, Snapshot
from stellwerk.types import TaskClass

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
    "OPENAI_API_KEY": "sk-proj-test-0123456789abcdef",
    "OPENAI_CODEX_API_KEY": "sk-codex-test-0123456789abcdef",
    "OPENROUTER_API_KEY": "sk-or-v1-test-0123456789abcdef",
}
CLOUD_CREDENTIALS = ("anthropic#1", "openai#1", "openai-codex#1", "openrouter#1")
BILLING, RATE, AUTH = FailureClass.BILLING, FailureClass.RATE_LIMIT, FailureClass.AUTH


@dataclass(frozen=True)
class Found:
    task: TaskClass
    model: str | None = None


def cooled(*keys: str, reason: FailureClass = BILLING, until: float = NOW + 3600) -> Snapshot:
    return Snapshot(NOW, {k: Cooldown(k, until, reason, 1, NOW) for k in keys})


def everything(reason: FailureClass = BILLING, until: float = NOW + 3600) -> Snapshot:
    return cooled(*(f"cred:{c}" for c in CLOUD_CREDENTIALS), reason=reason, until=until)


def exhausted(snapshot: Snapshot, env: dict[str, str] = KEYS) -> str | None:
    policy = policy_from_dict({}, env=env)
    route = plan_route(Found(TaskClass.SIMPLE), policy, snapshot)
    return emergency.cloud_exhausted(route, policy, snapshot, UTC)


def test_every_cloud_target_cooling_down_is_an_emergency():
    why = exhausted(everything())
    assert why == "every cloud target is cooling down (the first is free at 09:00:00)"


@pytest.mark.parametrize(
    ("snapshot", "env"),
    [
        (Snapshot(NOW), KEYS),  # all healthy
        (cooled("cred:anthropic#1", "cred:openai#1"), KEYS),  # some cloud left
        (Snapshot(NOW), {}),  # no keys at all: an Ollama-only user is not in an emergency
        (everything(AUTH, FOREVER), KEYS),  # disabled keys need a config change, not patience
    ],
    ids=["healthy", "some cloud left", "no keys", "keys disabled"],
)
def test_no_emergency_without_a_temporary_cooldown_on_every_cloud_target(snapshot, env):
    assert exhausted(snapshot, env) is None


def test_rate_limits_per_model_count_as_cooling_when_they_cover_the_chain():
    policy = policy_from_dict({}, env=KEYS)
    keys = [
        f"cred:{policy.provider_of(m).credentials[0].id}|{m}"
        for m in policy.chain(TaskClass.SIMPLE)
        if not policy.provider_of(m).local
    ]
    assert exhausted(cooled(*keys, reason=RATE, until=NOW + 30)) is not None
    assert exhausted(cooled(*keys[1:], reason=RATE, until=NOW + 30)) is None


def _due(snapshot: Snapshot) -> bool:
    policy = policy_from_dict({}, env=KEYS)
    normal = plan_route(Found(TaskClass.SIMPLE), policy, replace(snapshot, emergency=False))
    return emergency.cloud_due(normal, policy, snapshot)


def _on(snapshot: Snapshot, reason: str = "5 rate limits in 5m") -> Snapshot:
    return Snapshot(snapshot.now, snapshot.cooldowns, True, NOW - 60, reason)


@pytest.mark.parametrize(
    ("snapshot", "due"),
    [
        (_on(Snapshot(NOW)), True),  # every cooldown has ended
        (_on(cooled("cred:openai#1|openai/gpt-4o-mini", reason=RATE)), False),  # still limited
        (_on(cooled("cred:openai#1")), True),  # billing on one provider: others can answer
        (_on(everything()), False),  # nothing in the cloud can serve yet
        (_on(Snapshot(NOW), "by hand (stellwerk emergency on)"), False),  # only by hand
        (_on(cooled("cred:ollama#local|ollama/qwen3-4b", reason=RATE)), True),  # local: ignored
    ],
    ids=["all ended", "rate limit left", "billing elsewhere", "all cooling", "by hand", "local"],
)
def test_the_cloud_is_tried_again_once_no_cloud_key_is_rate_limited(snapshot, due):
    assert _due(snapshot) is due


def test_notice_says_since_when_and_why():
    snapshot = _on(Snapshot(NOW))
    assert emergency.notice(snapshot, UTC) == (
        "emergency mode since 07:59:00 (5 rate limits in 5m): local models only,"
        " reduced functionality"
    )


def test_manual_is_only_the_mode_switched_on_by_hand():
    assert emergency.manual(_on(Snapshot(NOW), "by hand (status API)"))
    assert not emergency.manual(_on(Snapshot(NOW)))
    off = Snapshot(NOW, {}, False, NOW, "by hand (stellwerk emergency off)")
    assert not emergency.manual(off)


def test_a_probe_retries_the_default_class_first_cloud_target():
    policy = policy_from_dict({}, env=KEYS)
    target = emergency.retry_target(policy, _on(Snapshot(NOW)), UTC)
    assert target is not None and target.id == "anthropic/claude-sonnet-4-0"
    assert emergency.retry_target(policy, Snapshot(NOW), UTC) is None, "not in emergency"
    limited = _on(cooled("cred:anthropic#1|anthropic/claude-opus-4-6", reason=RATE))
    assert emergency.retry_target(policy, limited, UTC) is None, "not due yet"
