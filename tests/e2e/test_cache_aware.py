"""Cache-aware routing on a replayed OpenClaw day (`bench/agent_day.py` prints the figures): one
growing session from the real agent's captures, 48 heartbeats 30 minutes apart and 11 tasks of
each class (the code tasks as tool loops), on fakes whose prompt caches work as the providers
document them. Counting the warm cache in each choice costs less than the best static class
policy, and each changed choice says why."""

from __future__ import annotations

import pytest
import pytest_asyncio

from stellwerk.testing.replay import Replayed, agent_day, all_on, replay

from ..conftest import capture


@pytest.fixture(scope="module")
def day() -> tuple[list[dict[str, object]], list[float]]:
    (turn,), (beat,) = capture("agent_turn"), capture("heartbeat")
    return agent_day(turn, beat)


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def results(day) -> dict[str, Replayed]:
    requests, times = day
    policies = {
        "sonnet": all_on("anthropic/claude-sonnet-4-0"),
        "static": {"routing": {"cache_aware": False}},
        "aware": {},
    }
    return {name: await replay(requests, c, times=times) for name, c in policies.items()}


async def test_cache_aware_routing_costs_less_than_the_static_class_policy(results):
    sonnet, static, aware = results["sonnet"], results["static"], results["aware"]
    assert aware.cost_micros < static.cost_micros * 0.5  # 5.8 % against 21.6 % measured
    assert aware.cost_micros < sonnet.cost_micros * 0.20  # the goal for the day
    assert aware.by_task["heartbeat"] < sonnet.by_task["heartbeat"] * 0.05
    for task in ("complex", "code", "reasoning"):  # turns that found a warm model
        assert aware.by_task[task] < static.by_task[task]


async def test_each_changed_choice_says_why_and_stays_within_tier(results):
    aware = results["aware"]
    changed = [d for d in aware.decisions if d.cache is not None and d.cache.changed]
    assert len(changed) >= 5
    for decision in changed:
        assert decision.answered_by == decision.cache.chosen != decision.cache.planned
        assert decision.cache.chosen_micros < decision.cache.planned_micros
        assert f"cache: {decision.cache.chosen} (" in decision.reason
        assert "warm until" in decision.reason and " cold on " in decision.reason
        assert decision.task in {"code", "reasoning", "complex"}  # never a cheaper tier's class
    beats = [d for d in aware.decisions if d.task == "heartbeat"]
    assert {d.answered_by for d in beats} == {"anthropic/claude-haiku-4-5"}
    assert all(d.cache is None for d in beats)  # minimal context: not cache-routed
    assert {d.answered_by for d in aware.decisions if d.task == "simple"} == {"openai/gpt-4o-mini"}


async def test_a_tool_loop_stays_where_its_first_request_went(results):
    aware = results["aware"]
    for first, then in zip(aware.decisions, aware.decisions[1:], strict=False):
        if then.continuation:
            assert then.answered_by == first.answered_by and then.turn == first.turn


async def test_without_the_switch_nothing_changes(results):
    assert all(d.cache is None for d in results["static"].decisions)


async def test_shadow_mode_reports_what_cache_aware_routing_would_change(day):
    requests, times = day
    shadow = await replay(requests, {"routing": {"mode": "shadow"}}, times=times)
    would = [d for d in shadow.decisions if d.cache is not None and d.cache.changed]
    assert would, "shadow mode found no choice to report"
    for decision in would:
        assert f"cache-aware would take {decision.cache.chosen}" in decision.reason
        assert decision.route.mode == "shadow"  # reported, not routed: the stack as before


async def test_the_ledger_and_stats_say_how_often_the_cache_changed_the_choice(results):
    from stellwerk.config import policy_from_dict
    from stellwerk.ledger import row_from
    from stellwerk.stats import aggregate, render_stats, stats_json

    aware = results["aware"]
    rows = [row_from(d) for d in aware.decisions]
    changed = [r for r in rows if r.cache_displaced is not None]
    assert len(changed) == sum(1 for d in aware.decisions if d.cache and d.cache.changed)
    assert all(r.cache_saved_micros > 0 and r.answered_by != r.cache_displaced for r in changed)
    stats = aggregate(rows, policy_from_dict({}), 0.0, 2e9)
    assert stats.cache_routed == len(changed)
    assert stats.cache_routed_micros == sum(r.cache_saved_micros for r in changed)
    assert f"a warm cache changed the model of {len(changed)} requests" in render_stats(stats)
    assert stats_json(stats)["cache"]["routed"] == len(changed)
