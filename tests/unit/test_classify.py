"""The task classifier: precedence, directives, heartbeats, rules, and its score on real prompts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import stellwerk.classify.model as classify_module
from stellwerk.classify import Classification, classify
from stellwerk.config import policy_from_dict
from stellwerk.errors import UnknownModelError
from stellwerk.evaluate import evaluate, load_jsonl
from stellwerk.policy import Policy
from stellwerk.types import (
    ChatRequest,
    Message,
    TaskClass,
    Tool,
    ToolCallPart,
    ToolResultPart,
)

DEV = Path(__file__).resolve().parents[3] / "shared" / "routing" / "dev.jsonl"
WEIGHTS = Path(classify_module.__file__).parents[1] / "data" / "classifier.json"

HEARTBEAT = (
    "Read HEARTBEAT.md if it exists (workspace context). Follow it strictly. Do not infer or "
    "repeat old tasks from prior chats. If nothing needs attention, reply HEARTBEAT_OK."
)
NOW = "Current time: Thursday, March 5th, 2026 — 9:12 AM (Europe/Berlin)"
CHECKLIST = (
    "# HEARTBEAT.md\n\n## Every heartbeat\n- [ ] Look for unread mail flagged urgent\n"
    "- [ ] Check that the nightly backup finished:\n```bash\ntail -n 5 ~/backup.log\n```\n"
    "- [ ] If CI on main is red, tell me which job failed\n"
)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return policy_from_dict({})


def ask(policy: Policy, prompt: str, **fields: object) -> Classification:
    return classify(ChatRequest.of(prompt, **fields), policy)  # type: ignore[arg-type]


# -- the text classifier on hand-written prompts ----------------------------------------------

PROMPTS = [
    ("simple", "What is the capital of Australia?"),
    ("simple", "who wrote the novel moby dick"),
    ("simple", "When did the Berlin Wall fall?"),
    ("simple", "Explain what a VPN does."),
    ("simple", "List three countries that border Chile."),
    ("simple", "How do bees make honey?"),
    ("simple", "What does the abbreviation NATO stand for?"),
    ("complex", "Write a short story about a lighthouse keeper who befriends a storm."),
    ("complex", "Compose a persuasive essay arguing for a four-day work week."),
    ("complex", "Pretend you are a medieval blacksmith and describe your day to a visitor."),
    ("complex", "Rewrite this in a more formal tone: hey all, the meeting moved to friday."),
    ("complex", "Draft a cover letter for a junior data analyst job at a logistics firm."),
    ("complex", "What would have happened if the printing press had never been invented?"),
    ("complex", "As a seasoned ship captain, give a rousing speech to your crew before a storm."),
    ("code", "Write a Python function that returns the n-th Fibonacci number."),
    (
        "code",
        'def is_prime(n: int) -> bool:\n    """Return True if n is prime.\n    >>> is_prime(7)\n',
    ),
    ("code", "Why does this throw?\n```js\nconst user = undefined;\nconsole.log(user.name);\n```"),
    ("code", "Implement binary search over a sorted array in Rust."),
    ("code", "Write a SQL query that returns the ten customers with the highest order total."),
    ("code", "Refactor this Java class so it no longer throws a NullPointerException."),
    ("reasoning", "Solve for x: 3x + 7 = 22"),
    ("reasoning", "Maria has 12 apples. She gives a third to Tom and eats 2. How many are left?"),
    ("reasoning", "What is the probability of drawing two aces in a row from a deck of 52 cards?"),
    ("reasoning", "Prove that the square root of 2 is irrational."),
    ("reasoning", "Pens cost $3 and notebooks $5. Lena spends $31 on 7 items. How many notebooks?"),
    ("reasoning", "All bloops are razzies and all razzies are lazzies. Are all bloops lazzies?"),
]


@pytest.mark.parametrize(("expected", "prompt"), PROMPTS)
def test_classifies_hand_written_prompts(policy: Policy, expected: str, prompt: str) -> None:
    result = ask(policy, prompt)
    assert result.task == expected, result.reason
    assert result.source == "classifier"
    assert result.model is None


