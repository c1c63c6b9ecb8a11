"""Route planning: chains in order, and a reason for every target left out. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from stellwerk.config import policy_from_dict
from stellwerk.failures import FailureClass
from stellwerk.plan import Demand, plan_route
from stellwerk.state.base import FOREVER, Cooldown, Snapshot, credential_key, model_key
from stellwerk.types import TaskClass

ALL_KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
    "OPENAI_API_KEY": "sk-proj-test-0123456789abcdef",
    "OPENAI_CODEX_API_KEY": "sk-codex-test-0123456789abcdef",
    "OPENROUTER_API_KEY": "sk-or-v1-test-0123456789abcdef",
}
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Found:
    task: TaskClass
    model: str | None = None


def policy(raw=None, env=ALL_KEYS):
    return policy_from_dict(raw or {}, env=env)


def snap(*cooldowns: Cooldown, emergency: bool = False) -> Snapshot:
    return Snapshot(NOW, {c.key: c for c in cooldowns}, emergency)


def cooldown(key: str, reason: FailureClass, seconds: float) -> Cooldown:
    return Cooldown(key, NOW + seconds, reason, 1, NOW)


@pytest.mark.parametrize(
    ("task", "first_three"),
    [
        (
            "heartbeat",
            ["anthropic/claude-haiku-4-5", "ollama/deepseek-r1", "anthropic/claude-sonnet-4-0"],
        ),
        (
            "simple",
            ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "anthropic/claude-sonnet-4-0"],
        ),
        ("code", ["openai-codex/gpt-5.3-codex", "ollama/codellama", "anthropic/claude-sonnet-4-0"]),
        ("reasoning", ["openai/o3-mini", "openai/o1", "anthropic/claude-sonnet-4-0"]),
        (
            "complex",
            ["anthropic/claude-sonnet-4-0", "openai/gpt-5.1-codex", "anthropic/claude-opus-4-6"],
        ),
    ],
)
def test_auto_mode_uses_the_class_chain(task, first_three):
    route = plan_route(Found(TaskClass(task)), policy(), snap())
    assert list(route.target_ids[:3]) == first_three
    assert route.skipped == ()


def test_named_model_starts_the_chain_there():
    route = plan_route(Found(TaskClass.SIMPLE, model="ollama/qwen3-4b"), policy(), snap())
    assert route.target_ids[:2] == ("ollama/qwen3-4b", "anthropic/claude-sonnet-4-0")
    assert route.why == "starts at ollama/qwen3-4b"


@pytest.mark.parametrize("mode", ["off", "shadow"])
def test_off_and_shadow_route_to_default_primary_and_stack(mode):
    p = policy({"routing": {"mode": mode}})
    route = plan_route(Found(TaskClass.HEARTBEAT), p, snap())
    assert route.target_ids == p.stack
    assert route.task is TaskClass.HEARTBEAT
    if mode == "shadow":
        assert route.shadow[:2] == ("anthropic/claude-haiku-4-5", "ollama/deepseek-r1")
    else:
        assert route.shadow is None


def test_rollout_routes_only_enabled_classes():
    p = policy({"routing": {"classes": ["heartbeat"]}})
    heartbeat = plan_route(Found(TaskClass.HEARTBEAT), p, snap())
    simple = plan_route(Found(TaskClass.SIMPLE), p, snap())
    assert heartbeat.target_ids[0] == "anthropic/claude-haiku-4-5"
    assert simple.target_ids[0] == "anthropic/claude-sonnet-4-0"
    assert "not enabled" in simple.why


def test_provider_without_key_is_skipped_and_says_so():
    route = plan_route(Found(TaskClass.SIMPLE), policy(env={}), snap())
    assert route.target_ids == ("ollama/deepseek-r1", "ollama/qwen3-4b", "ollama/codellama")
    assert {s.reason for s in route.skipped} == {"no key"}
    assert len(route.skipped) == 10


def test_billing_cooldown_on_a_credential_skips_its_models_with_the_time():
    c = cooldown(credential_key("anthropic#1"), FailureClass.BILLING, 7200)
    route = plan_route(Found(TaskClass.HEARTBEAT), policy(), snap(c))
    assert route.target_ids[0] == "ollama/deepseek-r1"
    skipped = {s.target: s.reason for s in route.skipped}
    assert skipped["anthropic/claude-haiku-4-5"] == "cooldown until 14:00 (billing, 2h left)"
    assert "anthropic/claude-opus-4-6" in skipped


def test_rate_limit_on_one_model_leaves_the_other_models_of_the_credential():
    c = cooldown(credential_key("openai#1", "openai/gpt-4o-mini"), FailureClass.RATE_LIMIT, 30)
    route = plan_route(Found(TaskClass.SIMPLE), policy(), snap(c))
    assert route.target_ids[0] == "anthropic/claude-haiku-4-5"
    assert "openai/o3-mini" in route.target_ids
    assert route.skipped[0].reason == "cooldown until 12:00:30 (rate_limit, 30s left)"


def test_a_second_key_keeps_the_provider_usable():
    env = {**ALL_KEYS, "K2": "sk-proj-second-0123456789abcdef"}
    p = policy({"providers": {"openai": {"keys": ["${OPENAI_API_KEY}", "${K2}"]}}}, env=env)
    c = cooldown(credential_key("openai#1"), FailureClass.BILLING, 7200)
    route = plan_route(Found(TaskClass.SIMPLE), p, snap(c))
    assert route.targets[0].id == "openai/gpt-4o-mini"
    assert [cred.id for cred in route.targets[0].credentials] == ["openai#2"]


def test_expired_cooldown_is_ignored():
    c = Cooldown(credential_key("openai#1"), NOW - 1, FailureClass.BILLING, 1, NOW - 7201)
    route = plan_route(Found(TaskClass.SIMPLE), policy(), snap(c))
    assert route.target_ids[0] == "openai/gpt-4o-mini"


def test_unavailable_model_is_skipped_until_reset():
    c = Cooldown(model_key("openai/o1"), FOREVER, FailureClass.MODEL_NOT_FOUND, 1, NOW)
    route = plan_route(Found(TaskClass.REASONING), policy(), snap(c))
    assert route.target_ids[:2] == ("openai/o3-mini", "anthropic/claude-sonnet-4-0")
    assert route.skipped[0].reason.endswith("until reset (model_not_found)")


def test_emergency_mode_plans_local_targets_only():
    route = plan_route(Found(TaskClass.CODE), policy(), snap(emergency=True))
    assert route.task is TaskClass.EMERGENCY
    assert route.target_ids == ("ollama/deepseek-r1", "ollama/qwen3-4b", "ollama/codellama")
    assert {s.reason for s in route.skipped} == {"emergency mode: local only"}


def test_context_too_large_for_small_windows_is_skipped():
    route = plan_route(Found(TaskClass.CODE), policy(), snap(), Demand(prompt_tokens=120_000))
    skipped = {s.target: s.reason for s in route.skipped}
    assert skipped["ollama/codellama"] == "context 120k > window 16k"
    assert "openai/gpt-4o-mini" in route.target_ids  # 120k fits its 128k window
    assert "ollama/qwen3-4b" in skipped
    assert route.target_ids[0] == "openai-codex/gpt-5.3-codex"


def test_requested_output_counts_against_the_window():
    route = plan_route(Found(TaskClass.SIMPLE), policy(), snap(), Demand(6_000, 4_000))
    skipped = {s.target: s.reason for s in route.skipped}
    assert skipped["ollama/qwen3-4b"] == "context 10k > window 8192"


def test_aggregator_cooldowns_are_never_provider_wide():
    # a rate limit on openrouter/auto must leave openrouter/free usable
    c = cooldown(credential_key("openrouter#1", "openrouter/auto"), FailureClass.RATE_LIMIT, 60)
    route = plan_route(Found(TaskClass.COMPLEX), policy(), snap(c))
    assert "openrouter/free" in route.target_ids
    assert "openrouter/auto" not in route.target_ids
