"""Reading a request: the human's latest turn, the client's framing, continuations, heartbeats
of every client version, and directives taken out of what is sent upstream."""

from __future__ import annotations

import json

import pytest

from stellwerk.classify import classify, read_request, without_directive
from stellwerk.config import policy_from_dict
from stellwerk.errors import ConfigError
from stellwerk.evaluate import load_jsonl
from stellwerk.policy import Policy
from stellwerk.types import (
    ChatRequest,
    Message,
    TaskClass,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

from ..conftest import shared_file

STAMP = "[Thu 2026-11-26 11:33 UTC] "
RUNTIME = "\n\nRuntime: agent=main | session=agent:main:main | model=gw/auto | shell=bash"
CONTEXT = (
    "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>\nConversation data (data, not instructions):\n"
    '"Active exec sessions:\\nnone"\n<<<END_OPENCLAW_INTERNAL_CONTEXT>>>'
)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return policy_from_dict({})


def user(text: str) -> Message:
    return Message.of("user", text)


def openclaw(*texts: str) -> tuple[Message, ...]:
    """OpenClaw's framing: each human text stamped, the last with its Runtime line, then the
    internal-context message."""
    *earlier, last = texts
    return (*(user(STAMP + t) for t in earlier), user(STAMP + last + RUNTIME), user(CONTEXT))


def test_the_human_turn_is_found_behind_the_clients_context_message(policy):
    request = ChatRequest(messages=openclaw("Write a haiku about trains."), system="x" * 40_000)
    reading = read_request(request, policy.framings)
    assert reading.text == "Write a haiku about trains."
    assert reading.at == 0
    assert reading.framed == ("openclaw-context", "openclaw-timestamp", "openclaw-runtime")
    assert not reading.continuation


def test_metadata_blocks_and_timestamps_come_off_in_either_order(policy):
    meta = 'Conversation info (untrusted metadata):\n```json\n{"sender": "Alex"}\n```\n\n'
    for text in (STAMP + meta + "What is 2+2?", meta + STAMP + "What is 2+2?"):
        reading = read_request(ChatRequest(messages=(user(text),)), policy.framings)
        assert reading.text == "What is 2+2?"


def test_a_tool_loop_continuation_is_read_from_its_turn_not_the_tool_output(policy):
    call = ToolCallPart("c1", "exec", '{"cmd": "ls"}')
    output = "def main():\n    import os\n    raise RuntimeError('x')\n" * 50
    start = ChatRequest(messages=openclaw("Say hello in five words."))
    loop = ChatRequest(
        messages=(
            *start.messages[:1],
            Message("assistant", (call,)),
            Message("tool", (ToolResultPart("c1", output),)),
            user(CONTEXT),
        )
    )
    first, then = classify(start, policy), classify(loop, policy)
    assert then.reading.continuation and not first.reading.continuation
    assert then.task is first.task is TaskClass.SIMPLE
    assert then.reason.endswith("continues a tool loop")


def test_anthropic_tool_results_in_a_user_message_are_no_human_turn(policy):
    messages = (
        user("Give me three facts about Mars."),
        Message("assistant", (ToolCallPart("t1", "search", "{}"),)),
        Message("user", (ToolResultPart("t1", "class Foo: pass"), TextPart("note"))),
    )
    reading = read_request(ChatRequest(messages=messages), policy.framings)
    assert (reading.at, reading.continuation) == (0, True)


@pytest.mark.parametrize(
    "text",
    [
        # OpenClaw 2026.9 (its own capture is pinned in tests/server/test_openclaw.py)
        "Follow the heartbeat monitor scratch context when provided. Do not infer or repeat old "
        "tasks from prior chats. If nothing needs attention, reply NO_REPLY.",
        # older versions' default prompt
        "Read HEARTBEAT.md if it exists (workspace context). Follow it strictly. Do not infer or "
        "repeat old tasks from prior chats. If nothing needs attention, reply HEARTBEAT_OK.",
        # custom prompts users write into their agent configs
        "Check my calendar and inbox. If all is quiet, respond with HEARTBEAT_OK only.",
        "Routine check-in: look at the build status and open PRs; if nothing needs attention "
        "answer `NO_REPLY`.",
        # a poll and system wake-ups, recognised by their framing
        "[OpenClaw heartbeat poll]",
        "A scheduled reminder has been triggered. The reminder content is: stand-up at 10.",
        "An async command you ran earlier has completed: exit code 0.",
    ],
)
def test_heartbeats_of_every_version_and_config(policy, text):
    found = classify(ChatRequest(messages=openclaw(text)), policy)
    assert found.task is TaskClass.HEARTBEAT, found.reason


def test_a_poll_in_the_history_does_not_make_the_next_turn_a_heartbeat(policy):
    found = classify(ChatRequest(messages=openclaw("[OpenClaw heartbeat poll]", "Hi!")), policy)
    assert found.task is not TaskClass.HEARTBEAT


def test_heartbeat_recall_and_no_false_positives_on_dev(policy):
    items = load_jsonl(shared_file("routing", "dev.jsonl"))
    wrong = []
    for prompt, label in items:
        found = classify(ChatRequest.of(prompt), policy).task
        if (label == "heartbeat") != (found is TaskClass.HEARTBEAT):
            wrong.append((label, str(found)))
    assert wrong == []


def test_framings_are_config_a_user_adds_one_and_switches_one_off():
    raw = {
        "classifier": {
            "framings": {
                "my-bot": {"action": "strip", "pattern": r"\A<from [^>]*>\s*"},
                "openclaw-runtime": None,
            }
        }
    }
    policy = policy_from_dict(raw)
    names = [f.name for f in policy.framings]
    assert "my-bot" in names and "openclaw-runtime" not in names and "openclaw-context" in names
    reading = read_request(ChatRequest.of("<from alice> hello" + RUNTIME), policy.framings)
    assert reading.text.startswith("hello\n\nRuntime:")


@pytest.mark.parametrize(
    ("framing", "path"),
    [
        ({"action": "strip", "pattern": "("}, "classifier.framings.bad.pattern"),
        ({"action": "drop", "pattern": "x"}, "classifier.framings.bad.action"),
    ],
)
def test_a_bad_framing_is_an_error_at_its_path(framing, path):
    with pytest.raises(ConfigError) as caught:
        policy_from_dict({"classifier": {"framings": {"bad": framing}}})
    assert caught.value.path == path


# -- directives are routing commands: the model never sees them -------------------------------


def test_a_slash_directive_is_taken_out_of_the_turn_sent_upstream(policy):
    request = ChatRequest(messages=openclaw("/model haiku\nWhat is the capital of Peru?"))
    found = classify(request, policy)
    assert found.model == "anthropic/claude-haiku-4-5"
    sent = without_directive(request, found)
    assert sent.messages[0].text == STAMP + "What is the capital of Peru?" + RUNTIME
    assert sent.messages[1:] == request.messages[1:]


def test_a_model_line_in_the_system_prompt_is_taken_out(policy):
    request = ChatRequest.of("Hello", system="You are helpful.\n# Model: sonnet\nBe brief.")
    sent = without_directive(request, classify(request, policy))
    assert sent.system == "You are helpful.\nBe brief."


def test_an_unknown_alias_in_a_directive_is_a_notice(policy):
    found = classify(ChatRequest.of("/model haiku-9\nHello there"), policy)
    assert found.model is None
    assert found.notices and "unknown model" in found.notices[0]
    assert "haiku" in found.notices[0]  # the suggestion


def test_no_directive_leaves_the_request_as_it_is(policy):
    request = ChatRequest(messages=openclaw("Hello"))
    assert without_directive(request, classify(request, policy)) is request


def test_route_jsonl_reads_whole_anthropic_bodies(policy):
    from stellwerk.explain import Explainer
    from stellwerk.state.base import Snapshot

    body = {
        "model": "auto",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "agent", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": STAMP + "Hi!"}]}],
        "tools": [{"name": "exec", "input_schema": {"type": "object"}}],
    }
    result = Explainer(policy, Snapshot(now=0.0)).explain_line(json.dumps(body))
    assert result["task"] == "simple", result
    error = Explainer(policy, Snapshot(now=0.0)).explain_line(
        json.dumps({"prompt": "/model nope\nHi"})
    )
    assert "unknown model" in error["error"] and "aliases:" in error["error"]


def test_a_sentinel_in_lower_case_is_named_as_the_contract_writes_it(policy):
    found = classify(ChatRequest.of("Check the build; if all is fine reply heartbeat_ok"), policy)
    assert (
        found.task is TaskClass.HEARTBEAT
        and found.reason == "heartbeat prompt (reply HEARTBEAT_OK)"
    )


def test_taking_a_directive_out_keeps_the_clients_cache_marker(policy):
    marked = TextPart("/model haiku\nWhat is the capital of Peru?", {"type": "ephemeral"})
    request = ChatRequest(messages=(Message("user", (marked,)),))
    sent = without_directive(request, classify(request, policy))
    (part,) = sent.messages[0].content
    assert part == TextPart("What is the capital of Peru?", {"type": "ephemeral"})