def test_result_carries_scores_and_a_reason(policy: Policy) -> None:
    result = ask(policy, "Write a Python function that reverses a linked list.")
    assert set(result.scores) == {"heartbeat", "simple", "complex", "code", "reasoning"}
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-3)
    assert result.confidence == pytest.approx(result.scores["code"], abs=1e-3)
    assert 0.5 < result.confidence <= 1.0
    assert result.reason.startswith("code (") and "asks for code" in result.reason


def test_never_returns_emergency(policy: Policy) -> None:
    for prompt in ("emergency mode now", "auto:emergency", "local only please"):
        assert ask(policy, prompt).task is not TaskClass.EMERGENCY


def test_reads_the_last_user_turn(policy: Policy) -> None:
    request = ChatRequest(
        messages=(
            Message.of("user", "Write a sonnet about autumn leaves."),
            Message.of("assistant", "Crimson and gold ..."),
            Message.of("user", "Now write a Python function that counts the syllables in it."),
        ),
        system="You are a helpful assistant. Be concise.",
    )
    assert classify(request, policy).task is TaskClass.CODE


def test_system_prompt_is_read_when_there_is_no_user_turn(policy: Policy) -> None:
    request = ChatRequest(messages=(), system="Write a limerick about a cat who learns to fly.")
    assert classify(request, policy).task is TaskClass.COMPLEX


def test_empty_request_takes_the_default_class(policy: Policy) -> None:
    result = classify(ChatRequest(messages=()), policy)
    assert (result.task, result.source, result.confidence) == (TaskClass.COMPLEX, "default", 0.0)


def test_very_long_prompts_are_classified(policy: Policy) -> None:
    prompt = "Fix the bug in this Python code:\n```python\n" + "x = compute(x)\n" * 20_000 + "```"
    assert ask(policy, prompt).task is TaskClass.CODE


def test_tools_on_offer_say_nothing_about_the_task(policy: Policy) -> None:
    # An agent offers the same tools with every request, heartbeats and greetings included.
    tools = (Tool("exec", "run a shell command"), Tool("edit_file", "edit a file"))
    request = ChatRequest(messages=(Message.of("user", "Say hello in five words."),), tools=tools)
    result = classify(request, policy)
    assert result.scores == ask(policy, "Say hello in five words.").scores
    assert result.task is TaskClass.SIMPLE


def test_works_without_shipped_weights(policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classify_module, "_model", lambda: None)
    assert ask(policy, "Write a Python function to merge two sorted lists.").task is TaskClass.CODE
    assert ask(policy, HEARTBEAT).task is TaskClass.HEARTBEAT


def test_a_blank_user_turn_reads_the_system_prompt(policy: Policy) -> None:
    request = ChatRequest(
        messages=(Message.of("user", " \n\t "),), system="Write a limerick about a cat."
    )
    result = classify(request, policy)
    assert result.task is TaskClass.COMPLEX
    assert "writing task" in result.reason


SIGNALS = [  # (class, the signal that must speak for it, prompt)
    ("complex", "writing task", "- Write a short poem about rain."),
    ("complex", "writing task", "**Write** a haiku about the sea."),
    ("simple", "lookup", "> List the planets of the solar system."),
    ("simple", "lookup", "(Name three rivers in Peru.)"),
    ("simple", "extraction", '"Extract the dates from this text: the meeting is on May 3."'),
    ("complex", "counterfactual", "What if the Roman Empire had never fallen?"),
    ("complex", "counterfactual", "How would life be different if the internet had not existed?"),
    ("reasoning", "equation", "Let f(x) = x^y. What is f evaluated at y?"),
    ("reasoning", "word problem", "Tom has 12 apples and eats 5. How many are left?"),
    ("code", "code syntax", "const double = (x) => { return x * 2; }"),
    ("code", "code syntax", "function add(a, b) { return a + b }"),
]


@pytest.mark.parametrize(("expected", "signal", "prompt"), SIGNALS)
def test_rules_fire_behind_markup_and_in_each_phrasing(
    policy: Policy, expected: str, signal: str, prompt: str
) -> None:
    result = ask(policy, prompt)
    assert result.task == expected, result.reason
    assert signal in result.reason


