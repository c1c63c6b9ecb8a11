"""`stellwerk stats`: what the routing did and what it saved, from the ledger.

`aggregate(rows, policy, start, end)` is pure: ledger rows in, a `Stats` value out, so every rule
is tested with tables. It counts requests, tokens and cost per task class, per model and per
provider; the fallback rate with the failure classes behind it; p50/p95 latency per model (of the
attempt that answered); and the savings: the same token counts priced at the default primary
(`policy.default_primary`, anthropic/claude-sonnet-4-0 by default) against what was paid. In shadow
mode it also compares the classifier's choice (the first target of the auto chain) with the model
that served, and prices the served tokens at that choice: what auto mode would have saved.

Prompt caching: the share of input tokens read from a cache (per model and in total), and what
caching saved against the same tokens at the plain input price: reads at the input price less the
cache-read price, less what writes cost above the input price (`cache_write_price` for the
default TTL, `cache_write_1h_price` for the part written for an hour), per model at its prices.

A request to a model without a known price (a pass-through model the price database does not
know) is recorded at 0 and counted apart: "N requests with unknown price", never a silent $0.

Prices come from the configuration in force, so a report prices its baseline consistently even
for old rows. Costs are integer micro-dollars throughout, rounded up per request like the router's.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from .budget import usd
from .config import parse_duration
from .ledger import Row
from .policy import ModelSpec, Policy


@dataclass(frozen=True, slots=True)
class Group:
    """Requests, tokens and cost of one task class, model or provider."""

    name: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_micros: int
    p50_ms: float | None = None  # models only: latency of the answering attempt
    p95_ms: float | None = None
    cache_read_tokens: int = 0  # the part of input_tokens read from a prompt cache
    cache_write_tokens: int = 0  # the part written to one
    cache_saved_micros: int | None = None  # models only: what caching saved (None: unpriced)

    @property
    def cache_share(self) -> float:
        """The fraction of input tokens read from a prompt cache."""
        return self.cache_read_tokens / self.input_tokens if self.input_tokens else 0.0


@dataclass(frozen=True, slots=True)
class Savings:
    """What the same tokens would have cost on `baseline`, against what they cost."""

    baseline: str
    baseline_micros: int
    actual_micros: int

    @property
    def saved_micros(self) -> int:
        return self.baseline_micros - self.actual_micros

    @property
    def saved_fraction(self) -> float:
        return self.saved_micros / self.baseline_micros if self.baseline_micros else 0.0


@dataclass(frozen=True, slots=True)
class Shadow:
    """Shadow mode: the classifier's choice against what was served."""

    requests: int  # requests recorded with a classifier choice
    answered: int
    differs: int  # answered by a model other than the classifier's choice
    actual_micros: int
    auto_micros: int  # the served tokens priced at the classifier's choice
    unpriced: int = 0  # rows whose choice is no longer in the catalog (left out of both sums)

    @property
    def would_save_micros(self) -> int:
        return self.actual_micros - self.auto_micros


@dataclass(frozen=True, slots=True)
class Stats:
    """Everything `stellwerk stats` reports for one time range."""

    start: float
    end: float
    requests: int
    answered: int
    errors: int
    fallbacks: int
    estimated: int  # requests whose tokens are estimates
    input_tokens: int
    output_tokens: int
    cost_micros: int
    by_task: tuple[Group, ...]
    by_model: tuple[Group, ...]
    by_provider: tuple[Group, ...]
    fallback_failures: tuple[tuple[str, int], ...]  # failure class, attempts (in fallbacks)
    error_failures: tuple[tuple[str, int], ...]  # failure class, attempts (in errors)
    savings: Savings
    shadow: Shadow | None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_saved_micros: int = 0  # over the models still in the catalog
    unpriced: int = 0  # answered requests whose model has no known price (cost not in the sums)
    cache_routed: int = 0  # turns cache-aware routing took to a warm model
    cache_routed_micros: int = 0  # what those choices were expected to save
    cache_displaced: tuple[tuple[str, int], ...] = ()  # the planned targets they were taken from

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.requests if self.requests else 0.0

    @property
    def cache_share(self) -> float:
        """The fraction of input tokens read from a prompt cache."""
        return self.cache_read_tokens / self.input_tokens if self.input_tokens else 0.0


