"""Cache-aware routing's pure parts: what an answer teaches about a provider's cache, what a
choice weighs, and the TTL a session's rhythm calls for."""

from __future__ import annotations

import pytest

from stellwerk import warmth
from stellwerk.classify import Classification
from stellwerk.config import policy_from_dict
from stellwerk.plan import Demand, plan_route
from stellwerk.state.base import Snapshot
from stellwerk.types import ChatRequest, TaskClass, Tool, Usage

KEYS = {k: "k" for k in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_CODEX_API_KEY")}
POLICY = policy_from_dict({}, env={**KEYS, "OPENROUTER_API_KEY": "k"})
SONNET, O3, CODEX = "anthropic/claude-sonnet-4-0", "openai/o3-mini", "openai-codex/gpt-5.3-codex"
HAIKU, MINI = "anthropic/claude-haiku-4-5", "openai/gpt-4o-mini"
NOW = 1_000_000.0


def route(task: TaskClass):
    found = Classification(task, 1.0, "test", "explicit")
    return plan_route(found, POLICY, Snapshot(now=NOW), Demand(30_000, 1000))


def warm(*entries: tuple[str, int]) -> warmth.Warm:
    return {target: (tokens, NOW + 600, 300.0) for target, tokens in entries}


def test_an_anthropic_answer_teaches_its_cached_prefix_and_ttl():
    usage = Usage(20_000, 50, cache_read_tokens=15_000, cache_write_tokens=4_000,
                  cache_write_1h_tokens=4_000)  # fmt: skip
    learned = warmth.learned({}, SONNET, "anthropic", usage, NOW, estimate=26_000)
    tokens, until, ttl = learned[SONNET]
    assert tokens == round(19_000 * 26_000 / 20_000)  # in Stellwerk's estimate, like the plan
    assert (until, ttl) == (NOW + 3600, 3600)


def test_openai_caches_the_whole_prompt_by_itself_and_small_prompts_not_at_all():
    assert warmth.learned({}, MINI, "openai", Usage(5_000, 10), NOW, 5_000)[MINI][0] == 5_000
    assert warmth.learned({}, MINI, "openai", Usage(800, 10), NOW, 800) == {}


def test_estimates_and_uncached_providers_teach_nothing():
    estimated = Usage(5_000, 10, estimated=True)
    assert warmth.learned({}, SONNET, "anthropic", estimated, NOW, 5_000) is None
    assert warmth.learned({}, "ollama/qwen3-4b", "ollama", Usage(5_000, 10), NOW, 5_000) is None


def test_a_miss_forgets_what_was_thought_warm():
    known = warm((SONNET, 20_000))
    assert warmth.learned(known, SONNET, "anthropic", Usage(20_000, 5), NOW, 20_000) == {}


def test_a_warm_model_of_a_higher_tier_takes_a_turn_when_it_is_cheaper():
    choice = warmth.choose(route(TaskClass.REASONING), TaskClass.REASONING, POLICY,
                           warm((SONNET, 28_000)), 30_000, 1_000, "5m")  # fmt: skip
    assert choice is not None and choice.changed
    assert (choice.chosen, choice.planned) == (SONNET, O3)
    assert "cold on openai/o3-mini" in choice.explain()


def test_a_lower_tier_never_takes_a_turn_because_it_is_warm():
    choice = warmth.choose(route(TaskClass.COMPLEX), TaskClass.COMPLEX, POLICY,
                           warm((HAIKU, 29_000), (MINI, 29_000)), 30_000, 1_000, "5m")  # fmt: skip
    assert choice is None


def test_a_warm_planned_target_stays_and_a_cold_one_never_displaces_it():
    stay = warmth.choose(route(TaskClass.CODE), TaskClass.CODE, POLICY,
                         warm((CODEX, 29_000), (SONNET, 29_000)), 30_000, 1_000, "5m")  # fmt: skip
    assert stay is not None and not stay.changed and "stayed on" in stay.explain()


def test_a_warm_model_that_would_cost_more_does_not_take_the_turn():
    # only a sliver of the prompt is warm on Sonnet: o3-mini cold is still cheaper
    choice = warmth.choose(route(TaskClass.REASONING), TaskClass.REASONING, POLICY,
                           warm((SONNET, 2_000)), 30_000, 1_000, "5m")  # fmt: skip
    assert choice is None or not choice.changed


def test_the_rhythm_of_a_session_sets_the_ttl_under_auto():
    seen = warmth.seen({}, NOW, first=True)
    assert warmth.ttl(seen) == "5m"  # one turn: no rhythm yet
    seen = warmth.seen(seen, NOW + 1200, first=True)
    assert warmth.ttl(seen) == "1h"  # turns 20 minutes apart
    seen = warmth.seen(seen, NOW + 1230, first=False)  # a tool loop's continuation: no turn
    assert seen[warmth.SEEN][0] == 1200
    rare = warmth.seen(warmth.seen({}, NOW, first=True), NOW + 4 * 3600, first=True)
    assert warmth.ttl(rare) == "5m"  # turns hours apart: a one-hour write would not pay


def test_the_session_is_its_system_prompt_tools_and_session_id():
    base = ChatRequest.of("hi", system="You are an agent.")
    tools = ChatRequest(base.messages, system=base.system, tools=(Tool("exec"),))
    other = ChatRequest(base.messages, system=base.system, metadata={"session": "s-2"})
    ids = {warmth.session_id(r) for r in (base, tools, other)}
    assert len(ids) == 3
    assert warmth.session_id(
        ChatRequest.of("bye", system="You are an agent.")
    ) == warmth.session_id(base)


@pytest.mark.parametrize("text", ["", "not json", '{"x": [1]}', "[1]", "7"])
def test_a_damaged_map_reads_as_nothing_warm(text):
    assert warmth.decode(text, NOW) == {}