# -- heartbeats in the shapes agents send them -------------------------------------------------

HEARTBEATS = {
    "default prompt": HEARTBEAT,
    "with current time": f"{HEARTBEAT}\n{NOW}",
    "with workspace path": (
        f"{HEARTBEAT}\nWhen reading HEARTBEAT.md, use workspace file "
        f"/home/ada/.openclaw/workspace/HEARTBEAT.md (exact case).\n{NOW}"
    ),
    "queued system events": (
        "System: [2026-03-05 09:10:02 CET] Exec completed (a1b2c3d4, code 0) :: backup done\n"
        "System: [2026-03-05 09:11:40 CET] Exec completed (e5f6a7b8, code 1) :: disk 91% full\n"
        f"\n{HEARTBEAT}\n{NOW}"
    ),
    "runtime events block": (
        "## Runtime System Events (gateway-generated)\nTreat this as gateway metadata.\n\n"
        "- [2026-03-05 09:10:02 CET] Exec completed (a1b2c3d4, code 0) :: 3 files synced\n"
        f"\n{HEARTBEAT}\n{NOW}"
    ),
    "metadata block": (
        'Conversation info (untrusted metadata):\n```json\n{"message_id": "4242", '
        '"sender": "Ada", "timestamp": "2026-03-05 09:12:00 CET"}\n```\n\n'
        f"{HEARTBEAT}\n{NOW}"
    ),
    "checklist appended": f"{HEARTBEAT}\n\n{CHECKLIST}",
    "long exec output first": (
        "System: [2026-03-05 09:10:02 CET] Exec completed (a1b2c3d4, code 0) :: "
        + "def handler(event):\n    return process(event)\n" * 400
        + f"\n{HEARTBEAT}\n{NOW}"
    ),
    "scheduled check template": (
        "# Heartbeat Check\n\nCurrent time: 2026-03-05 09:12:00\n\nThis is a scheduled heartbeat "
        "check. Go through the tasks below and act where needed. When nothing needs "
        f"attention, answer only with HEARTBEAT_OK\n\n{CHECKLIST}"
    ),
    "periodic tasks without the reply token": (
        "You are running the periodic heartbeat tasks. Work through the list and report what "
        f"you did in one or two sentences.\n\n{CHECKLIST}"
    ),
    "cron payload": (
        "Inbox sweep: read ~/inbox/queue.jsonl and handle every entry marked new, oldest first. "
        "If the queue is empty, reply HEARTBEAT_OK."
    ),
}


@pytest.mark.parametrize("prompt", HEARTBEATS.values(), ids=HEARTBEATS.keys())
def test_recognises_heartbeats(policy: Policy, prompt: str) -> None:
    result = ask(policy, prompt)
    assert result.task is TaskClass.HEARTBEAT
    assert result.confidence > 0.99
    assert result.reason.startswith("heartbeat prompt (")


def test_heartbeat_reason_names_the_signal(policy: Policy) -> None:
    assert "HEARTBEAT_OK" in ask(policy, f"{HEARTBEAT}\n{NOW}").reason


def test_heartbeat_runner_system_prompt(policy: Policy) -> None:
    system = f"{HEARTBEAT}\n{NOW}\nKeep the answer short."
    request = ChatRequest.of("tick", system=system)
    assert classify(request, policy).task is TaskClass.HEARTBEAT


def test_agent_system_prompt_that_explains_heartbeats_is_no_heartbeat(policy: Policy) -> None:
    system = (
        "You are a personal assistant running inside an agent gateway.\n"
        + "## Tools\n- exec: run shell commands\n- browser: fetch pages\n" * 40
        + "## Heartbeats\nIf you receive a heartbeat poll and nothing needs attention, "
        "reply exactly: HEARTBEAT_OK\n"
    )
    request = ChatRequest.of("Write a Python function that parses ISO dates.", system=system)
    assert classify(request, policy).task is TaskClass.CODE


