"""`stellwerk status`: providers, masked credentials, cooldowns, budgets and the mode.

One function builds the data from the policy and a snapshot (the gateway's status API returns the
same), another renders it for a terminal. Cooldown and emergency times are in the local time zone
of the process, as everywhere else (`log`, `route`); only the budget windows follow
`budgets.timezone`, where they start. Keys appear masked, never whole, and never in part in
a stored text (cooldown details, the emergency reason): those are scrubbed once more here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from .budget import budget_rows, budget_states, render_budgets
from .policy import Policy
from .redaction import scrub
from .state.base import Cooldown, Snapshot
from .state.cooldown import clock, describe


def status_data(
    policy: Policy, snapshot: Snapshot, tz: tzinfo | None = None, *, live: bool = True
) -> dict[str, Any]:
    """Everything `status --json` prints; stored texts scrubbed of the policy's keys again.

    `tz` is the budgets' time zone (default `budgets.timezone`); cooldown and emergency times
    are local (they used to follow `tz`, an hour off the rest when it was not the local zone).
    `live=False` (the dashboard, which counts down by itself): a cooldown's text says until when,
    not how long is left, and is remembered between calls."""
    budget_tz, tz = tz, None
    keys = tuple(c.secret.reveal() for p in policy.providers.values() for c in p.credentials)
    return {
        "config": policy.source,
        "mode": "emergency" if snapshot.emergency else str(policy.routing.mode),
        "degraded": snapshot.degraded or None,  # the shared state store is unreachable: why
        "emergency": snapshot.emergency,
        "emergency_since": _when(snapshot.emergency_since, tz),
        "emergency_reason": snapshot.emergency_reason and scrub(snapshot.emergency_reason, keys),
        "providers": [_provider(policy, name) for name in policy.providers],
        "cooldowns": [
            _cooldown(c, keys) | {"text": _text(c, snapshot.now, live)}  # no stored text in it
            for c in sorted(snapshot.cooldowns.values(), key=lambda c: c.key)
            if c.active(snapshot.now)
        ],
        "budgets": _budgets(policy, snapshot, budget_tz),
    }


def _text(c: Cooldown, now: float, live: bool) -> str:
    """`describe`, or for a page that counts down by itself `cooldown until 14:05:00 (billing)`
    (the day first when it is not today), as the cooldown module shows a time."""
    if live or math.isinf(c.until):
        return describe(c, now, None)
    return f"cooldown until {clock(c.until, now, None, seconds=True)} ({c.reason.value})"


def _cooldown(c: Cooldown, keys: tuple[str, ...]) -> dict[str, Any]:
    """A cooldown's row but its live text (a copy: callers add to it)."""
    return dict(_cooldown_row(c, keys, time.tzname))


@lru_cache(maxsize=1024)
def _cooldown_row(c: Cooldown, keys: tuple[str, ...], _local: object) -> dict[str, Any]:
    """Remembered: the dashboard asks for the same cooldowns every few seconds, and scrubbing
    and formatting 100 of them each time cost a millisecond (keyed by the local zone's names,
    as `_iso`)."""
    return {
        "key": c.key,
        "reason": c.reason.value,
        "until": None if math.isinf(c.until) else _iso(c.until, None),
        "strikes": c.strikes,
        "detail": scrub(c.detail, keys),
    }


def _budgets(policy: Policy, snapshot: Snapshot, tz: tzinfo | None) -> list[dict[str, Any]]:
    zone = tz or ZoneInfo(policy.budgets.timezone)
    states = budget_states(policy.budgets, snapshot.budgets, snapshot.now, zone)
    return budget_rows(states, snapshot.now, zone)


def _provider(policy: Policy, name: str) -> dict[str, Any]:
    spec = policy.providers[name]
    return {
        "name": name,
        "type": spec.type,
        "base_url": spec.base_url,
        "available": spec.available,
        "local": spec.local,
        "credentials": [{"id": c.id, "key": c.masked} for c in spec.credentials],
        "models": [m.id for m in policy.models.values() if m.provider == name],
    }


def _when(when: float | None, tz: tzinfo | None) -> str | None:
    return None if when is None else _iso(when, tz)


def _mode_note(data: dict[str, Any]) -> str:
    """` since 14:05:00 (5 rate limits in 5m)`, or when the last emergency ended."""
    since, why = data.get("emergency_since"), data.get("emergency_reason") or ""
    if since is None:
        return ""
    clock = since[11:19] if len(since) >= 19 else since
    if data.get("emergency"):
        return f" since {clock} ({why})" if why else f" since {clock}"
    return f" (emergency mode ended {clock}: {why})" if why else f" (emergency mode ended {clock})"


def _iso(when: float, tz: tzinfo | None) -> str:
    """ISO 8601 with the zone's offset (the local zone's when `tz` is None)."""
    return _iso_in(when, tz, time.tzname if tz is None else None)


@lru_cache(maxsize=4096)  # a cooldown's end, shown on every status poll; the local zone's names
def _iso_in(when: float, tz: tzinfo | None, _local: object) -> str:  # key it (`time.tzset`)
    return datetime.fromtimestamp(when, tz).astimezone(tz).isoformat(timespec="seconds")


def _plain(text: str, **_: Any) -> str:
    return text


def render_status(data: dict[str, Any], style: Callable[..., str] = _plain) -> str:
    """A terminal view of `status_data`; `style` is `click.style` for colour (default: none)."""
    mode = data["mode"]
    shown_mode = style(mode, fg="red", bold=True) if mode == "emergency" else mode
    lines = [f"config    {data['config']}", f"mode      {shown_mode}{_mode_note(data)}"]
    if data.get("degraded"):
        lines.insert(0, style(f"WARNING   state store degraded: {data['degraded']}", fg="red"))
    lines.append("providers")
    for p in data["providers"]:
        keys = ", ".join(f"{c['id']} {c['key']}" for c in p["credentials"])
        state = "local" if p["local"] else (keys or "no key: unavailable")
        colour = "yellow" if state == "no key: unavailable" else "green"
        lines.append(f"  {p['name']:<14} {p['type']:<18} {style(state, fg=colour)}")
    lines.append("cooldowns" + ("" if data["cooldowns"] else "  none"))
    for c in data["cooldowns"]:
        lines.append(f"  {c['key']:<52} {style(c['text'], fg='yellow')}")
    if data.get("budgets"):
        lines.append("budgets")
        lines.extend(f"  {line}" for line in render_budgets(data["budgets"]).splitlines())
    return "\n".join(lines)
