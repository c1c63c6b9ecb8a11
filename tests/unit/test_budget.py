"""Budget rules as tables: windows, scopes, how full, which level, and what the planner skips.

Everything here is pure (an injected `now`, a time zone, usage as a mapping), except the last
section, which drives `spend.Hold` against an in-memory store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from stellwerk.budget import (
    Level,
    Window,
    applies,
    budget_rows,
    budget_states,
    counter_key,
    exhausted_message,
    fraction,
    level_of,
    render_budgets,
    verdict,
    window_of,
)
from stellwerk.config import policy_from_dict
from stellwerk.decision import Decision
from stellwerk.errors import ConfigError
from stellwerk.plan import Target, plan_route
from stellwerk.policy import BudgetLimit, BudgetPolicy, Policy
from stellwerk.spend import DEFAULT_OUTPUT_ESTIMATE, Budgets, estimate
from stellwerk.state import MemoryStore
from stellwerk.state.base import BudgetUse, Snapshot
from stellwerk.tokens import estimate_prompt
from stellwerk.types import ChatRequest, TaskClass, Usage

BERLIN = ZoneInfo("Europe/Berlin")
LA = ZoneInfo("America/Los_Angeles")
KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
    "OPENAI_API_KEY": "sk-proj-test-0123456789abcdef",
    "OPENAI_CODEX_API_KEY": "sk-codex-test-0123456789abcdef",
    "OPENROUTER_API_KEY": "sk-or-v1-test-0123456789abcdef",
}
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
DAY = "daily:2026-11-26"


def at(*args: int, tz: Any = UTC) -> float:
    return datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


# -- windows -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "now", "tz", "key", "start", "end"),
    [
        ("daily", at(2026, 11, 26, 12), UTC, DAY, at(2026, 11, 26), at(2026, 11, 27)),
        (  # 23:59:59 in Berlin is still the 26th, although UTC says 22:59
            "daily",
            at(2026, 11, 26, 23, 59, 59, tz=BERLIN),
            BERLIN,
            DAY,
            at(2026, 11, 26, tz=BERLIN),
            at(2026, 11, 27, tz=BERLIN),
        ),
        (  # midnight in Berlin starts the 27th while UTC still says the 26th
            "daily",
            at(2026, 11, 26, 23, 0),
            BERLIN,
            "daily:2026-11-27",
            at(2026, 11, 27, tz=BERLIN),
            at(2026, 11, 28, tz=BERLIN),
        ),
        (  # Los Angeles is still on the 26th when UTC is on the 27th
            "daily",
            at(2026, 11, 27, 7, 59),
            LA,
            DAY,
            at(2026, 11, 26, tz=LA),
            at(2026, 11, 27, tz=LA),
        ),
        (  # Thursday: ISO week 48 runs Monday the 23rd to Sunday the 29th
            "weekly",
            at(2026, 11, 26, 12),
            UTC,
            "weekly:2026-W48",
            at(2026, 11, 23),
            at(2026, 11, 30),
        ),
        (  # the last second of Sunday in Berlin is still week 48 ...
            "weekly",
            at(2026, 11, 29, 23, 59, 59, tz=BERLIN),
            BERLIN,
            "weekly:2026-W48",
            at(2026, 11, 23, tz=BERLIN),
            at(2026, 11, 30, tz=BERLIN),
        ),
        (  # ... and Monday midnight in Berlin (Sunday 23:00 UTC) is week 49
            "weekly",
            at(2026, 11, 29, 23, 0),
            BERLIN,
            "weekly:2026-W49",
            at(2026, 11, 30, tz=BERLIN),
            at(2026, 12, 7, tz=BERLIN),
        ),
        (  # New Year's Day 2027 belongs to ISO week 53 of 2026
            "weekly",
            at(2027, 1, 1, 12),
            UTC,
            "weekly:2026-W53",
            at(2026, 12, 28),
            at(2027, 1, 4),
        ),
    ],
)
def test_window_of(window, now, tz, key, start, end):
    assert window_of(window, now, tz) == Window(key, start, end)


def test_a_day_with_a_clock_change_is_23_hours_long():
    w = window_of("daily", at(2026, 3, 29, 12, tz=BERLIN), BERLIN)
    assert (w.key, w.end - w.start) == ("daily:2026-03-29", 23 * 3600)


def test_unknown_window_is_an_error():
    with pytest.raises(ValueError, match="monthly"):
        window_of("monthly", NOW, UTC)


def test_counter_key_joins_window_and_scope():
    limit = BudgetLimit("weekly", "provider:anthropic", tokens=10)
    assert counter_key(limit, window_of("weekly", NOW, UTC)) == "weekly:2026-W48|provider:anthropic"


# -- which limits apply --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "model", "task", "expected"),
    [
        ("all", "openai/gpt-4o-mini", "simple", True),
        ("provider:anthropic", "anthropic/claude-haiku-4-5", "simple", True),
        ("provider:anthropic", "openai/gpt-4o-mini", "simple", False),
        ("model:anthropic/claude-haiku-4-5", "anthropic/claude-haiku-4-5", "code", True),
        ("model:anthropic/claude-haiku-4-5", "anthropic/claude-sonnet-4-0", "code", False),
        ("task:code", "openai/gpt-4o-mini", "code", True),
        ("task:code", "openai/gpt-4o-mini", "simple", False),
        ("task:code", "openai/gpt-4o-mini", None, False),
    ],
)
def test_applies(scope, model, task, expected):
    policy = policy_from_dict({}, env=KEYS)
    assert applies(BudgetLimit("daily", scope, tokens=1), policy.models[model], task) is expected


# -- how full, which level -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "micros", "use", "expected"),
    [
        (1000, None, BudgetUse(0, 0), 0.0),
        (1000, None, BudgetUse(800, 5_000_000), 0.8),
        (None, 5_000_000, BudgetUse(10**9, 4_000_000), 0.8),
        (1000, 5_000_000, BudgetUse(500, 4_750_000), 0.95),  # the higher share counts
        (1000, 5_000_000, BudgetUse(950, 1), 0.95),
        (1000, None, BudgetUse(1500, 0), 1.5),
    ],
)
def test_fraction_is_the_higher_share(tokens, micros, use, expected):
    assert fraction(BudgetLimit("daily", tokens=tokens, micros=micros), use) == expected


@pytest.mark.parametrize(
    ("full", "level"),
    [
        (0.0, Level.OK),
        (0.799, Level.OK),
        (0.8, Level.WARN),
        (0.899, Level.WARN),
        (0.9, Level.DOWNGRADE),
        (0.999, Level.DOWNGRADE),
        (1.0, Level.EXHAUSTED),
        (3.0, Level.EXHAUSTED),
    ],
)
def test_level_of(full, level):
    assert level_of(full, BudgetPolicy()) is level


def test_level_follows_configured_thresholds():
    policy = BudgetPolicy(warn_at=0.5, downgrade_at=0.75)
    assert [level_of(f, policy) for f in (0.49, 0.5, 0.75)] == [
        Level.OK,
        Level.WARN,
        Level.DOWNGRADE,
    ]


def states(limits: list[dict[str, Any]], usage: dict[str, BudgetUse], now: float = NOW, **kw: Any):
    policy = policy_from_dict({"budgets": {"limits": limits, **kw}}, env=KEYS)
    return budget_states(policy.budgets, usage, now, UTC)


def test_states_read_the_current_windows_counters_only():
    usage = {
        f"{DAY}|all": BudgetUse(830, 0),
        "daily:2026-11-25|all": BudgetUse(5000, 0),  # yesterday: not counted today
    }
    [state] = states([{"window": "daily", "tokens": 1000}], usage)
    assert (state.key, state.percent, state.level, state.text) == (
        f"{DAY}|all",
        83,
        Level.WARN,
        "83% daily",
    )


def test_percent_rounds_down_so_almost_full_is_not_full():
    [state] = states([{"window": "daily", "tokens": 1000}], {f"{DAY}|all": BudgetUse(999, 0)})
    assert (state.percent, state.level) == (99, Level.DOWNGRADE)


def test_scoped_text_names_the_scope():
    limits = [{"window": "weekly", "usd": 10, "scope": "provider:anthropic"}]
    usage = {"weekly:2026-W48|provider:anthropic": BudgetUse(0, 9_200_000)}
    [state] = states(limits, usage)
    assert state.text == "92% weekly provider:anthropic"


def test_no_limits_no_states():
    assert states([], {}) == []


# -- what the planner does -----------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    task: TaskClass
    model: str | None = None


def budget_policy(limits: list[dict[str, Any]], **budgets: Any) -> Policy:
    return policy_from_dict({"budgets": {"limits": limits, **budgets}}, env=KEYS)


def plan(policy: Policy, usage: dict[str, BudgetUse], task: TaskClass = TaskClass.COMPLEX):
    return plan_route(Found(task), policy, Snapshot(NOW, budgets=usage), tz=UTC)


DAILY_1000 = [{"window": "daily", "tokens": 1000}]


@pytest.mark.parametrize("used", [0, 500, 830, 899])
def test_below_downgrade_nothing_is_skipped(used):
    route = plan(budget_policy(DAILY_1000), {f"{DAY}|all": BudgetUse(used, 0)})
    assert route.target_ids[0] == "anthropic/claude-sonnet-4-0"
    assert route.skipped == ()


def test_downgrade_skips_premium_targets_with_the_reason():
    route = plan(budget_policy(DAILY_1000), {f"{DAY}|all": BudgetUse(920, 0)})
    assert route.target_ids[0] == "openrouter/auto"
    assert all(t.model.tier != "premium" for t in route.targets)
    reasons = {s.target: s.reason for s in route.skipped}
    assert reasons["anthropic/claude-sonnet-4-0"] == "budget 92% daily: premium tier downgraded"
    assert reasons["anthropic/claude-opus-4-6"] == "budget 92% daily: premium tier downgraded"


def test_downgrade_tiers_are_configurable():
    policy = budget_policy(DAILY_1000, downgrade_tiers=["premium", "aggregator", "mid"])
    route = plan(policy, {f"{DAY}|all": BudgetUse(950, 0)}, TaskClass.SIMPLE)
    assert route.target_ids[:2] == ("openai/gpt-4o-mini", "anthropic/claude-haiku-4-5")
    assert {t.model.tier for t in route.targets} <= {"budget", "local"}


def test_at_limit_local_only_plans_only_local_targets():
    route = plan(budget_policy(DAILY_1000), {f"{DAY}|all": BudgetUse(1000, 0)})
    assert route.target_ids
    assert all(t.provider.local for t in route.targets)
    reasons = {s.target: s.reason for s in route.skipped}
    assert reasons["openai/gpt-4o-mini"] == "budget 100% daily: local only"
    assert route.blocked is None


def test_at_limit_block_refuses_with_amounts_and_reset_time():
    policy = budget_policy(DAILY_1000, at_limit="block")
    route = plan(policy, {f"{DAY}|all": BudgetUse(1000, 0)})
    assert route.targets == ()
    assert {s.reason for s in route.skipped} == {"budget 100% daily: blocked"}
    assert route.blocked == (
        "budget exhausted (daily all at 1,000 of 1,000 tokens, resets 2026-11-27 00:00 UTC); "
        "budgets.at_limit is block"
    )


def test_provider_budget_skips_only_that_provider():
    limits = [{"window": "daily", "usd": 5, "scope": "provider:anthropic"}]
    usage = {f"{DAY}|provider:anthropic": BudgetUse(0, 5_000_000)}
    route = plan(budget_policy(limits, at_limit="block"), usage)
    assert route.targets and not any(t.model.provider == "anthropic" for t in route.targets)
    assert route.target_ids[0] == "openai/gpt-5.1-codex"
    assert route.blocked is None, "other providers still answer: no 429"


def test_model_budget_skips_only_that_model():
    limits = [{"window": "weekly", "tokens": 100, "scope": "model:anthropic/claude-sonnet-4-0"}]
    usage = {"weekly:2026-W48|model:anthropic/claude-sonnet-4-0": BudgetUse(95, 0)}
    route = plan(budget_policy(limits), usage)
    assert route.target_ids[0] == "openai/gpt-5.1-codex"
    reasons = {s.target: s.reason for s in route.skipped}
    assert reasons == {
        "anthropic/claude-sonnet-4-0": (
            "budget 95% weekly model:anthropic/claude-sonnet-4-0: premium tier downgraded"
        )
    }


@pytest.mark.parametrize(("task", "limited"), [(TaskClass.CODE, True), (TaskClass.SIMPLE, False)])
def test_task_budget_applies_to_its_class_only(task, limited):
    limits = [{"window": "daily", "tokens": 100, "scope": "task:code"}]
    route = plan(budget_policy(limits), {f"{DAY}|task:code": BudgetUse(100, 0)}, task)
    assert all(t.provider.local for t in route.targets) is limited


def test_the_fullest_budget_decides():
    limits = [{"window": "daily", "tokens": 1000}, {"window": "weekly", "tokens": 1000}]
    usage = {f"{DAY}|all": BudgetUse(850, 0), "weekly:2026-W48|all": BudgetUse(930, 0)}
    route = plan(budget_policy(limits), usage)
    assert route.skipped[0].reason == "budget 93% weekly: premium tier downgraded"


def test_reserved_amounts_count_when_planning():
    usage = {f"{DAY}|all": BudgetUse(950, 0, reserved_tokens=400)}
    route = plan(budget_policy(DAILY_1000), usage)
    assert route.skipped and "downgraded" in route.skipped[0].reason


def test_verdict_of_a_target_without_applicable_limit_is_none():
    policy = budget_policy([{"window": "daily", "tokens": 1, "scope": "provider:openai"}])
    found = budget_states(policy.budgets, {f"{DAY}|provider:openai": BudgetUse(9, 0)}, NOW, UTC)
    model = policy.models["anthropic/claude-sonnet-4-0"]
    assert verdict(found, policy.budgets, model, policy.provider_of(model.id), "complex") is None


# -- how it is shown -----------------------------------------------------------------------------


def test_rows_show_use_limit_percent_and_reset():
    limits = [{"window": "daily", "tokens": 1000, "usd": 2}]
    found = states(limits, {f"{DAY}|all": BudgetUse(830, 1_000_000, reserved_tokens=30)})
    [row] = budget_rows(found, NOW, BERLIN)
    assert row == {
        "name": "daily all",
        "window": "daily",
        "scope": "all",
        "window_key": DAY,
        "level": "warn",
        "percent": 83,
        "tokens": {"used": 830, "reserved": 30, "limit": 1000},
        "micros": {"used": 1_000_000, "reserved": 0, "limit": 2_000_000},
        "resets": "2026-11-27T01:00+01:00",
        "resets_in": "12h 00m",
        "text": "830 of 1,000 tokens and $1.00 of $2.00 (83%)",
    }
    text = render_budgets([row])
    assert "daily all" in text and "(83%)" in text and "warn" in text
    assert "resets 2026-11-27T01:00+01:00 (in 12h 00m)" in text


def test_render_without_budgets_says_how_to_add_one():
    assert "budgets.limits" in render_budgets([])


def test_exhausted_message_names_every_full_budget():
    limits = [{"window": "daily", "usd": 1}, {"window": "weekly", "tokens": 10}]
    usage = {f"{DAY}|all": BudgetUse(0, 1_000_000), "weekly:2026-W48|all": BudgetUse(3, 0)}
    text = exhausted_message(states(limits, usage), UTC)
    assert "daily all at $1.00 of $1.00" in text and "weekly" not in text


# -- estimates -----------------------------------------------------------------------------------


def test_estimate_uses_max_tokens_or_a_default_capped_by_the_model():
    policy = policy_from_dict({}, env=KEYS)
    mini = policy.models["openai/gpt-4o-mini"]
    request = ChatRequest.of("hello there")
    prompt = estimate_prompt(request)
    asked = replace(ChatRequest.of("hello there"), max_tokens=100)
    assert estimate(asked, mini) == (prompt + 100, mini.cost_micros(prompt, 100))
    assert estimate(request, mini)[0] == prompt + min(DEFAULT_OUTPUT_ESTIMATE, mini.max_output)
    qwen = policy.models["ollama/qwen3-4b"]
    assert estimate(replace(ChatRequest.of("hi"), max_tokens=10**6), qwen)[0] < 10**6
    assert estimate(request, qwen)[1] == 0, "local models are free"


# -- holds against a store -----------------------------------------------------------------------


class Host:
    def __init__(self, policy: Policy, now: float = NOW) -> None:
        self.policy = policy
        self.store = MemoryStore()
        self.tz = UTC
        self.now = now

    def clock(self) -> float:
        return self.now


def decision_for(policy: Policy, task: str = "simple") -> Decision:
    route = plan_route(Found(TaskClass(task)), policy, Snapshot(NOW))
    return Decision("req_1", task, 1.0, "test", "rule", route)


def target(policy: Policy, model_id: str) -> Target:
    model = policy.models[model_id]
    return Target(model, policy.provider_of(model_id))


async def test_hold_reserves_then_settles_the_actual():
    host = Host(budget_policy(DAILY_1000 + [{"window": "weekly", "usd": 1}]))
    budgets = Budgets(host)
    request = replace(ChatRequest.of("hi"), max_tokens=50)
    mini = target(host.policy, "openai/gpt-4o-mini")
    async with budgets.hold(decision_for(host.policy), mini, request) as hold:
        held = (await host.store.snapshot(NOW)).budgets
        tokens, micros = estimate(request, mini.model)
        assert held[f"{DAY}|all"] == BudgetUse(tokens, micros, tokens, micros)
        assert held["weekly:2026-W48|all"] == BudgetUse(tokens, micros, tokens, micros)
        await hold.settle(Usage(7, 3), 42)
    after = (await host.store.snapshot(NOW)).budgets
    assert after == {f"{DAY}|all": BudgetUse(10, 42), "weekly:2026-W48|all": BudgetUse(10, 42)}


async def test_hold_released_when_the_attempt_fails():
    host = Host(budget_policy(DAILY_1000))
    mini = target(host.policy, "openai/gpt-4o-mini")
    with pytest.raises(RuntimeError):
        async with Budgets(host).hold(decision_for(host.policy), mini, ChatRequest.of("hi")):
            raise RuntimeError("upstream failed")
    assert (await host.store.snapshot(NOW)).budgets == {}


async def test_hold_settles_what_a_cut_off_stream_used():
    host = Host(budget_policy(DAILY_1000))
    mini = target(host.policy, "openai/gpt-4o-mini")
    partial = Usage(20, 5, estimated=True)
    async with Budgets(host).hold(
        decision_for(host.policy), mini, ChatRequest.of("hi"), lambda: partial
    ):
        pass
    use = (await host.store.snapshot(NOW)).budgets[f"{DAY}|all"]
    assert use == BudgetUse(25, mini.model.cost_micros(20, 5))


async def test_hold_touches_nothing_without_an_applicable_limit():
    host = Host(budget_policy([{"window": "daily", "tokens": 5, "scope": "provider:anthropic"}]))
    mini = target(host.policy, "openai/gpt-4o-mini")
    async with Budgets(host).hold(decision_for(host.policy), mini, ChatRequest.of("hi")) as hold:
        assert (await host.store.snapshot(NOW)).budgets == {}
        await hold.settle(Usage(100, 100), 1)
    assert (await host.store.snapshot(NOW)).budgets == {}


async def test_first_crossing_sets_the_notice_once_per_window_and_threshold():
    host = Host(budget_policy([{"window": "daily", "tokens": 100}]))
    budgets = Budgets(host)
    mini = target(host.policy, "openai/gpt-4o-mini")
    notices = []
    for used in (50, 35, 3, 5, 10, 1):  # 50, 85 (warn), 88, 93 (downgrade), 103 (full), 104
        decision = decision_for(host.policy)
        async with budgets.hold(decision, mini, ChatRequest.of("hi")) as hold:
            await hold.settle(Usage(used, 0), 0)
        notices.append(decision.budget_notice)
    assert notices == [
        None,
        "warn 85% daily",
        None,
        "downgrade 93% daily",
        "exhausted 103% daily",
        None,
    ]
    host.now = at(2026, 11, 27, 9)  # the next day starts from zero and warns again
    decision = decision_for(host.policy)
    async with budgets.hold(decision, mini, ChatRequest.of("hi")) as hold:
        await hold.settle(Usage(95, 0), 0)
    assert decision.budget_notice == "downgrade 95% daily"


async def test_a_jump_past_two_thresholds_names_the_higher_one():
    host = Host(budget_policy([{"window": "daily", "tokens": 100}]))
    decision = decision_for(host.policy)
    mini = target(host.policy, "openai/gpt-4o-mini")
    async with Budgets(host).hold(decision, mini, ChatRequest.of("hi")) as hold:
        await hold.settle(Usage(95, 0), 0)
    assert decision.budget_notice == "downgrade 95% daily"
    assert not await host.store.mark_warned(f"{DAY}|all", "warn", NOW, at(2026, 11, 27))


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, None), ("", None), (" https://hooks.example.com/x ", "https://hooks.example.com/x")],
)
def test_webhook_url_is_optional(raw, expected):
    assert budget_policy([], webhook=raw).budgets.webhook == expected


def test_webhook_must_be_an_http_url():
    with pytest.raises(ConfigError, match="budgets.webhook: expected an http"):
        budget_policy([], webhook="hooks.example.com")