def test_no_heartbeat_without_a_heartbeat_signal(policy: Policy) -> None:
    prompt = "System: [2026-03-05 09:10:02 CET] Exec completed (a1b2c3d4, code 0) :: done."
    result = ask(policy, prompt)
    assert result.task is not TaskClass.HEARTBEAT
    assert result.scores["heartbeat"] < 0.01


def test_user_rule_can_mark_a_custom_heartbeat(policy: Policy) -> None:
    rules = [{"task": "heartbeat", "pattern": r"^\[cron:inbox\]", "weight": 3}]
    custom = policy_from_dict({"classifier": {"rules": rules}})
    prompt = "[cron:inbox] Go through the inbox and tidy it up."
    assert ask(policy, prompt).task is not TaskClass.HEARTBEAT
    assert ask(custom, prompt).task is TaskClass.HEARTBEAT


def test_a_text_sent_again_is_classified_as_the_first_time(policy: Policy) -> None:
    """An agent sends its human turn again with every step of a tool loop, and the same
    heartbeat prompt every time: what was read of a text is reused, and nothing one request
    added to it (a user rule that fired, a heartbeat's signals) stays with it for the next."""
    rules = [{"task": "heartbeat", "pattern": r"^\[cron:inbox\]", "weight": 3}]
    custom = policy_from_dict({"classifier": {"rules": rules}})
    texts = (HEARTBEAT, "[cron:inbox] Go through the inbox and tidy it up.", "What is 7 * 8?")
    for text in texts:
        first, with_rule = ask(policy, text), ask(custom, text)
        again = ask(policy, text)
        assert (again.task, again.reason, again.scores) == (first.task, first.reason, first.scores)
        assert ask(custom, text).reason == with_rule.reason
    assert ask(custom, texts[1]).task is TaskClass.HEARTBEAT
    assert ask(policy, texts[1]).task is not TaskClass.HEARTBEAT


def test_a_question_about_the_heartbeat_file_is_no_heartbeat(policy: Policy) -> None:
    result = ask(policy, "Add a check for expiring TLS certificates to my HEARTBEAT.md file.")
    assert result.task is not TaskClass.HEARTBEAT


# -- precedence: explicit > directive > model field > classifier -------------------------------


def test_explicit_class_in_the_model_field(policy: Policy) -> None:
    result = ask(policy, f"{HEARTBEAT}\n{NOW}", model="auto:code")
    assert (result.task, result.source, result.confidence) == (TaskClass.CODE, "explicit", 1.0)
    assert result.reason == "explicit: auto:code"
    assert result.model is None


def test_explicit_class_from_the_task_header(policy: Policy) -> None:
    request = ChatRequest(messages=(Message.of("user", "Write a haiku."),), task="reasoning")
    result = classify(request, policy)
    assert (result.task, result.source) == (TaskClass.REASONING, "explicit")
    assert "task header reasoning" in result.reason


def test_explicit_class_beats_a_directive(policy: Policy) -> None:
    result = ask(policy, "/model opus\nWrite a Python script.", model="auto:simple")
    assert (result.task, result.source, result.model) == (TaskClass.SIMPLE, "explicit", None)
    assert "/model opus" in result.reason and "ignored" in result.reason


def test_slash_model_directive(policy: Policy) -> None:
    result = ask(policy, "/model haiku\nWrite a Python function that sums a list.")
    assert result.source == "directive"
    assert result.model == "anthropic/claude-haiku-4-5"
    assert result.task is TaskClass.CODE  # still classified, for the stats
    assert "/model haiku" in result.reason


def test_model_line_directive_in_the_user_turn(policy: Policy) -> None:
    result = ask(policy, "# Model: opus\nWrite an essay on the history of the bicycle.")
    assert (result.source, result.model) == ("directive", "anthropic/claude-opus-4-6")
    assert result.task is TaskClass.COMPLEX


def test_model_line_directive_in_the_system_prompt(policy: Policy) -> None:
    result = ask(policy, "What is the capital of Peru?", system="Be brief.\n# Model: haiku")
    assert (result.source, result.model) == ("directive", "anthropic/claude-haiku-4-5")


