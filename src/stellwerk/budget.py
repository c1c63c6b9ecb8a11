"""Budget rules: which window and limits apply, how full each is, and what that means for a target.

Pure: every function takes `now`, the time zone and the usage read from a state snapshot, so the
rules are tested with tables. Windows are calendar days and ISO weeks (Monday to Sunday) in
`budgets.timezone`; a limit's counter is keyed by window and scope (`daily:2026-11-26|all`,
`weekly:2026-W48|provider:anthropic`), so a new window starts from zero without any reset job.
A limit is as full as the higher of its token and its money share; the level follows from the
configured thresholds: ok, warn (`warn_at`), downgrade (`downgrade_at`) and exhausted (100 %).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from .errors import BudgetExhausted
from .policy import BudgetLimit, BudgetPolicy, ModelSpec, ProviderSpec
from .state.base import BudgetUse

WINDOWS = ("daily", "weekly")


class Level(enum.IntEnum):
    """How full a budget is, in the order the thresholds are crossed."""

    OK = 0
    WARN = 1
    DOWNGRADE = 2
    EXHAUSTED = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Window:
    """One calendar window: `daily:2026-11-26` or `weekly:2026-W48`, from `start` to `end`."""

    key: str
    start: float  # epoch seconds
    end: float  # epoch seconds: when the window resets


def window_of(name: str, now: float, tz: tzinfo) -> Window:
    """The daily or weekly window that holds `now`, in the time zone `tz`."""
    known = _LATEST.get((name, tz))
    if known is not None and known.start <= now < known.end:
        return known  # computed again for every limit of every plan, it showed in profiles
    window = _LATEST[(name, tz)] = _window_of(name, now, tz)
    return window


_LATEST: dict[tuple[str, tzinfo], Window] = {}


def _window_of(name: str, now: float, tz: tzinfo) -> Window:
    day = datetime.fromtimestamp(now, tz).date()
    if name == "daily":
        first, days, key = day, 1, f"daily:{day.isoformat()}"
    elif name == "weekly":
        year, week, weekday = day.isocalendar()
        first, days, key = day - timedelta(days=weekday - 1), 7, f"weekly:{year}-W{week:02d}"
    else:
        raise ValueError(f"unknown budget window {name!r} (daily, weekly)")
    return Window(key, _midnight(first, tz), _midnight(first + timedelta(days=days), tz))


def _midnight(day: date, tz: tzinfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def counter_key(limit: BudgetLimit, window: Window) -> str:
    """The state key of a limit's counter in one window: `daily:2026-11-26|provider:anthropic`."""
    return f"{window.key}|{limit.scope}"


def applies(limit: BudgetLimit, model: ModelSpec, task: str | None) -> bool:
    """Whether a call to `model` for a request of class `task` counts against `limit`."""
    kind, _, value = limit.scope.partition(":")
    if kind == "all":
        return True
    if kind == "provider":
        return value == model.provider
    if kind == "model":
        return value == model.id
    return kind == "task" and value == task


def fraction(limit: BudgetLimit, use: BudgetUse) -> float:
    """How full `limit` is: the higher of its token and money shares (1.0 is full)."""
    tokens, micros = _share(use.tokens, limit.tokens), _share(use.micros, limit.micros)
    if tokens is None:
        return 0.0 if micros is None else micros
    return tokens if micros is None else max(tokens, micros)


def _share(used: int, limit: int | None) -> float | None:
    if limit is None:
        return None
    if limit <= 0:
        return math.inf if used > 0 else 1.0
    return used / limit


def level_of(full: float, policy: BudgetPolicy) -> Level:
    """The level a budget this full is at."""
    if full >= 1.0:
        return Level.EXHAUSTED
    if full >= policy.downgrade_at:
        return Level.DOWNGRADE
    return Level.WARN if full >= policy.warn_at else Level.OK


@dataclass(frozen=True, slots=True)
class BudgetState:
    """One limit at one instant: its window, its counter's usage, how full and at which level."""

    limit: BudgetLimit
    window: Window
    use: BudgetUse
    fraction: float
    level: Level

    @property
    def key(self) -> str:
        return counter_key(self.limit, self.window)

    @property
    def percent(self) -> int:
        """Whole percent, rounded down (99.6 % is not yet 100 %), capped for display."""
        return min(math.floor(self.fraction * 100 + 1e-9), 9999)

    @property
    def text(self) -> str:
        """`92% daily`, or `92% daily provider:anthropic` for a scoped limit."""
        scope = "" if self.limit.scope == "all" else f" {self.limit.scope}"
        return f"{self.percent}% {self.limit.window}{scope}"


_UNUSED = BudgetUse()


def state_of(
    limit: BudgetLimit, policy: BudgetPolicy, usage: Mapping[str, BudgetUse], now: float, tz: tzinfo
) -> BudgetState:
    """Where one limit stands at `now`, given live usage by counter key."""
    window = window_of(limit.window, now, tz)
    use = usage.get(counter_key(limit, window), _UNUSED)
    full = fraction(limit, use)
    return BudgetState(limit, window, use, full, level_of(full, policy))


