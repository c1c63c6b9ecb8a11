"""`stellwerk stats` and `stellwerk log`: pure aggregation over ledger rows, as tables.

Prices are the default catalog's: gpt-4o-mini $0.15/$0.60, haiku-4-5 $1/$5, sonnet-4-0 (the
default primary) $3/$15 per million input/output tokens; local models are free.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from stellwerk.config import policy_from_dict
from stellwerk.ledger import Ledger, MemoryLedger, Row
from stellwerk.stats import aggregate, parse_since, percentile, render_stats, stats_json, usd
from stellwerk.tail import follow, log_line

POLICY = policy_from_dict({})
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
MINI, HAIKU, SONNET, QWEN = (
    "openai/gpt-4o-mini",
    "anthropic/claude-haiku-4-5",
    "anthropic/claude-sonnet-4-0",
    "ollama/qwen3-4b",
)

NOT_ROUTED = {"routed": 0, "routed_saved_micros": 0, "routed_from": {}}  # no cache-aware change


def row(
    task: str = "simple",
    answered_by: str | None = MINI,
    tokens: tuple[int, int] = (1000, 500),
    *,
    cost: int | None = None,
    latency: float = 100.0,
    failures: tuple[tuple[str, str], ...] = (),
    mode: str = "auto",
    shadow_first: str | None = None,
    partial: str | None = None,
    estimated: bool = False,
    request_id: str = "req_x",
    client: str = "openai",
    ts: float = NOW,
    error: str | None = None,
    cache: tuple[int, int, int] = (0, 0, 0),  # read, written, of that written for 1 h
) -> Row:
    model = answered_by or partial
    if cost is None:
        cost = POLICY.models[model].cost_micros(*tokens) if model else 0
    return Row(
        ts=ts,
        request_id=request_id,
        client=client,
        task=task,
        source="classifier",
        mode=mode,
        routed_as=task,
        shadow_first=shadow_first,
        answered_by=answered_by,
        model=model,
        provider=model.partition("/")[0] if model else None,
        upstream_model=None,
        attempts=len(failures) + (1 if answered_by else 0),
        fallback=answered_by is not None and bool(failures),
        failures=failures,
        input_tokens=tokens[0] if model else 0,
        output_tokens=tokens[1] if model else 0,
        estimated=estimated,
        cost_micros=cost,
        latency_ms=latency,
        error=error,
        cache_read_tokens=cache[0],
        cache_write_tokens=cache[1],
        cache_write_1h_tokens=cache[2],
    )


def stats(rows: list[Row]):
    return aggregate(rows, POLICY, NOW - 86400, NOW)


# -- totals and groups -------------------------------------------------------------------------


def test_totals_count_every_request_answered_or_not():
    report = stats(
        [
            row(),
            row("code", HAIKU),
            row(answered_by=None, error="all targets failed", failures=((MINI, "server"),)),
        ]
    )
    assert (report.requests, report.answered, report.errors) == (3, 2, 1)
    assert (report.input_tokens, report.output_tokens) == (2000, 1000)
    assert report.cost_micros == 450 + 3500


def test_groups_per_task_model_and_provider_sorted_by_cost():
    rows = [row("simple"), row("simple"), row("code", HAIKU), row("heartbeat", QWEN)]
    report = stats(rows)
    by_task = {
        g.name: (g.requests, g.input_tokens, g.output_tokens, g.cost_micros) for g in report.by_task
    }
    assert by_task == {
        "simple": (2, 2000, 1000, 900),
        "code": (1, 1000, 500, 3500),
        "heartbeat": (1, 1000, 500, 0),
    }
    assert [g.name for g in report.by_task] == ["code", "simple", "heartbeat"]
    assert [(g.name, g.requests, g.cost_micros) for g in report.by_model] == [
        (HAIKU, 1, 3500),
        (MINI, 2, 900),
        (QWEN, 1, 0),
    ]
    assert [(g.name, g.cost_micros) for g in report.by_provider] == [
        ("anthropic", 3500),
        ("openai", 900),
        ("ollama", 0),
    ]


def test_unanswered_requests_count_per_class_but_not_per_model():
    report = stats([row(), row(answered_by=None, error="no route")])
    assert [(g.name, g.requests) for g in report.by_task] == [("simple", 2)]
    assert [(g.name, g.requests) for g in report.by_model] == [(MINI, 1)]


def test_a_stream_cut_off_mid_answer_is_charged_to_its_model_and_counted_as_estimated():
    cut = row(answered_by=None, partial=HAIKU, tokens=(300, 40), estimated=True, error="broke")
    report = stats([row(), cut])
    assert report.estimated == 1
    haiku = next(g for g in report.by_model if g.name == HAIKU)
    assert (haiku.requests, haiku.input_tokens, haiku.output_tokens) == (1, 300, 40)
    assert haiku.p50_ms is None  # no answer: no latency to report


# -- latency -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.5, 7.0),
        ([7.0], 0.95, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        ([float(i) for i in range(1, 101)], 0.5, 50.0),
        ([float(i) for i in range(1, 101)], 0.95, 95.0),
        ([float(i) for i in range(1, 21)], 0.95, 19.0),
    ],
)
def test_percentile_is_nearest_rank(values, fraction, expected):
    assert percentile(values, fraction) == expected


def test_p50_and_p95_per_model_use_the_answering_attempts_latency():
    rows = [row(latency=float(ms)) for ms in range(10, 210, 10)]  # 10 … 200 ms
    rows += [row(answered_by=HAIKU, latency=900.0)]
    report = stats(rows)
    mini = next(g for g in report.by_model if g.name == MINI)
    assert (mini.p50_ms, mini.p95_ms) == (100.0, 190.0)
    haiku = next(g for g in report.by_model if g.name == HAIKU)
    assert (haiku.p50_ms, haiku.p95_ms) == (900.0, 900.0)
    assert all(g.p50_ms is None for g in report.by_task)


# -- fallbacks and failures --------------------------------------------------------------------


def test_fallback_rate_and_the_failure_classes_behind_it():
    rows = [
        row(),
        row(),
        row(answered_by=HAIKU, failures=((MINI, "rate_limit"),)),
        row(answered_by=QWEN, failures=((MINI, "rate_limit"), (HAIKU, "billing"))),
        row(answered_by=None, failures=((MINI, "server"), (HAIKU, "server")), error="failed"),
    ]
    report = stats(rows)
    assert report.fallbacks == 2
    assert report.fallback_rate == pytest.approx(0.4)
    assert report.fallback_failures == (("rate_limit", 2), ("billing", 1))
    assert report.error_failures == (("server", 2),)


# -- savings -----------------------------------------------------------------------------------


def test_savings_price_the_same_tokens_on_the_default_primary():
    rows = [row(tokens=(1000, 500)), row("code", QWEN, (2000, 1000)), row("complex", SONNET)]
    report = stats(rows)
    assert report.savings.baseline == SONNET
    assert report.savings.actual_micros == 450 + 0 + 10500
    assert report.savings.baseline_micros == 10500 + 21000 + 10500
    assert report.savings.saved_micros == 42000 - 10950
    assert report.savings.saved_fraction == pytest.approx(31050 / 42000)


def test_savings_use_what_was_paid_when_the_provider_reported_a_cost():
    report = stats([row(answered_by="openrouter/auto", tokens=(1000, 500), cost=777)])
    assert report.savings.actual_micros == 777
    assert report.savings.baseline_micros == 10500


def test_savings_leave_out_requests_that_used_no_model():
    report = stats([row(answered_by=None, error="no route")])
    assert (report.savings.baseline_micros, report.savings.actual_micros) == (0, 0)
    assert report.savings.saved_fraction == 0.0


# -- shadow mode -------------------------------------------------------------------------------


def test_shadow_mode_compares_the_classifiers_choice_with_what_was_served():
    rows = [
        row("heartbeat", SONNET, mode="shadow", shadow_first=HAIKU),
        row("simple", SONNET, mode="shadow", shadow_first=MINI),
        row("complex", SONNET, mode="shadow", shadow_first=SONNET),
        row("simple", None, mode="shadow", shadow_first=MINI, error="failed"),
        row(),  # auto mode: not part of the comparison
    ]
    shadow = stats(rows).shadow
    assert shadow is not None
    assert (shadow.requests, shadow.answered, shadow.differs) == (4, 3, 2)
    assert shadow.actual_micros == 3 * 10500
    assert shadow.auto_micros == 3500 + 450 + 10500
    assert shadow.would_save_micros == 31500 - 14450


def test_a_shadow_choice_no_longer_in_the_catalog_is_left_out_and_counted():
    rows = [
        row("simple", SONNET, mode="shadow", shadow_first="gone/model"),
        row("simple", SONNET, mode="shadow", shadow_first=MINI),
    ]
    shadow = stats(rows).shadow
    assert shadow is not None
    assert (shadow.unpriced, shadow.actual_micros, shadow.auto_micros) == (1, 10500, 450)


def test_no_shadow_section_outside_shadow_mode():
    assert stats([row()]).shadow is None


# -- the time range ----------------------------------------------------------------------------

CET = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - 86400),
        ("7d", NOW - 7 * 86400),
        ("90m", NOW - 5400),
        ("1h30m", NOW - 5400),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=CET).timestamp()),
        ("2026-11-25T08:00", datetime(2026, 11, 25, 8, tzinfo=CET).timestamp()),
        ("2026-11-25T08:00+00:00", datetime(2026, 11, 25, 8, tzinfo=UTC).timestamp()),
    ],
)
def test_since_takes_a_duration_back_from_now_or_a_date_in_the_time_zone(text, expected):
    assert parse_since(text, NOW, CET) == expected


@pytest.mark.parametrize("text", ["yesterday", "7 days", "-3h", "2026-13-01"])
def test_since_rejects_what_it_cannot_read(text):
    with pytest.raises(ValueError, match="expected 24h, 7d or a date"):
        parse_since(text, NOW)


# -- output ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "$0.000000"),
        (36, "$0.000036"),
        (12_345, "$0.012345"),
        (1_234_567, "$1.23"),
        (2_500_000_000, "$2,500.00"),
        (-200, "-$0.000200"),
    ],
)
def test_usd(micros, text):
    assert usd(micros) == text


def test_json_report_is_plain_data_in_micro_dollars():
    rows = [row(), row(answered_by=HAIKU, failures=((MINI, "rate_limit"),))]
    data = json.loads(json.dumps(stats_json(stats(rows))))
    assert data["requests"] == 2
    assert data["tokens"] == {"input": 2000, "output": 1000, "cache_read": 0, "cache_write": 0}
    assert data["cache"] == {"read_share": 0.0, "saved_micros": 0, **NOT_ROUTED}
    assert data["cost_micros"] == 3950
    assert data["fallbacks"] == {"count": 1, "rate": 0.5, "failures": {"rate_limit": 1}}
    assert data["savings"]["baseline_micros"] == 21000
    assert data["savings"]["saved_micros"] == 21000 - 3950
    assert data["by_model"][0] == {
        "name": HAIKU,
        "requests": 1,
        "input_tokens": 1000,
        "output_tokens": 500,
        "cost_micros": 3500,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cache_read_share": 0.0,
        "cache_saved_micros": 0,
        "p50_ms": 100.0,
        "p95_ms": 100.0,
    }
    assert "p50_ms" not in data["by_task"][0]
    assert data["shadow"] is None


def test_text_report_shows_every_section():
    rows = [
        row(),
        row("code", HAIKU, failures=((MINI, "rate_limit"),), mode="shadow", shadow_first=MINI),
        row(answered_by=None, failures=((MINI, "server"),), error="failed"),
    ]
    text = render_stats(stats(rows), UTC)
    assert "from 2026-11-25 12:00 to 2026-11-26 12:00" in text
    assert "requests   3 (2 answered, 1 failed)" in text
    assert "tokens     2,000 in, 1,000 out" in text
    assert "fallbacks  1 of 3 (33.3%), after: rate_limit 1" in text
    assert "failed     1, after: server 1" in text
    assert "on anthropic/claude-sonnet-4-0 for the same tokens" in text
    assert "in 1 of 1 answered requests (100.0%)" in text
    assert "auto mode would have cost $0.000450 instead of $0.003500: $0.003050 saved" in text
    for title in ("task class", "model", "provider"):
        assert any(line.startswith(title) for line in text.splitlines())


# -- prompt caching ----------------------------------------------------------------------------
# haiku-4-5: input $1, cache read $0.10, write $1.25 (5 min) or $2 (1 h); mini: $0.15, read $0.075


def cached_rows() -> list[Row]:
    return [
        row(answered_by=HAIKU, tokens=(10_000, 100), cache=(8_000, 1_000, 0)),
        row(answered_by=MINI, tokens=(1_000, 100), cache=(600, 0, 0)),
        row(answered_by=MINI, tokens=(1_000, 100)),
    ]


def test_cache_share_and_savings_per_model_and_in_total():
    report = stats(cached_rows())
    models = {g.name: g for g in report.by_model}
    haiku, mini = models[HAIKU], models[MINI]
    assert haiku.cache_share == 0.8
    assert haiku.cache_saved_micros == 8_000 * 0.9 - 1_000 * 0.25  # reads saved, writes cost
    assert mini.cache_share == 600 / 2_000
    assert mini.cache_saved_micros == 45  # 600 × $0.075 per million
    assert report.cache_read_tokens == 8_600
    assert report.cache_write_tokens == 1_000
    assert report.cache_share == 8_600 / 12_000
    assert report.cache_saved_micros == 6_950 + 45


def test_cache_writes_for_an_hour_cost_their_own_price():
    rows = [row(answered_by=HAIKU, tokens=(10_000, 100), cache=(8_000, 1_000, 400))]
    (haiku,) = stats(rows).by_model
    assert haiku.cache_saved_micros == 7_200 - 600 * 0.25 - 400 * 1.0


def test_writes_without_reads_show_what_caching_cost():
    rows = [row(answered_by=HAIKU, tokens=(4_000, 100), cache=(0, 4_000, 0))]
    report = stats(rows)
    assert report.cache_saved_micros == -1_000
    assert "$0.001000 more against the input price" in render_stats(report, UTC)


def test_cache_rows_of_a_model_no_longer_in_the_catalog_are_not_priced():
    gone = row(answered_by=MINI, tokens=(1_000, 100), cache=(500, 0, 0))
    report = stats([replace(gone, model="acme/gone", answered_by="acme/gone")])
    assert report.by_model[0].cache_saved_micros is None
    assert report.cache_saved_micros == 0
    assert report.cache_read_tokens == 500


def test_reports_show_the_cache_share_and_savings():
    report = stats(cached_rows())
    text = render_stats(report, UTC)
    assert (
        "cache      71.7% of input tokens read from a prompt cache (8,600 read, 1,000 written): "
        "$0.006995 saved against the input price"
    ) in text
    model_lines = {line.split()[0]: line for line in text.splitlines() if line.startswith(HAIKU)}
    assert model_lines[HAIKU].split()[-2:] == ["80.0%", "$0.006950"]
    header = next(line for line in text.splitlines() if line.startswith("model"))
    assert header.split()[-3:] == ["cached", "cache", "saved"]
    data = json.loads(json.dumps(stats_json(report)))
    assert data["cache"] == {"read_share": 0.7167, "saved_micros": 6_995, **NOT_ROUTED}
    assert data["tokens"]["cache_read"] == 8_600
    by_model = {g["name"]: g for g in data["by_model"]}
    assert by_model[HAIKU]["cache_read_share"] == 0.8
    assert by_model[HAIKU]["cache_saved_micros"] == 6_950


def test_reports_without_cached_tokens_leave_the_cache_out():
    text = render_stats(stats([row()]), UTC)
    assert "cache " not in text and "cached" not in text


def test_text_report_says_when_nothing_was_recorded():
    assert render_stats(stats([]), UTC).startswith("no requests recorded from")


# -- stellwerk log -----------------------------------------------------------------------------


def test_log_line_of_an_answer():
    line = log_line(row(request_id="req_1", tokens=(312, 58)), UTC)
    assert line == (
        "2026-11-26 12:00:00  req_1  openai  simple  openai/gpt-4o-mini  312→58 tok  $0.000082"
    )


def test_log_line_of_a_fallback_names_what_failed():
    line = log_line(row(answered_by=HAIKU, failures=((MINI, "rate_limit"),)), UTC)
    assert line.endswith("after openai/gpt-4o-mini: rate_limit")


def test_log_line_of_an_error_and_of_a_stream_cut_off():
    failed = row(answered_by=None, failures=((MINI, "server"),), error="all\n targets failed")
    assert log_line(failed, UTC).endswith(
        "no answer  0→0 tok  $0.000000  failed openai/gpt-4o-mini: server"
        "  error: all targets failed"
    )
    cut = row(answered_by=None, partial=HAIKU, tokens=(30, 4), estimated=True, error="hung up")
    assert "anthropic/claude-haiku-4-5 (cut off)  ~30→4 tok" in log_line(cut, UTC)


class Stop(Exception):
    """Ends a `--follow` loop in a test, like Ctrl-C does for a user."""


async def test_follow_prints_the_tail_then_new_rows_as_they_come():
    backend = MemoryLedger()
    backend.write([row(request_id=f"old{i}") for i in range(5)])
    ledger = Ledger(backend)
    arrivals = [[row(request_id="new1")], [], [row(request_id="new2"), row(request_id="new3")]]

    async def sleep(_: float) -> None:
        if not arrivals:
            raise Stop
        backend.write(arrivals.pop(0))

    seen: list[str] = []
    with pytest.raises(Stop):
        async for found in follow(ledger, 2, sleep=sleep):
            seen.append(found.request_id)
    assert seen == ["old3", "old4", "new1", "new2", "new3"]
    await ledger.close()


async def test_follow_with_no_tail_prints_only_new_rows():
    backend = MemoryLedger()
    backend.write([row(request_id="old")])
    ledger = Ledger(backend)

    async def sleep(_: float) -> None:
        if backend.rows[-1].request_id == "new":
            raise Stop
        backend.write([row(request_id="new")])

    seen: list[str] = []
    with pytest.raises(Stop):
        async for found in follow(ledger, 0, sleep=sleep):
            seen.append(found.request_id)
    assert seen == ["new"]
    await ledger.close()


async def test_log_without_follow_prints_the_tail_and_stops():
    backend = MemoryLedger()
    backend.write([row(request_id=f"r{i}") for i in range(3)])
    ledger = Ledger(backend)
    seen = [r.request_id async for r in follow(ledger, 10, forever=False)]
    assert seen == ["r0", "r1", "r2"]
    await ledger.close()


def test_cache_tokens_recorded_in_the_ledger_reach_the_report(tmp_path):
    from stellwerk.decision import Decision
    from stellwerk.ledger import SQLiteLedger, row_from
    from stellwerk.plan import RoutePlan
    from stellwerk.policy import RoutingMode
    from stellwerk.types import TaskClass, Usage

    made = Decision(
        "req_c", "code", 0.9, "test", "classifier", RoutePlan(TaskClass.CODE, RoutingMode.AUTO,
        (HAIKU,), ()), started=NOW - 60,
    )  # fmt: skip
    made.answered_by = HAIKU
    made.usage = Usage(10_000, 100, cache_read_tokens=8_000, cache_write_tokens=1_000)
    made.cost_micros = POLICY.models[HAIKU].cost_of(made.usage)
    backend = SQLiteLedger(tmp_path / "ledger.db")
    backend.write([row_from(made)])
    rows = backend.since(NOW - 86400, NOW)
    backend.close()
    report = stats(rows)
    assert (report.cache_share, report.cache_saved_micros) == (0.8, 6_950)
    assert "cache      80.0% of input tokens read from a prompt cache" in render_stats(report, UTC)