def test_directive_can_name_a_class(policy: Policy) -> None:
    result = ask(policy, "/model auto:reasoning\nHow many weekdays are in March 2026?")
    assert (result.task, result.source, result.model) == (TaskClass.REASONING, "directive", None)


def test_directive_beats_a_model_in_the_model_field(policy: Policy) -> None:
    result = ask(policy, "/model haiku\nHello there", model="sonnet")
    assert (result.source, result.model) == ("directive", "anthropic/claude-haiku-4-5")


def test_unknown_alias_in_a_directive_is_ignored(policy: Policy) -> None:
    result = ask(policy, "/model hiaku\nWrite a Python function that sums a list.")
    assert (result.task, result.source, result.model) == (TaskClass.CODE, "classifier", None)
    assert "'/model hiaku' ignored: unknown model" in result.reason
    assert "did you mean haiku?" in result.reason


def test_a_model_in_the_model_field_starts_the_chain(policy: Policy) -> None:
    result = ask(policy, "Write a Python function that sums a list.", model="sonnet")
    assert (result.source, result.model) == ("model", "anthropic/claude-sonnet-4-5")
    assert result.task is TaskClass.CODE


def test_a_named_model_keeps_the_class_the_text_has(policy: Policy) -> None:
    """A request that names its model is still classified by its text: the class is what the
    ledger, the stats and `task:` budgets show, and it picks the class's cache TTL. All that
    the classification carries is the same as with `auto`, the reason naming the model first."""
    request = ChatRequest(
        messages=(
            Message.of("user", "/model hiaku\nWrite a Python function that sums a list."),
            Message("assistant", (ToolCallPart("c1", "exec", "{}"),)),
            Message("tool", (ToolResultPart("c1", "ok"),)),
        ),
        model="sonnet",
    )
    named, auto = classify(request, policy), classify(replace(request, model="auto"), policy)
    assert (named.task, named.source, named.model) == (
        TaskClass.CODE,
        "model",
        "anthropic/claude-sonnet-4-5",
    )
    assert named.reason == f"model field names anthropic/claude-sonnet-4-5; {auto.reason}"
    assert auto.reason.startswith("code (") and auto.reason.endswith("; continues a tool loop")
    assert "'/model hiaku' ignored: unknown model" in auto.reason
    assert (named.scores, named.reading, named.directive) == (
        auto.scores,
        auto.reading,
        auto.directive,
    )
    assert named.directive == "/model hiaku" and named.notices == auto.notices != ()
    assert named.reading.continuation and named.confidence == auto.confidence


def test_a_model_id_in_the_model_field(policy: Policy) -> None:
    result = ask(policy, "hello", model="anthropic/claude-opus-4-6")
    assert (result.source, result.model) == ("model", "anthropic/claude-opus-4-6")


def test_unknown_model_in_the_model_field_raises(policy: Policy) -> None:
    with pytest.raises(UnknownModelError, match=r"unknown model 'claude-sonet-4-5'.*did you mean"):
        ask(policy, "hello", model="claude-sonet-4-5")


@pytest.mark.parametrize("model", ["auto:cod", "auto:", "AUTO:nonsense"])
def test_unknown_class_in_auto_raises(policy: Policy, model: str) -> None:
    with pytest.raises(UnknownModelError, match="unknown task class"):
        ask(policy, "hello", model=model)


def test_unknown_class_suggests_the_closest(policy: Policy) -> None:
    with pytest.raises(UnknownModelError, match=r"did you mean auto:code\?"):
        ask(policy, "hello", model="auto:cod")


def test_auto_in_the_task_header_classifies(policy: Policy) -> None:
    request = ChatRequest(messages=(Message.of("user", "Write a haiku about rain."),), task="auto")
    assert classify(request, policy).source == "classifier"


def test_unknown_class_in_the_task_header_raises(policy: Policy) -> None:
    request = ChatRequest(messages=(Message.of("user", "hi"),), task="poetry")
    with pytest.raises(UnknownModelError, match="poetry"):
        classify(request, policy)


