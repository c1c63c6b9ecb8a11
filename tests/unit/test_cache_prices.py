"""Cache reads and writes are priced at their own prices, from the catalog or the provider's
rule, and a config that sets them wrong says where."""

from __future__ import annotations

import pytest

from stellwerk.config import policy_from_dict
from stellwerk.errors import ConfigError
from stellwerk.types import Usage

POLICY = policy_from_dict({})


def test_anthropic_models_take_anthropics_cache_rule():
    sonnet = POLICY.models["anthropic/claude-sonnet-4-0"]  # $3 input
    assert (sonnet.input_price, sonnet.cache_read_price) == (3_000_000, 300_000)
    assert (sonnet.cache_write_price, sonnet.cache_write_1h_price) == (3_750_000, 6_000_000)


def test_openai_models_read_at_their_published_cached_price_and_pay_no_writes():
    mini = POLICY.models["openai/gpt-4o-mini"]
    assert mini.cache_read_price == 75_000 and mini.cache_write_price == mini.input_price
    codex = POLICY.models["openai/gpt-5.1-codex"]
    assert codex.cache_read_price == codex.input_price // 10


def test_cost_of_a_cached_call():
    sonnet = POLICY.models["anthropic/claude-sonnet-4-0"]
    # 10k prompt tokens: 8k read, 1k written for 5 min, 500 written for 1 h, 500 plain; 100 out
    usage = Usage(
        10_000, 100, cache_read_tokens=8_000, cache_write_tokens=1_500, cache_write_1h_tokens=500
    )
    expected = 500 * 3 + 8_000 * 0.3 + 1_000 * 3.75 + 500 * 6 + 100 * 15  # micro-dollars
    assert sonnet.cost_of(usage) == round(expected)
    assert sonnet.cost_of(Usage(10_000, 100)) == sonnet.cost_micros(10_000, 100)
    assert sonnet.cache_saved(usage) == sonnet.cost_micros(10_000, 100) - round(expected)


def test_a_models_own_cache_prices_win():
    raw = {"models": {"anthropic/claude-sonnet-4-0": {"price": {"cache_read": 0.5}}}}
    assert policy_from_dict(raw).models["anthropic/claude-sonnet-4-0"].cache_read_price == 500_000


def test_a_negative_cache_price_names_its_key():
    raw = {"models": {"openai/gpt-4o-mini": {"price": {"cache_read": -1}}}}
    with pytest.raises(ConfigError) as caught:
        policy_from_dict(raw)
    assert caught.value.path == "models.openai/gpt-4o-mini.price.cache_read"


def test_heartbeats_cache_for_an_hour_and_the_other_classes_by_the_sessions_rhythm():
    tasks = {str(t): p.cache_ttl for t, p in POLICY.tasks.items()}
    assert tasks["heartbeat"] == "1h" and tasks["emergency"] == "5m"
    assert {tasks[c] for c in ("simple", "complex", "code", "reasoning")} == {"auto"}
    off = policy_from_dict({"tasks": {"code": {"cache": "off"}}})
    assert [off.tasks[t].cache_ttl for t in off.tasks if str(t) == "code"] == [None]


def test_a_bare_yaml_off_means_off():
    import yaml

    raw = yaml.safe_load("routing: {mode: off}\ntasks: {code: {cache: off}}\n")
    assert raw["routing"]["mode"] is False  # YAML 1.1 reads it so
    policy = policy_from_dict(raw)
    assert str(policy.routing.mode) == "off"
    assert [p.cache_ttl for t, p in policy.tasks.items() if str(t) == "code"] == [None]
