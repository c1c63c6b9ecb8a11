"""Fitting a request to a small model: what is kept, what is dropped, and what the user is told."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stellwerk.config import policy_from_dict
from stellwerk.failures import FailureClass
from stellwerk.fit import Fitting, adapt, fit_context, k_tokens, output_room, units
from stellwerk.policy import ContextPolicy, ModelSpec
from stellwerk.tokens import estimate_prompt
from stellwerk.types import (
    ChatRequest,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
)

POLICY = policy_from_dict({}, env={})
QWEN = POLICY.models["ollama/qwen3-4b"]  # 8k window, 4096 max output, tools
R1 = POLICY.models["ollama/deepseek-r1"]  # 16k window, 8192 max output, no tools
CODELLAMA = POLICY.models["ollama/codellama"]  # 16k window, no tools
SYSTEM = "You are a helpful agent. Keep answers short."
TOOL = Tool("read_file", "Read a file", {"type": "object", "properties": {"path": {}}})


def turn(i: int, size: int = 600) -> list[Message]:
    """One user question and its answer, `size` characters each."""
    return [
        Message.of("user", f"question {i}: " + "why is the sky blue? " * (size // 21)),
        Message.of("assistant", f"answer {i}: " + "because of scattering. " * (size // 23)),
    ]


def history(turns: int, size: int = 600) -> tuple[Message, ...]:
    return tuple(m for i in range(turns) for m in turn(i, size))


def tool_exchange(call_id: str) -> list[Message]:
    """An assistant tool call and the result, as an OpenAI client sends them."""
    call = ToolCallPart(call_id, "read_file", '{"path": "notes.md"}')
    return [
        Message("assistant", (call,)),
        Message("tool", (ToolResultPart(call_id, "the notes: " + "x" * 1500),)),
    ]


def request(*messages: Message, **kw: object) -> ChatRequest:
    return ChatRequest(messages=tuple(messages), system=SYSTEM, **kw)  # type: ignore[arg-type]


# -- units -----------------------------------------------------------------------------------


def call(*ids: str) -> Message:
    return Message("assistant", tuple(ToolCallPart(i, "t", "{}") for i in ids))


def result(call_id: str) -> Message:
    return Message("tool", (ToolResultPart(call_id, "done"),))


USER, ANSWER = Message.of("user", "hi"), Message.of("assistant", "hello")


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([USER, ANSWER, USER], [(0, 1), (1, 2), (2, 3)]),
        ([USER, call("a"), result("a"), ANSWER], [(0, 1), (1, 3), (3, 4)]),
        ([USER, call("a", "b"), result("a"), result("b"), USER], [(0, 1), (1, 4), (4, 5)]),
        ([call("a"), USER], [(0, 1), (1, 2)]),  # a call nobody answered stands alone
    ],
)
def test_units_keep_a_tool_call_with_its_results(messages, expected):
    assert units(messages) == expected


def test_anthropic_style_results_in_a_user_turn_stay_with_their_call():
    call = Message("assistant", (ToolCallPart("toolu_1", "read_file", "{}"),))
    result = Message("user", (ToolResultPart("toolu_1", "contents"), TextPart("and then?")))
    assert units([Message.of("user", "go"), call, result]) == [(0, 1), (1, 3)]


# -- fitting the context ---------------------------------------------------------------------


def test_a_request_that_fits_is_left_alone():
    small = request(*history(2))
    fitted = fit_context(small, 8000)
    assert fitted.request is small
    assert not fitted.changed


@pytest.mark.parametrize(("turns", "budget"), [(60, 6000), (30, 3000), (200, 12000)])
def test_keeps_system_and_latest_turns_and_drops_the_oldest(turns, budget):
    long = request(*history(turns))
    fitted = fit_context(long, budget)
    kept = fitted.request.messages
    assert estimate_prompt(fitted.request) <= budget
    assert fitted.request.system == SYSTEM
    assert kept == long.messages[-len(kept) :], "the newest messages, unchanged and in order"
    assert fitted.dropped == len(long.messages) - len(kept)
    assert kept[0].role == "user"
    assert fitted.dropped_tokens > 0


def test_never_splits_a_tool_call_from_its_result():
    messages = [*turn(0), Message.of("user", "read my notes")]
    messages += tool_exchange("call_1") + [Message.of("assistant", "done reading")]
    messages += [*turn(1), Message.of("user", "and now?")]
    for budget in range(400, estimate_prompt(request(*messages)), 50):
        kept = fit_context(request(*messages), budget).request.messages
        ids_called = {p.id for m in kept for p in m.content if isinstance(p, ToolCallPart)}
        ids_answered = {
            p.tool_call_id for m in kept for p in m.content if isinstance(p, ToolResultPart)
        }
        assert ids_called == ids_answered, f"budget {budget}"


def test_a_conversation_cut_before_an_assistant_turn_starts_with_a_note():
    messages = [Message.of("user", "start " * 400), *tool_exchange("c1"), *tool_exchange("c2")]
    messages.append(Message.of("assistant", "all done"))
    fitted = fit_context(request(*messages), 900)
    first = fitted.request.messages[0]
    assert first.role == "user"
    assert "earlier messages left out" in first.text
    assert isinstance(fitted.request.messages[1].content[0], ToolCallPart)


def test_shortens_the_middle_of_a_single_huge_turn():
    huge = "BEGIN " + "lorem ipsum dolor sit amet " * 4000 + " END?"
    fitted = fit_context(request(Message.of("user", huge)), 2000)
    text = fitted.request.messages[0].text
    assert estimate_prompt(fitted.request) <= 2000
    assert text.startswith("BEGIN") and text.endswith("END?")
    assert "characters cut" in text
    assert fitted.shortened >= 1 and fitted.dropped == 0


# -- adapting to a model ---------------------------------------------------------------------


def test_notice_names_what_was_dropped_and_the_window():
    long = request(*history(60, 1200))
    adapted = adapt(long, QWEN)
    (notice,) = adapted.notices
    assert notice.startswith("context fitted: dropped ")
    assert " of 120 messages (≈" in notice
    assert notice.endswith("for ollama/qwen3-4b's 8k window")
    room = output_room(long, QWEN)
    assert adapted.request.max_tokens == room
    assert estimate_prompt(adapted.request) + room <= QWEN.context_window


@pytest.mark.parametrize(
    ("max_tokens", "model", "expected"),
    [(None, QWEN, 2048), (None, R1, 4096), (20_000, QWEN, 4096), (500, QWEN, 500)],
)
def test_output_room_is_what_was_asked_or_a_quarter_of_the_window_capped(
    max_tokens, model, expected
):
    assert output_room(replace(ChatRequest.of("hi"), max_tokens=max_tokens), model) == expected


def test_max_tokens_above_the_models_limit_is_capped_with_a_notice():
    adapted = adapt(replace(request(*turn(0)), max_tokens=20_000), QWEN)
    assert adapted.request.max_tokens == 4096
    assert adapted.notices == ("max_tokens capped to 4096 (ollama/qwen3-4b's limit)",)


def test_tools_are_dropped_for_a_model_without_them_and_history_kept_as_text():
    messages = [Message.of("user", "read my notes"), *tool_exchange("c1")]
    messages.append(Message.of("user", "summarise them"))
    adapted = adapt(request(*messages, tools=(TOOL,), tool_choice="auto"), R1)
    assert adapted.refusal is None
    assert adapted.request.tools == () and adapted.request.tool_choice is None
    assert adapted.notices == ("tools dropped: ollama/deepseek-r1 cannot call tools",)
    texts = [m.text for m in adapted.request.messages]
    assert texts[1] == '[called tool read_file({"path": "notes.md"})]'
    assert texts[2].startswith("[tool result: the notes: ")
    assert adapted.request.messages[2].role == "user"


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "read_file"}])
def test_a_request_that_requires_a_tool_call_cannot_be_served_without_tools(choice):
    adapted = adapt(request(*turn(0), tools=(TOOL,), tool_choice=choice), CODELLAMA)
    assert adapted.refusal == "lacks tools (the request requires a tool call)"


def test_a_model_with_tools_keeps_them():
    original = request(*turn(0), tools=(TOOL,), tool_choice="required")
    adapted = adapt(original, QWEN)
    assert adapted.request.tools == (TOOL,) and adapted.notices == ()


def test_images_become_placeholders_for_a_model_without_vision():
    picture = Message("user", (TextPart("what is this?"), ImagePart(url="https://x/cat.png")))
    adapted = adapt(request(picture), QWEN)
    assert adapted.request.messages[0].text == "what is this?[image omitted]"
    assert adapted.notices == ("images dropped: ollama/qwen3-4b cannot see images",)


# -- across attempts -------------------------------------------------------------------------


def test_fit_policy_fits_every_target():
    fitting = Fitting(ContextPolicy.FIT)
    long = request(*history(60, 1200))
    assert fitting.prepare(long, QWEN).request.messages != long.messages
    assert fitting.notices(QWEN)[0].startswith("context fitted")
    assert fitting.notices(R1) == ()


def test_elsewhere_only_an_overflow_makes_later_small_targets_fitted():
    fitting = Fitting(ContextPolicy.FULL)
    mid = request(*history(12, 1200))  # ≈ 9k estimated: fits r1's 16k window, not after overflow
    assert fitting.prepare(mid, R1).request is mid
    fitting.failed(FailureClass.RATE_LIMIT, R1, mid)
    assert fitting.prepare(mid, CODELLAMA).request is mid, "other failures change nothing"
    fitting.failed(FailureClass.CONTEXT_OVERFLOW, R1, mid)
    fitted = fitting.prepare(mid, CODELLAMA).request  # same 16k window: also small
    assert len(fitted.messages) < len(mid.messages)
    assert estimate_prompt(fitted) < estimate_prompt(mid) * OVERFLOW_SHRINK
    big = _model(R1, context_window=200_000)
    assert fitting.prepare(mid, big).request is mid, "a larger window gets the request as is"


OVERFLOW_SHRINK = 0.9


def _model(base: ModelSpec, **changes: object) -> ModelSpec:
    return replace(base, id="ollama/big", **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tokens", "text"), [(8192, "8k"), (16384, "16k"), (98_000, "98k"), (512, "512")]
)
def test_k_tokens(tokens, text):
    assert k_tokens(tokens) == text