# -- confidence, default class and user rules ---------------------------------------------------


def test_low_confidence_takes_the_default_class() -> None:
    unsure = policy_from_dict({"routing": {"min_confidence": 1.0, "default_task": "simple"}})
    result = ask(unsure, "Tell me about the ocean.")
    assert (result.task, result.source) == (TaskClass.SIMPLE, "default")
    assert "classifier unsure (leaned" in result.reason and "default simple" in result.reason


def test_confident_results_keep_their_class(policy: Policy) -> None:
    assert ask(policy, "Solve for x: 2x - 4 = 10").source == "classifier"


def test_user_rule_changes_the_outcome(policy: Policy) -> None:
    prompt = "What is the boiling point of water at sea level?"
    assert ask(policy, prompt).task is TaskClass.SIMPLE
    rules = [{"task": "reasoning", "pattern": r"(?i)\bboiling point\b", "weight": 8}]
    custom = policy_from_dict({"classifier": {"rules": rules}})
    result = ask(custom, prompt)
    assert result.task is TaskClass.REASONING
    assert r"rule /(?i)\bboiling point\b/" in result.reason


def test_user_rule_with_negative_weight_vetoes_a_class() -> None:
    rules = [{"task": "code", "pattern": "terraform", "weight": -20}]
    custom = policy_from_dict({"classifier": {"rules": rules}})
    result = ask(custom, "Write a Python script that runs terraform plan for every workspace.")
    assert result.task is not TaskClass.CODE


# -- the shipped weights and the dev set ---------------------------------------------------------


def test_weight_file_is_small_and_holds_no_prompt_text() -> None:
    assert WEIGHTS.stat().st_size < 1_500_000
    data = json.loads(WEIGHTS.read_text("utf-8"))
    assert data["classes"] == ["heartbeat", "simple", "complex", "code", "reasoning"]
    assert max(len(feature.split()) for feature in data["weights"]) <= 2
    assert max(len(feature) for feature in data["weights"]) < 80


@pytest.mark.skipif(not DEV.is_file(), reason="../shared/routing/dev.jsonl is not present")
def test_dev_set_macro_f1_is_above_the_floor(policy: Policy) -> None:
    report = evaluate(load_jsonl(DEV), policy)
    assert report.macro_f1 >= 0.88, report.render()
    assert report.per_class["heartbeat"].recall >= 0.95, report.render()


# -- general signals that carry over to prompts of other sources --------------------------------


@pytest.mark.parametrize("prompt", ["What is 2+2", "what is 17 * 23?", "12 / 4"])
def test_a_bare_arithmetic_question_is_simple(policy: Policy, prompt: str) -> None:
    assert ask(policy, prompt).task is TaskClass.SIMPLE


@pytest.mark.parametrize(
    "prompt",
    [
        "Explain in detail how TCP congestion control works",
        "Describe in depth how a refrigerator keeps food cold",
    ],
)
def test_asking_for_depth_is_complex(policy: Policy, prompt: str) -> None:
    assert ask(policy, prompt).task is TaskClass.COMPLEX


def test_a_short_summary_request_is_simple_or_complex(policy: Policy) -> None:
    result = ask(policy, "Summarise RFC 9110 in three sentences")
    assert result.task in (TaskClass.SIMPLE, TaskClass.COMPLEX)


@pytest.mark.parametrize(
    ("prompt", "task"),
    [
        ("Solve this exercise in Haskell: reverse the words of a sentence.", TaskClass.CODE),
        ("get the last item of the list `xs`", TaskClass.CODE),
        ("Find me recent news about the Mars rover.", TaskClass.SIMPLE),
        (
            "If it rains, the match is cancelled. If the match is cancelled, we stay home. "
            "Either it rains or the sun shines. Can we conclude that we stay home?",
            TaskClass.REASONING,
        ),
        ("How many ping-pong balls would it take to fill a school bus?", TaskClass.REASONING),
    ],
)
def test_general_signals(policy: Policy, prompt: str, task: TaskClass) -> None:
    assert ask(policy, prompt).task is task