def budget_states(
    policy: BudgetPolicy, usage: Mapping[str, BudgetUse], now: float, tz: tzinfo | None = None
) -> list[BudgetState]:
    """Every configured limit at `now` (empty when no limit is configured)."""
    if not policy.limits:
        return []
    zone = tz or ZoneInfo(policy.timezone)
    return [state_of(limit, policy, usage, now, zone) for limit in policy.limits]


# -- what the planner does with it -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a target is left out for budget reasons; `block` when the request must be refused."""

    reason: str
    block: bool = False


def verdict(
    states: list[BudgetState],
    policy: BudgetPolicy,
    model: ModelSpec,
    provider: ProviderSpec,
    task: str | None,
) -> Verdict | None:
    """Whether the budgets skip `model`: downgraded tiers, local only, or blocked."""
    worst = _worst([s for s in states if applies(s.limit, model, task)])
    if worst is None or worst.level < Level.DOWNGRADE:
        return None
    if worst.level is Level.EXHAUSTED:
        if policy.at_limit == "block":
            return Verdict(f"budget {worst.text}: blocked", block=True)
        if provider.local:
            return None
        return Verdict(f"budget {worst.text}: local only")
    if model.tier in policy.downgrade_tiers:
        return Verdict(f"budget {worst.text}: {model.tier} tier downgraded")
    return None


def _worst(states: list[BudgetState]) -> BudgetState | None:
    return max(states, key=lambda s: (s.level, s.fraction), default=None)


def exhausted_message(states: list[BudgetState], tz: tzinfo) -> str:
    """The 429 text when `budgets.at_limit: block` refuses a request."""
    full = [s for s in states if s.level is Level.EXHAUSTED] or states
    parts = [f"{s.limit.name} at {_amounts(s)}, resets {_when(s.window.end, tz)}" for s in full]
    return f"budget exhausted ({'; '.join(parts)}); budgets.at_limit is block"


def refusal(block: str | None) -> BudgetExhausted | None:
    """The error for a route the budgets blocked, if they did."""
    return BudgetExhausted(block) if block else None


# -- how it is shown ---------------------------------------------------------------------------


def budget_rows(states: list[BudgetState], now: float, tz: tzinfo) -> list[dict[str, Any]]:
    """Every budget as data: `stellwerk budget --json`, the status API and the webhook."""
    return [budget_row(s, now, tz) for s in states]


def budget_row(state: BudgetState, now: float, tz: tzinfo) -> dict[str, Any]:
    limit, use, percent = state.limit, state.use, state.percent
    return {
        "name": limit.name,
        "window": limit.window,
        "scope": limit.scope,
        "window_key": state.window.key,
        "level": state.level.label,
        "percent": percent,
        "tokens": _measure(use.tokens, use.reserved_tokens, limit.tokens),
        "micros": _measure(use.micros, use.reserved_micros, limit.micros),
        "resets": _iso(state.window.end, tz),
        "resets_in": _span(state.window.end - now),
        "text": f"{_amounts(state)} ({percent}%)",
    }


def _measure(used: int, reserved: int, limit: int | None) -> dict[str, int] | None:
    return None if limit is None else {"used": used, "reserved": reserved, "limit": limit}


def _amounts(state: BudgetState) -> str:
    limit, use, parts = state.limit, state.use, []
    if limit.tokens is not None:
        parts.append(f"{use.tokens:,} of {limit.tokens:,} tokens")
    if limit.micros is not None:
        parts.append(f"{usd(use.micros)} of {usd(limit.micros)}")
    return " and ".join(parts)


def render_budgets(rows: list[dict[str, Any]]) -> str:
    """A terminal view of `budget_rows`."""
    if not rows:
        return "no budgets configured (budgets.limits)"
    lines = []
    for r in rows:
        level = "" if r["level"] == "ok" else f"  {r['level']}"
        lines.append(
            f"{r['name']:<32} {r['text']:<44} resets {r['resets']} (in {r['resets_in']}){level}"
        )
    return "\n".join(lines)


def usd(micros: int) -> str:
    """Micro-dollars as dollars, with the precision small amounts need."""
    sign = "-" if micros < 0 else ""
    amount = abs(micros) / 1_000_000
    if abs(micros) >= 1_000_000:
        return f"{sign}${amount:,.2f}"
    return f"{sign}${amount:.6f}"


@lru_cache(maxsize=256)  # a window's end, shown on every status poll
def _iso(when: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(when, tz).isoformat(timespec="minutes")


def _when(when: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(when, tz).strftime("%Y-%m-%d %H:%M %Z").strip()


def _span(seconds: float) -> str:
    minutes = max(0, math.ceil(seconds / 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return f"{days}d {hours}h" if days else f"{hours}h {mins:02d}m"
