"""The configuration: the built-in default is the strategy, and bad files say where they are bad."""

from __future__ import annotations

from pathlib import Path

import pytest

from stellwerk.config import load_policy, parse_duration, parse_fraction, policy_from_dict
from stellwerk.errors import ConfigError
from stellwerk.policy import RoutingMode
from stellwerk.types import TaskClass, Tier

STACK = [
    "anthropic/claude-sonnet-4-0",
    "openrouter/auto",
    "anthropic/claude-opus-4-6",
    "anthropic/claude-haiku-4-5",
    "anthropic/claude-sonnet-4-5",
    "openai-codex/gpt-5.3-codex",
    "openai/gpt-5.1-codex",
    "openai/o3-mini",
    "openai/gpt-4o-mini",
    "ollama/deepseek-r1",
    "openrouter/free",
    "ollama/qwen3-4b",
    "ollama/codellama",
]


@pytest.fixture
def policy():
    return policy_from_dict({}, env={})


def test_default_stack_is_the_strategy(policy):
    assert list(policy.stack) == STACK


@pytest.mark.parametrize(
    ("task", "primary", "fallbacks"),
    [
        ("heartbeat", "anthropic/claude-haiku-4-5", ["ollama/deepseek-r1"]),
        ("simple", "openai/gpt-4o-mini", ["anthropic/claude-haiku-4-5"]),
        (
            "complex",
            "anthropic/claude-sonnet-4-0",
            ["openai/gpt-5.1-codex", "anthropic/claude-opus-4-6"],
        ),
        ("code", "openai-codex/gpt-5.3-codex", ["ollama/codellama"]),
        ("reasoning", "openai/o3-mini", ["openai/o1"]),
        ("emergency", "ollama/deepseek-r1", ["ollama/qwen3-4b", "ollama/codellama"]),
    ],
)
def test_default_task_classes(policy, task, primary, fallbacks):
    tp = policy.tasks[TaskClass(task)]
    assert (tp.primary, list(tp.fallbacks)) == (primary, fallbacks)


def test_chain_is_primary_fallbacks_then_stack_without_repeats(policy):
    chain = policy.chain(TaskClass.HEARTBEAT)
    assert chain[:2] == ("anthropic/claude-haiku-4-5", "ollama/deepseek-r1")
    assert len(chain) == len(set(chain)) == 13
    assert policy.chain(TaskClass.REASONING)[:2] == ("openai/o3-mini", "openai/o1")


@pytest.mark.parametrize(
    ("provider", "seconds"),
    [
        ("anthropic", 7200),
        ("openai", 7200),
        ("openai-codex", 7200),
        ("openrouter", 1800),
        ("ollama", 0),
    ],
)
def test_billing_cooldowns(policy, provider, seconds):
    assert policy.providers[provider].billing_cooldown == seconds


def test_budget_thresholds(policy):
    assert (policy.budgets.warn_at, policy.budgets.downgrade_at) == (0.8, 0.9)


@pytest.mark.parametrize(
    ("model", "params", "window"),
    [
        ("ollama/deepseek-r1", "8B", 16384),
        ("ollama/qwen3-4b", "4B", 8192),
        ("ollama/codellama", "7B", 16384),
    ],
)
def test_ollama_models(policy, model, params, window):
    spec = policy.models[model]
    assert (spec.parameters, spec.context_window, spec.tier) == (params, window, Tier.LOCAL)


@pytest.mark.parametrize(
    ("alias", "model"),
    [
        ("haiku", "anthropic/claude-haiku-4-5"),
        ("sonnet", "anthropic/claude-sonnet-4-5"),
        ("opus", "anthropic/claude-opus-4-6"),
        ("4o-mini", "openai/gpt-4o-mini"),
        ("o3-mini", "openai/o3-mini"),
        ("codex", "openai-codex/gpt-5.3-codex"),
        ("r1", "ollama/deepseek-r1"),
        ("qwen", "ollama/qwen3-4b"),
        ("codellama", "ollama/codellama"),
        ("gpt-4o-mini", "openai/gpt-4o-mini"),
        ("HAIKU", "anthropic/claude-haiku-4-5"),
    ],
)
def test_aliases_resolve(policy, alias, model):
    assert policy.resolve_model(alias).id == model


def test_auto_is_not_an_alias(policy):
    assert policy.resolve_model("auto") is None


def test_prices_are_integer_micro_dollars(policy):
    sonnet = policy.models["anthropic/claude-sonnet-4-0"]
    assert (sonnet.input_price, sonnet.output_price) == (3_000_000, 15_000_000)
    assert sonnet.cost_micros(1_000, 1_000) == 18_000  # $0.003 + $0.015
    assert policy.models["openai/gpt-4o-mini"].cost_micros(1, 0) == 1  # rounds up, never down


def test_keys_come_from_the_environment(policy):
    env = {
        "ANTHROPIC_API_KEY": "sk-ant-api03-abcdefghijklmnop",
        "OLLAMA_HOST": "http://10.1.2.3:11434",
    }
    p = policy_from_dict({}, env=env)
    assert p.providers["anthropic"].available
    assert p.providers["anthropic"].credentials[0].secret.reveal() == env["ANTHROPIC_API_KEY"]
    assert p.providers["ollama"].base_url == "http://10.1.2.3:11434"
    assert not p.providers["openai"].available  # configured, no key: unavailable
    assert p.providers["ollama"].available  # local: needs no key


