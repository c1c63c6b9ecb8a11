"""Counting recent events (rate limits across providers) the same way in every backend.

Emergency mode starts when `emergency.rate_limits` rate limits happened within
`emergency.window`. Each backend keeps the times of recent events under a name and asks `recent`
which of them still count, so memory and SQLite agree to the second.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_EVENTS = 1000
"""Events kept per name; a threshold above this would never be reached."""


def recent(times: Iterable[float], now: float, window: float) -> list[float]:
    """The event times within the last `window` seconds before `now` (inclusive), newest last."""
    kept = sorted(t for t in times if t == now or now - window < t < now)
    return kept[-MAX_EVENTS:]