def aggregate(rows: Sequence[Row], policy: Policy, start: float, end: float) -> Stats:
    """The report over `rows` (already limited to `start <= ts < end`)."""
    charged = [r for r in rows if r.model is not None]
    by_model = _groups(charged, lambda r: r.model, latency=True, policy=policy)
    return Stats(
        start=start,
        end=end,
        requests=len(rows),
        answered=sum(r.answered_by is not None for r in rows),
        errors=sum(r.answered_by is None for r in rows),
        fallbacks=sum(r.fallback for r in rows),
        estimated=sum(r.estimated and r.tokens > 0 for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cost_micros=sum(r.cost_micros for r in rows),
        by_task=_groups(rows, lambda r: r.task),
        by_model=by_model,
        by_provider=_groups(charged, lambda r: r.provider),
        fallback_failures=_failures(r for r in rows if r.fallback),
        error_failures=_failures(r for r in rows if r.answered_by is None),
        savings=_savings(charged, policy),
        shadow=_shadow(rows, policy),
        cache_read_tokens=sum(r.cache_read_tokens for r in rows),
        cache_write_tokens=sum(r.cache_write_tokens for r in rows),
        cache_saved_micros=sum(g.cache_saved_micros or 0 for g in by_model),
        unpriced=sum(_unpriced(r, policy) for r in charged),
        cache_routed=sum(r.cache_displaced is not None for r in rows),
        cache_routed_micros=sum(r.cache_saved_micros for r in rows),
        cache_displaced=tuple(
            Counter(r.cache_displaced for r in rows if r.cache_displaced).most_common()
        ),
    )


def series(
    rows: Sequence[Row], policy: Policy, start: float, end: float, bucket: float
) -> dict[str, Any]:
    """Per bucket of `bucket` seconds (aligned to whole buckets since the epoch, so an hour is
    a clock hour in UTC): requests by class, cost, and the cost of the same tokens on the
    all-premium baseline (the default primary, as in `savings`); for the dashboard's chart."""
    first = math.floor(start / bucket) * bucket
    count = max(1, math.ceil((end - first) / bucket))
    requests, cost, base = [0] * count, [0] * count, [0] * count
    tasks: list[Counter[str]] = [Counter() for _ in range(count)]
    baseline = policy.models[policy.default_primary]
    for row in rows:
        i = min(max(int((row.ts - first) // bucket), 0), count - 1)
        requests[i] += 1
        tasks[i][row.task] += 1
        cost[i] += row.cost_micros
        if row.model is not None:
            base[i] += baseline.cost_micros(row.input_tokens, row.output_tokens)
    buckets = [
        {
            "start": first + i * bucket,
            "requests": requests[i],
            "by_task": dict(tasks[i]),
            "cost_micros": cost[i],
            "baseline_micros": base[i],
        }
        for i in range(count)
    ]
    return {"bucket_s": bucket, "baseline": baseline.id, "buckets": buckets}


def _unpriced(row: Row, policy: Policy) -> bool:
    """A request whose model has no known price and whose provider reported no cost: its cost
    is unknown, not $0 (a pass-through model the price database does not know)."""
    if row.cost_micros or row.model is None:
        return False
    spec = policy.models.get(row.model)
    return spec is not None and not spec.priced


def _groups(
    rows: Sequence[Row], key: Any, latency: bool = False, policy: Policy | None = None
) -> tuple[Group, ...]:
    """Groups by `key`; with `policy` (models only) each priced for what caching saved."""
    by: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by[key(row) or "?"].append(row)
    groups = [_group(name, members, latency, policy) for name, members in by.items()]
    return tuple(sorted(groups, key=lambda g: (-g.cost_micros, -g.requests, g.name)))


def _group(name: str, rows: Sequence[Row], latency: bool, policy: Policy | None) -> Group:
    answered = sorted(r.latency_ms for r in rows if r.answered_by is not None)
    model = policy.models.get(name) if policy is not None else None
    return Group(
        name=name,
        requests=len(rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cost_micros=sum(r.cost_micros for r in rows),
        p50_ms=percentile(answered, 0.50) if latency else None,
        p95_ms=percentile(answered, 0.95) if latency else None,
        cache_read_tokens=sum(r.cache_read_tokens for r in rows),
        cache_write_tokens=sum(r.cache_write_tokens for r in rows),
        cache_saved_micros=_cache_saved(rows, model) if model is not None else None,
    )


def _cache_saved(rows: Sequence[Row], model: ModelSpec) -> int:
    """What caching saved on `model`'s rows against the plain input price, in micro-dollars
    (rounded once per model, to the nearest): reads times what a read costs less than an input
    token, less writes times what a write costs more (negative when writes cost more)."""
    read = sum(r.cache_read_tokens for r in rows)
    hour = sum(min(r.cache_write_1h_tokens, r.cache_write_tokens) for r in rows)
    written = sum(r.cache_write_tokens for r in rows) - hour
    per_million = (
        read * (model.input_price - model.cache_read_price)
        - written * (model.cache_write_price - model.input_price)
        - hour * (model.cache_write_1h_price - model.input_price)
    )
    return round(per_million / 1_000_000)


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted values; None when there are none."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _failures(rows: Iterable[Row]) -> tuple[tuple[str, int], ...]:
    counts = Counter(failure for row in rows for _, failure in row.failures)
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _savings(charged: Sequence[Row], policy: Policy) -> Savings:
    baseline = policy.models[policy.default_primary]
    return Savings(
        baseline=baseline.id,
        baseline_micros=sum(baseline.cost_micros(r.input_tokens, r.output_tokens) for r in charged),
        actual_micros=sum(r.cost_micros for r in charged),
    )


def _shadow(rows: Sequence[Row], policy: Policy) -> Shadow | None:
    chosen = [r for r in rows if r.mode == "shadow" and r.shadow_first is not None]
    if not chosen:
        return None
    answered = [r for r in chosen if r.answered_by is not None]
    priced = [r for r in chosen if r.model is not None and r.shadow_first in policy.models]
    unpriced = sum(r.model is not None and r.shadow_first not in policy.models for r in chosen)
    return Shadow(
        requests=len(chosen),
        answered=len(answered),
        differs=sum(r.answered_by != r.shadow_first for r in answered),
        actual_micros=sum(r.cost_micros for r in priced),
        auto_micros=sum(_price(policy, r.shadow_first, r) for r in priced),
        unpriced=unpriced,
    )


def _price(policy: Policy, model_id: str | None, row: Row) -> int:
    assert model_id is not None
    return policy.models[model_id].cost_micros(row.input_tokens, row.output_tokens)


# -- the time range ----------------------------------------------------------------------------


def parse_since(text: str, now: float, tz: tzinfo | None = None) -> float:
    """The start of a report: `24h`, `7d`, `90m` back from `now`, or a date/time in `tz`."""
    text = text.strip()
    if re.fullmatch(r"(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+", text.lower()):
        return now - parse_duration(text, "--since")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected 24h, 7d or a date like 2026-11-01, got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


# -- output ------------------------------------------------------------------------------------


def stats_json(stats: Stats) -> dict[str, Any]:
    """What `stats --json` prints: integer micro-dollars and token counts, rates as fractions."""
    return {
        "start": stats.start,
        "end": stats.end,
        "requests": stats.requests,
        "answered": stats.answered,
        "errors": stats.errors,
        "estimated": stats.estimated,
        "tokens": {
            "input": stats.input_tokens,
            "output": stats.output_tokens,
            "cache_read": stats.cache_read_tokens,
            "cache_write": stats.cache_write_tokens,
        },
        "cache": {
            "read_share": round(stats.cache_share, 4),
            "saved_micros": stats.cache_saved_micros,
            "routed": stats.cache_routed,
            "routed_saved_micros": stats.cache_routed_micros,
            "routed_from": dict(stats.cache_displaced),
        },
        "cost_micros": stats.cost_micros,
        "unpriced": stats.unpriced,
        "by_task": [_group_json(g) for g in stats.by_task],
        "by_model": [_group_json(g) for g in stats.by_model],
        "by_provider": [_group_json(g) for g in stats.by_provider],
        "fallbacks": {
            "count": stats.fallbacks,
            "rate": round(stats.fallback_rate, 4),
            "failures": dict(stats.fallback_failures),
        },
        "error_failures": dict(stats.error_failures),
        "savings": {
            "baseline": stats.savings.baseline,
            "baseline_micros": stats.savings.baseline_micros,
            "actual_micros": stats.savings.actual_micros,
            "saved_micros": stats.savings.saved_micros,
            "saved_fraction": round(stats.savings.saved_fraction, 4),
        },
        "shadow": _shadow_json(stats.shadow),
    }


def _group_json(group: Group) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": group.name,
        "requests": group.requests,
        "input_tokens": group.input_tokens,
        "output_tokens": group.output_tokens,
        "cost_micros": group.cost_micros,
        "cache_read_tokens": group.cache_read_tokens,
        "cache_write_tokens": group.cache_write_tokens,
        "cache_read_share": round(group.cache_share, 4),
    }
    if group.cache_saved_micros is not None:
        data["cache_saved_micros"] = group.cache_saved_micros
    if group.p50_ms is not None or group.p95_ms is not None:
        data |= {"p50_ms": group.p50_ms, "p95_ms": group.p95_ms}
    return data


def _shadow_json(shadow: Shadow | None) -> dict[str, Any] | None:
    if shadow is None:
        return None
    return {
        "requests": shadow.requests,
        "answered": shadow.answered,
        "differs": shadow.differs,
        "actual_micros": shadow.actual_micros,
        "auto_micros": shadow.auto_micros,
        "would_save_micros": shadow.would_save_micros,
        "unpriced": shadow.unpriced,
    }


def render_stats(stats: Stats, tz: tzinfo | None = None) -> str:
    """A terminal view of `stats`."""
    span = f"{_when(stats.start, tz)} to {_when(stats.end, tz)}"
    if not stats.requests:
        return f"no requests recorded from {span}"
    lines = [
        f"from {span}",
        f"requests   {stats.requests:,} ({stats.answered:,} answered, {stats.errors:,} failed)",
        f"tokens     {stats.input_tokens:,} in, {stats.output_tokens:,} out"
        + (f" ({stats.estimated} requests estimated)" if stats.estimated else ""),
        f"cost       {usd(stats.cost_micros)}"
        + (f" (and {stats.unpriced:,} requests with unknown price)" if stats.unpriced else ""),
        "",
        *_table("task class", stats.by_task),
        "",
        *_table("model", stats.by_model, latency=True),
        "",
        *_table("provider", stats.by_provider),
        "",
        _fallback_line(stats),
    ]
    if stats.error_failures:
        lines.append(f"failed     {stats.errors:,}, after: {_counts(stats.error_failures)}")
    lines.append(_savings_line(stats.savings))
    if stats.cache_read_tokens or stats.cache_write_tokens:
        lines.append(_cache_line(stats))
    if stats.cache_routed:
        share = stats.cache_routed / stats.requests if stats.requests else 0.0
        froms = ", ".join(f"{model} {n}" for model, n in stats.cache_displaced)
        lines.append(
            f"routing    a warm cache changed the model of {stats.cache_routed:,} requests "
            f"({share:.1%}; taken from {froms}), expected to save "
            f"{usd(stats.cache_routed_micros)}"
        )
    if stats.shadow is not None:
        lines += _shadow_lines(stats.shadow)
    return "\n".join(lines)


def _table(title: str, groups: Sequence[Group], latency: bool = False) -> list[str]:
    """A table of groups; the model table (`latency`) adds latency and, when anything was
    cached, the cache-read share of the input and what caching saved."""
    width = max([len(title), *(len(g.name) for g in groups)])
    cache = latency and any(g.cache_read_tokens or g.cache_write_tokens for g in groups)
    head = f"{title:<{width}}  {'requests':>8}  {'in':>11}  {'out':>11}  {'cost':>12}"
    head += f"  {'p50':>8}  {'p95':>8}" if latency else ""
    head += f"  {'cached':>6}  {'cache saved':>12}" if cache else ""
    lines = [head]
    for g in groups:
        line = f"{g.name:<{width}}  {g.requests:>8,}  {g.input_tokens:>11,}"
        line += f"  {g.output_tokens:>11,}  {usd(g.cost_micros):>12}"
        if latency:
            line += f"  {_ms(g.p50_ms):>8}  {_ms(g.p95_ms):>8}"
        if cache:
            saved = "-" if g.cache_saved_micros is None else usd(g.cache_saved_micros)
            line += f"  {g.cache_share:>6.1%}  {saved:>12}"
        lines.append(line)
    return lines


def _cache_line(stats: Stats) -> str:
    return (
        f"cache      {stats.cache_share:.1%} of input tokens read from a prompt cache "
        f"({stats.cache_read_tokens:,} read, {stats.cache_write_tokens:,} written): "
        f"{_difference(stats.cache_saved_micros)} against the input price"
    )


def _fallback_line(stats: Stats) -> str:
    text = f"fallbacks  {stats.fallbacks:,} of {stats.requests:,} ({stats.fallback_rate:.1%})"
    if stats.fallback_failures:
        text += f", after: {_counts(stats.fallback_failures)}"
    return text


def _savings_line(savings: Savings) -> str:
    return (
        f"savings    {usd(savings.saved_micros)} ({savings.saved_fraction:.1%}): "
        f"{usd(savings.actual_micros)} paid, {usd(savings.baseline_micros)} "
        f"on {savings.baseline} for the same tokens"
    )


def _shadow_lines(shadow: Shadow) -> list[str]:
    share = shadow.differs / shadow.answered if shadow.answered else 0.0
    lines = [
        f"shadow     the classifier's choice differed from the served model in "
        f"{shadow.differs:,} of {shadow.answered:,} answered requests ({share:.1%})",
        f"           auto mode would have cost {usd(shadow.auto_micros)} instead of "
        f"{usd(shadow.actual_micros)}: " + _difference(shadow.would_save_micros),
    ]
    if shadow.unpriced:
        lines.append(f"           ({shadow.unpriced} requests left out: model no longer known)")
    return lines


def _difference(saved: int) -> str:
    return f"{usd(saved)} saved" if saved >= 0 else f"{usd(-saved)} more"


def _counts(items: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in items)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}ms"


def _when(ts: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M")


# -- reading the ledger ------------------------------------------------------------------------


async def read_stats(
    config_path: str | os.PathLike[str] | None,
    since: str,
    *,
    now: float | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Stats, tzinfo]:
    """The report for the configured ledger from `since` until now (the CLI's body)."""
    import time
    from zoneinfo import ZoneInfo

    from .config import load_policy
    from .ledger import open_ledger

    policy = load_policy(config_path)
    tz = ZoneInfo(policy.budgets.timezone)
    end = time.time() if now is None else now
    start = parse_since(since, end, tz)
    ledger = open_ledger(policy, env)
    try:
        rows = await ledger.since(start, end)
    finally:
        await ledger.close()
    return aggregate(rows, policy, start, end), tz