def test_several_keys_and_var_defaults():
    raw = {"providers": {"openai": {"keys": ["${K1}", "${K2:-sk-fallback-0123456789}", "${K3:-}"]}}}
    p = policy_from_dict(raw, env={"K1": "sk-one-0123456789abcdef"})
    creds = p.providers["openai"].credentials
    assert [c.id for c in creds] == ["openai#1", "openai#2"]
    assert creds[1].secret.reveal() == "sk-fallback-0123456789"


def test_secrets_never_show_in_repr():
    p = policy_from_dict({}, env={"OPENAI_API_KEY": "sk-proj-verysecretvalue1234"})
    text = repr(p) + str(p.providers["openai"].credentials)
    assert "verysecret" not in text
    assert "sk-…1234" in text


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"tasks": {"code": {"fallbacks": ["ollama/codellama", "opnai/o3-mini"]}}},
            "tasks.code.fallbacks[1]: unknown model 'opnai/o3-mini' (did you mean openai/o3-mini?)",
        ),
        ({"stack": ["openai/gpt-4o-mini", 3]}, "stack[1]: expected `str`, got `int`"),
        ({"routing": {"mode": "fast"}}, "routing.mode: invalid enum value 'fast'"),
        ({"routing": {"default_task": "chat"}}, "routing.default_task: unknown task class 'chat'"),
        (
            {"tasks": {"code": {"prmary": "codex"}}},
            "tasks.code: unknown field 'prmary' (did you mean 'primary'?)",
        ),
        (
            {"providers": {"anthropic": {"billing_cooldown": "two hours"}}},
            "providers.anthropic.billing_cooldown: expected a duration",
        ),
        (
            {"providers": {"x": {"type": "gemini", "base_url": "http://h"}}},
            "providers.x.type: unknown",
        ),
        (
            {"providers": {"openai": {"base_url": "api.openai.com"}}},
            "providers.openai.base_url: expected",
        ),
        (
            {
                "models": {
                    "openai/x": {
                        "tier": "cheap",
                        "price": {"input": 1, "output": 1},
                        "context_window": 5,
                    }
                }
            },
            "models.openai/x.tier: invalid enum value",
        ),
        (
            {
                "models": {
                    "nowhere/x": {
                        "tier": "mid",
                        "price": {"input": 1, "output": 1},
                        "context_window": 5,
                    }
                }
            },
            "models.nowhere/x: unknown provider",
        ),
        (
            {"budgets": {"warn_at": "95%", "downgrade_at": "90%"}},
            "budgets.downgrade_at: must not be below budgets.warn_at",
        ),
        ({"budgets": {"timezone": "Mars/Olympus"}}, "budgets.timezone: unknown time zone"),
        (
            {"budgets": {"limits": [{"window": "daily"}]}},
            "budgets.limits[0]: a budget needs tokens",
        ),
        (
            {"budgets": {"limits": [{"window": "daily", "usd": 1, "scope": "model:gpt9"}]}},
            "budgets.limits[0].scope: unknown model 'gpt9'",
        ),
        (
            {"classifier": {"rules": [{"task": "code", "pattern": "(unclosed"}]}},
            "classifier.rules[0].pattern: invalid regular expression",
        ),
        (
            {"providers": {"openai": {"keys": ["${NOT_SET_ANYWHERE}"]}}},
            "providers.openai.keys[0]: environment variable NOT_SET_ANYWHERE is not set",
        ),
        (
            {
                "models": {
                    "openai/x": {
                        "tier": "mid",
                        "price": {"input": 1, "output": 1},
                        "context_window": 5,
                        "aliases": ["haiku"],
                    }
                }
            },
            "models.openai/x.aliases: alias 'haiku' is also",
        ),
    ],
)
def test_bad_config_names_the_key_path(raw, message):
    with pytest.raises(ConfigError) as info:
        policy_from_dict(raw, env={})
    assert str(info.value).startswith(message)


def test_user_file_overrides_the_default(tmp_path: Path):
    file = tmp_path / "stellwerk.yaml"
    file.write_text("routing:\n  mode: shadow\ntasks:\n  simple:\n    primary: haiku\n")
    p = load_policy(file, env={})
    assert p.routing.mode is RoutingMode.SHADOW
    assert p.tasks[TaskClass.SIMPLE].primary == "anthropic/claude-haiku-4-5"
    assert p.tasks[TaskClass.CODE].primary == "openai-codex/gpt-5.3-codex"  # untouched
    assert p.source == str(file)


def test_invalid_yaml_says_where(tmp_path: Path):
    file = tmp_path / "bad.yaml"
    file.write_text("routing:\n  mode: [auto\n")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line 3"):
        load_policy(file, env={})


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_policy(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1h30m", 5400.0), ("500ms", 0.5)],
)
def test_durations(value, seconds):
    assert parse_duration(value, "x") == seconds


@pytest.mark.parametrize(("value", "fraction"), [("80%", 0.8), (0.9, 0.9), (85, 0.85)])
def test_fractions(value, fraction):
    assert parse_fraction(value, "x") == pytest.approx(fraction)
