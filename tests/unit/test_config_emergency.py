"""The `emergency:` and `health:` config sections: defaults, durations, and key-path errors."""

from __future__ import annotations

import pytest

from stellwerk.config import policy_from_dict
from stellwerk.errors import ConfigError
from stellwerk.policy import ContextPolicy
from stellwerk.types import TaskClass


def test_defaults():
    policy = policy_from_dict({}, env={})
    assert (policy.emergency.rate_limits, policy.emergency.window) == (5, 300.0)
    assert policy.health.interval == 10.0
    assert policy.tasks[TaskClass.EMERGENCY].context is ContextPolicy.FIT


def test_values_with_units():
    raw = {"emergency": {"rate_limits": 3, "window": "90s"}, "health": {"interval": "500ms"}}
    policy = policy_from_dict(raw, env={})
    assert (policy.emergency.rate_limits, policy.emergency.window) == (3, 90.0)
    assert policy.health.interval == 0.5


def test_zero_switches_counting_and_the_watch_off():
    raw = {"emergency": {"rate_limits": 0, "window": 0}, "health": {"interval": "0s"}}
    policy = policy_from_dict(raw, env={})
    assert policy.emergency.rate_limits == 0 and policy.health.interval == 0


def test_context_fit_is_configurable_per_class():
    raw = {"tasks": {"code": {"primary": "openai-codex/gpt-5.3-codex", "context": "fit"}}}
    assert policy_from_dict(raw, env={}).tasks[TaskClass.CODE].context is ContextPolicy.FIT


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"emergency": {"rate_limits": -1}}, "emergency.rate_limits: expected a count"),
        ({"emergency": {"window": "soon"}}, "emergency.window: expected a duration"),
        ({"emergency": {"window": 0}}, "emergency.window: must be longer than 0s"),
        ({"health": {"interval": "often"}}, "health.interval: expected a duration"),
        ({"emergency": {"storms": 5}}, "emergency: unknown field 'storms'"),
    ],
)
def test_errors_name_the_key_path(raw, message):
    with pytest.raises(ConfigError) as caught:
        policy_from_dict(raw, env={})
    assert str(caught.value).startswith(message)
