"""Which keys a failure cools down, for how long, and how a cooldown reads in a skip reason.

These are the cooldown rules of the failure table, kept pure (no I/O, no clock) so a table test
covers them and every store backend applies exactly the same arithmetic:

- Keys come from `failures.ACTIONS[failure].scope`. Cooldowns hit a credential, a credential+model
  pair or a model, never a provider. Aggregators (OpenRouter) route around failures themselves, so
  a credential-wide failure there is narrowed to credential+model, except auth: a bad key is bad
  for every model.
- Durations come from `failures.ACTIONS[failure].cooldown`. Auth and unknown models are disabled
  FOREVER, i.e. until `stellwerk reset` (or a config change, which brings new credential ids or
  model ids and so new keys). Billing waits the provider's billing period (0 = never).
- Rate limits honour `Retry-After` (capped). On the first strike the capped Retry-After is used
  as is, even when it is shorter than the backoff base: the provider said when to come back. On
  repeated strikes the larger of the capped Retry-After and the exponential backoff applies, so a
  provider that keeps refusing after its own advertised wait is left alone for longer.
- A key's strike count grows while it keeps failing and starts again at 1 once it has been quiet
  (its last cooldown expired) for `STRIKE_MEMORY` seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from functools import lru_cache

from ..failures import ACTIONS, CooldownKind, FailureClass
from ..policy import CooldownPolicy, ProviderSpec
from ..redaction import scrub
from .base import FOREVER, Cooldown, credential_key, model_key

STRIKE_MEMORY = 600.0
"""Seconds after a cooldown expired during which a new failure still counts as a repeat."""

_MAX_DOUBLINGS = 32  # 2**32 × any base is far beyond every cap; keeps floats finite

_FOREVER_WORDS: dict[CooldownKind, str] = {"disabled": "disabled", "unavailable": "unavailable"}


def local_credential_id(provider: ProviderSpec) -> str:
    """The pseudo credential of a provider used without a key (a local Ollama)."""
    return f"{provider.name}#local"


def cooldown_keys(
    failure: FailureClass, provider: ProviderSpec, credential_id: str | None, model_id: str
) -> tuple[str, ...]:
    """The state keys one failure of `failure` on this attempt cools down (maybe none)."""
    scope = ACTIONS[failure].scope
    if scope == "none":
        return ()
    if scope == "model":
        return (model_key(model_id),)
    credential = credential_id or local_credential_id(provider)
    if scope == "credential" and provider.aggregator and failure is not FailureClass.AUTH:
        scope = "credential_model"
    if scope == "credential_model":
        return (credential_key(credential, model_id),)
    return (credential_key(credential),)


def duration(
    failure: FailureClass,
    strikes: int,
    provider: ProviderSpec,
    cooldowns: CooldownPolicy,
    retry_after: float | None = None,
) -> float:
    """Seconds to cool down after the `strikes`-th failure in a row (0 = no cooldown)."""
    kind = ACTIONS[failure].cooldown
    strikes = max(strikes, 1)
    if kind == "billing":
        return max(provider.billing_cooldown, 0.0)
    if kind == "rate_limit":
        return _rate_limit(strikes, cooldowns, retry_after)
    if kind == "breaker":
        return _backoff(cooldowns.breaker, strikes, cooldowns.rate_limit_max)
    if kind in ("disabled", "unavailable"):
        return FOREVER
    return 0.0


def duration_rule(
    failure: FailureClass,
    provider: ProviderSpec,
    cooldowns: CooldownPolicy,
    retry_after: float | None = None,
) -> Callable[[int], float]:
    """`duration` with everything but the strike count bound, as `StateStore.strike` takes it."""
    return lambda strikes: duration(failure, strikes, provider, cooldowns, retry_after)


def _backoff(base: float, strikes: int, cap: float) -> float:
    return min(math.ldexp(base, min(strikes - 1, _MAX_DOUBLINGS)), cap)


def _rate_limit(strikes: int, cooldowns: CooldownPolicy, retry_after: float | None) -> float:
    backoff = _backoff(cooldowns.rate_limit_base, strikes, cooldowns.rate_limit_max)
    if retry_after is None or math.isnan(retry_after):
        return backoff
    advised = min(max(retry_after, 0.0), cooldowns.retry_after_cap)
    return advised if strikes == 1 else max(advised, backoff)


def next_strikes(previous: Cooldown | None, now: float) -> int:
    """The strike count of a new failure, given the key's last recorded cooldown."""
    if previous is None or previous.until + STRIKE_MEMORY < now:
        return 1
    return previous.strikes + 1


def next_cooldown(
    previous: Cooldown | None,
    key: str,
    reason: FailureClass,
    now: float,
    rule: Callable[[int], float],
    detail: str = "",
) -> Cooldown:
    """The cooldown one more failure on `key` causes; `until == now` means record nothing.

    `since` is when the current run of failures began, so it survives repeated strikes. The
    detail is scrubbed of keys here, whichever store keeps it.
    """
    detail = scrub(detail)
    strikes = next_strikes(previous, now)
    seconds = rule(strikes)
    if not seconds > 0:
        return Cooldown(key, now, reason, strikes, now, detail)
    since = previous.since if previous is not None and strikes > 1 else now
    return Cooldown(key, now + seconds, reason, strikes, since, detail)


def forgotten(cooldown: Cooldown, now: float) -> bool:
    """True once a stored cooldown no longer matters, not even for counting strikes."""
    return cooldown.until + STRIKE_MEMORY < now


def describe(cooldown: Cooldown, now: float, tz: tzinfo | None = None) -> str:
    """A skip reason: `cooldown until 14:05 (billing, 2h left)`, `disabled until reset (auth)`."""
    reason = cooldown.reason.value
    if math.isinf(cooldown.until):
        word = _FOREVER_WORDS.get(ACTIONS[cooldown.reason].cooldown, "disabled")
        return f"{word} until reset ({reason})"
    if not cooldown.active(now):
        return f"cooldown ended at {clock(cooldown.until, now, tz)} ({reason})"
    left = _span(cooldown.until - now)
    return f"cooldown until {clock(cooldown.until, now, tz)} ({reason}, {left} left)"


def clock(when: float, now: float, tz: tzinfo | None, seconds: bool | None = None) -> str:
    """`when` as `HH:MM`, or `HH:MM:SS` within an hour of `now` (or as `seconds` says), the day
    first when it is not `now`'s."""
    day, minutes, precise = clock_parts(when, tz)
    if seconds is None:
        seconds = abs(when - now) < 3600
    shown = precise if seconds else minutes
    return shown if day == clock_parts(float(math.floor(now)), tz)[0] else f"{day} {shown}"


def clock_parts(when: float, tz: tzinfo | None) -> tuple[str, str, str]:
    """The day, `HH:MM` and `HH:MM:SS` of `when`, remembered: a cooldown's end is shown again
    on every status poll (the dashboard's, with a hundred cooldowns, every few seconds). The
    local zone's names are part of the key: a process may change its zone (`time.tzset`)."""
    return _parts(when, tz, time.tzname if tz is None else None)


@lru_cache(maxsize=4096)
def _parts(when: float, tz: tzinfo | None, _local: object) -> tuple[str, str, str]:
    at = datetime.fromtimestamp(when, tz)
    return f"{at:%Y-%m-%d}", f"{at:%H:%M}", f"{at:%H:%M:%S}"


def _span(seconds: float) -> str:
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    return f"{secs}s"
