"""What the providers reject is rejected at the edge, in their words where they are known, before
an attempt is spent (issue 15: 175 of 624 bad values on core fields were accepted)."""

from __future__ import annotations

from typing import Any

import pytest

from stellwerk.errors import RequestError
from stellwerk.server.errors import problem_for
from stellwerk.wire import anthropic, openai

USER = {"role": "user", "content": "hi"}


def oa(**fields: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [USER], **fields}


def an(**fields: Any) -> dict[str, Any]:
    return {"model": "auto", "max_tokens": 100, "messages": [USER], **fields}


OPENAI_BAD = [
    (oa(max_completion_tokens=100, max_tokens=0), "max_tokens", "positive integer"),
    (oa(max_completion_tokens=100, max_tokens="ten"), "max_tokens", "positive integer"),
    (oa(max_completion_tokens=0, max_tokens=100), "max_completion_tokens", "positive integer"),
    (oa(temperature=-0.1), "temperature", "between 0 and 2"),
    (oa(top_p=1.5), "top_p", "between 0 and 1"),
    (
        oa(presence_penalty=3),
        "presence_penalty",
        "decimal above maximum value. Expected a value <= 2, but got 3 instead.",
    ),
    (oa(frequency_penalty=-2.5), "frequency_penalty", "decimal below minimum value"),
    (oa(frequency_penalty="x"), "frequency_penalty", "expected a decimal, but got a string"),
    (
        oa(top_logprobs=21),
        "top_logprobs",
        "integer above maximum value. Expected a value <= 20, but got 21 instead.",
    ),
    (oa(top_logprobs=1.5), "top_logprobs", "expected an integer, but got a decimal"),
    (oa(seed="1"), "seed", "expected an integer, but got a string"),
    (oa(seed=True), "seed", "expected an integer, but got a boolean"),
    (oa(logprobs="yes"), "logprobs", "expected a boolean"),
    (oa(parallel_tool_calls=1), "parallel_tool_calls", "expected a boolean"),
    (oa(user=5), "user", "expected a string, but got an integer"),
    (oa(stream_options="usage"), "stream_options", "expected an object"),
    (
        oa(stop=["a", "b", "c", "d", "e"]),
        "stop",
        "array too long. Expected an array with maximum length 4",
    ),
    (oa(n="1"), "n", "expected an integer"),
]


@pytest.mark.parametrize(("data", "param", "words"), OPENAI_BAD)
def test_openai_rejects_what_openai_rejects(data, param, words):
    with pytest.raises(RequestError) as caught:
        openai.parse_request(data)
    message = str(caught.value)
    assert words in message
    problem = problem_for(caught.value)
    assert (problem.status, problem.param) == (400, param)


@pytest.mark.parametrize(
    "data",
    [
        oa(max_completion_tokens=100, max_tokens=50),
        oa(presence_penalty=-2, frequency_penalty=2, top_logprobs=0, logprobs=True),
        oa(seed=42, user="u1", parallel_tool_calls=False, stream_options=None, n=1),
        oa(stop=["a", "b", "c", "d"], n=None),
    ],
)
def test_openai_accepts_the_edges(data):
    openai.parse_request(data)


def test_openai_max_tokens_is_the_completion_limit_when_both_are_sent():
    assert openai.parse_request(oa(max_completion_tokens=100, max_tokens=50)).max_tokens == 100


ANTHROPIC_BAD = [
    (an(temperature=-1), "temperature: range: 0..1"),
    (an(temperature=1.5), "temperature: range: 0..1"),
    (an(top_p=2), "top_p: range: 0..1"),
    (an(top_k="5"), "top_k: Input should be a valid integer"),
    (an(top_k=1.5), "top_k: Input should be a valid integer"),
    (an(top_k=True), "top_k: Input should be a valid integer"),
    (an(top_k=[1]), "top_k: Input should be a valid integer"),
    (an(top_k=-1), "top_k: Input should be greater than or equal to 0"),
    (an(metadata="x"), "metadata: Input should be a valid dictionary"),
    (an(metadata={"user_id": 5}), "metadata.user_id: Input should be a valid string"),
    (an(metadata={"user_id": "u" * 257}), "metadata.user_id: String should have at most 256"),
    (an(service_tier="gold"), "service_tier: Input should be 'auto' or 'standard_only'"),
    (an(thinking="on"), "thinking: Input should be an object"),
    (
        an(thinking={"type": "enabled", "budget_tokens": 10}),
        "budget_tokens: Input should be greater than or equal to 1024",
    ),
    (
        an(thinking={"type": "enabled", "budget_tokens": 2000}),
        "`max_tokens` must be greater than `thinking.budget_tokens`",
    ),
]


@pytest.mark.parametrize(("data", "words"), ANTHROPIC_BAD)
def test_anthropic_rejects_what_anthropic_rejects(data, words):
    with pytest.raises(RequestError) as caught:
        anthropic.parse_request(data)
    assert words in str(caught.value)
    assert problem_for(caught.value).status == 400


@pytest.mark.parametrize(
    "data",
    [
        an(temperature=0, top_p=1, top_k=0),
        an(temperature=1.0, top_k=40, metadata={"user_id": "u" * 256}),
        an(metadata={}, service_tier="auto", thinking={"type": "disabled"}),
        an(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024}),
    ],
)
def test_anthropic_accepts_the_edges(data):
    anthropic.parse_request(data)
