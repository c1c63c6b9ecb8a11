"""Scoring the classifier on labelled prompts: metrics, the report, and reading JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stellwerk.config import policy_from_dict
from stellwerk.evaluate import EvalReport, evaluate, load_jsonl, score


def test_metrics_of_a_small_confusion() -> None:
    gold = ["code", "code", "code", "simple", "simple", "reasoning"]
    predicted = ["code", "code", "simple", "simple", "code", "reasoning"]
    report = score(gold, predicted)
    assert report.total == 6
    assert report.accuracy == pytest.approx(4 / 6)
    code = report.per_class["code"]
    assert code.precision == pytest.approx(2 / 3)
    assert code.recall == pytest.approx(2 / 3)
    assert code.f1 == pytest.approx(2 / 3)
    assert code.support == 3
    assert report.per_class["simple"].f1 == pytest.approx(0.5)
    assert report.per_class["reasoning"].f1 == 1.0
    assert report.macro_f1 == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert report.confusion["code"] == {"code": 2, "simple": 1}
    assert report.confusion["simple"] == {"simple": 1, "code": 1}


def test_labels_follow_the_class_order_and_skip_absent_classes() -> None:
    report = score(["reasoning", "heartbeat"], ["reasoning", "complex"])
    assert report.labels == ("heartbeat", "complex", "reasoning")
    assert report.per_class["complex"].support == 0
    assert report.per_class["heartbeat"].recall == 0.0


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        score(["code", "simple"], ["code"])


def test_evaluate_classifies_every_prompt() -> None:
    items = [
        ("Write a Python function that checks whether a string is a palindrome.", "code"),
        ("Solve for x: 5x - 3 = 12", "reasoning"),
        ("Who painted the Mona Lisa?", "simple"),
        (
            "Read HEARTBEAT.md if it exists. If nothing needs attention, reply HEARTBEAT_OK.",
            "heartbeat",
        ),
        ("Write a poem about the sea at night.", "complex"),
    ]
    report = evaluate(items, policy_from_dict({}))
    assert report.total == 5
    assert report.accuracy == 1.0
    assert report.macro_f1 == 1.0
    assert report.defaulted == 0


def test_evaluate_counts_defaulted_items() -> None:
    unsure = policy_from_dict({"routing": {"min_confidence": 1.0}})
    report = evaluate([("Tell me about rivers.", "simple")], unsure)
    assert report.defaulted == 1
    assert report.confusion["simple"] == {"complex": 1}


def sample() -> EvalReport:
    return score(["code", "simple", "simple"], ["code", "simple", "complex"], defaulted=1)


def test_render_is_a_readable_table() -> None:
    text = sample().render()
    assert "3 prompts  accuracy 0.667  macro-F1" in text
    assert "default class applied to 1" in text
    lines = text.splitlines()
    assert any(line.startswith("simple") and line.rstrip().endswith("2") for line in lines)
    assert "confusion (rows: label, columns: predicted)" in text


def test_to_json_is_plain_data() -> None:
    data = sample().to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["total"] == 3 and data["defaulted"] == 1
    assert data["per_class"]["code"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert data["confusion"]["simple"] == {"simple": 1, "complex": 1}


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_load_jsonl_reads_prompt_and_label(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        json.dumps({"id": "a", "prompt": "Who wrote Faust?", "label": "simple", "source": "x"}),
        "",
        json.dumps({"prompt": "def f(x):", "label": "code"}),
    )
    assert load_jsonl(path) == [("Who wrote Faust?", "simple"), ("def f(x):", "code")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('["prompt", "label"]', "line 2: expected an object"),
        ('{"label": "code"}', "line 2: 'prompt' must be a string"),
        ('{"prompt": "hi", "label": "poetry"}', "line 2: 'label' must be one of heartbeat"),
        ('{"prompt": "hi"}', "line 2: 'label' must be one of"),
    ],
)
def test_load_jsonl_names_the_bad_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, json.dumps({"prompt": "ok", "label": "simple"}), line)
    with pytest.raises(ValueError, match=message):
        load_jsonl(path)
