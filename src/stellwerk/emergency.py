"""Emergency mode: local models only while the cloud cannot serve, and back as soon as it can.

An agent must keep working when every cloud provider refuses it (out of credit, rate-limited
everywhere), even if the answers are smaller. Emergency mode is one flag in the shared state
(`StateStore.set_emergency`), so every gateway process and CLI sees it; while it is on, the
planner plans the `emergency` class chain (local targets only, `context: fit`).

It starts
- by itself when a request's chain has cloud targets with keys and every one of them is cooling
  down (a user with only Ollama configured is not in an emergency; a key disabled until reset
  does not count either: that needs a config change, not patience),
- by itself when `emergency.rate_limits` cloud rate limits happened within `emergency.window`
  (counted in the store across processes; counting starts afresh when the mode last ended),
- by hand: `stellwerk emergency on`, or `POST /api/emergency {"on": true}`.

It ends by itself, and this is the one rule to remember: while it is on, every request first
plans its normal route; when that route has a cloud target again and no cloud key is still
rate-limited, the request goes the normal way (a retry of the cloud) instead of the local way.
If a cloud target answers, the mode ends; if not, the request falls back along its chain as
always and the next one routes locally until the next cooldown ends. A probe
(`stellwerk probe`, `Router.probe`) that finds the cloud answering ends it too. Emergency mode
switched on by hand only ends by hand. Entering and leaving are logged and kept in the state with
their time and reason, so `stellwerk status` shows since when and why.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

from .config import load_policy
from .decision import Decision
from .failures import FailureClass
from .plan import Classified, Demand, RoutePlan, Target, plan_route
from .policy import Policy, ProviderSpec
from .state import open_store
from .state.base import (
    Cooldown,
    Snapshot,
    StateStore,
    credential_key,
    credential_parts,
    model_key,
)
from .types import TaskClass

log = logging.getLogger("stellwerk.emergency")

MANUAL = "by hand"
"""How every reason for switching the mode by hand begins; such a mode never ends by itself."""

RATE_LIMITS = "rate_limit"
"""The event name under which cloud rate limits are counted in the store."""

# Decision.emergency values
ON = "on"  # routed on the emergency chain (or a retry that only local targets answered)
RETRY = "retry"  # in emergency mode, routed normally to try the cloud again
LEFT = "left"  # the retry was answered by the cloud: the mode ended with this request


@dataclass(frozen=True, slots=True)
class Routed:
    """The route of one request, its relation to emergency mode (a `Decision.emergency` value)
    and the notice that goes with it."""

    route: RoutePlan
    emergency: str = ""
    notice: str | None = None


def manual(snapshot: Snapshot) -> bool:
    """Whether the mode is on and was switched on by hand."""
    return snapshot.emergency and snapshot.emergency_reason.startswith(MANUAL)


async def plan(
    found: Classified,
    policy: Policy,
    store: StateStore,
    snapshot: Snapshot,
    demand: Demand,
    tz: tzinfo | None = None,
) -> Routed:
    """The route of a request, entering emergency mode when its cloud targets are all cooling."""
    normal_view = replace(snapshot, emergency=False) if snapshot.emergency else snapshot
    normal = plan_route(found, policy, normal_view, demand, tz)
    if snapshot.emergency:
        if cloud_due(normal, policy, snapshot):
            return Routed(normal, RETRY, "emergency mode: trying the cloud again")
        local = plan_route(found, policy, snapshot, demand, tz)
        return Routed(local, ON, notice(snapshot, tz))
    why = cloud_exhausted(normal, policy, snapshot, tz)
    if why is None:
        return Routed(normal)
    await switch(store, True, snapshot.now, why)
    on = replace(snapshot, emergency=True, emergency_since=snapshot.now, emergency_reason=why)
    return Routed(plan_route(found, policy, on, demand, tz), ON, notice(on, tz))


def cloud_exhausted(
    route: RoutePlan, policy: Policy, snapshot: Snapshot, tz: tzinfo | None = None
) -> str | None:
    """Why none of the chain's cloud targets can serve because all are cooling down, or None
    (also None when some cloud target is usable or left out for another reason)."""
    if any(not t.provider.local for t in route.targets):
        return None
    cooling: list[Cooldown] = []
    for model_id in route.chain:
        provider = policy.provider_of(model_id)
        if provider.local or not provider.available:
            continue
        block = _cooling(model_id, provider, snapshot)
        if block is None:
            return None
        if not math.isinf(block.until):
            cooling.append(block)
    if not cooling:
        return None
    soonest = min(cooling, key=lambda c: c.until)
    return f"every cloud target is cooling down (the first is free at {_clock(soonest.until, tz)})"


def cloud_due(normal: RoutePlan, policy: Policy, snapshot: Snapshot) -> bool:
    """Whether a request in (automatic) emergency mode should try the cloud again: its normal
    route has a cloud target and no cloud key is rate-limited any more."""
    if manual(snapshot) or not any(not t.provider.local for t in normal.targets):
        return False
    return not any(
        c.reason is FailureClass.RATE_LIMIT and _cloud_key(c.key, policy)
        for c in snapshot.cooldowns.values()
        if c.active(snapshot.now)
    )


def notice(snapshot: Snapshot, tz: tzinfo | None = None) -> str:
    """The line every answer in emergency mode carries."""
    since = snapshot.emergency_since
    when = f" since {_clock(since, tz)}" if since is not None else ""
    why = f" ({snapshot.emergency_reason})" if snapshot.emergency_reason else ""
    return f"emergency mode{when}{why}: local models only, reduced functionality"


async def switch(store: StateStore, on: bool, now: float, reason: str) -> bool:
    """Switch the mode (logged when it changed); whether it changed."""
    changed = await store.set_emergency(on, now, reason)
    if changed and on:
        log.warning("emergency mode on: local models only (%s)", reason)
    elif changed:
        log.warning("emergency mode off: %s", reason)
    return changed


async def count_rate_limit(
    store: StateStore, policy: Policy, failure: FailureClass, provider: ProviderSpec, now: float
) -> bool:
    """Count a cloud rate limit; enough of them within the window start emergency mode.

    Returns whether this failure started the mode (the request in flight then goes local too).
    """
    limit, window = policy.emergency.rate_limits, policy.emergency.window
    if failure is not FailureClass.RATE_LIMIT or provider.local or not limit:
        return False
    snapshot = await store.snapshot(now)
    if snapshot.emergency:
        return False
    if snapshot.emergency_since is not None:  # when it last ended: count afresh from there
        window = min(window, now - snapshot.emergency_since)
    count = await store.count_recent(RATE_LIMITS, now, window)
    if count < limit:
        return False
    reason = f"{count} rate limits in {_span(policy.emergency.window)}"
    return await switch(store, True, now, reason)


async def answered(
    store: StateStore, policy: Policy, decision: Decision, now: float, tz: tzinfo | None = None
) -> None:
    """After a retry: a cloud answer ends the mode; a local one keeps it (with its notice)."""
    if decision.emergency != RETRY or decision.answered_by is None:
        return
    if policy.provider_of(decision.answered_by).local:
        decision.emergency = ON
        decision.notices.append(notice(await store.snapshot(now), tz))
        return
    decision.emergency = LEFT
    reason = f"the cloud answered again ({decision.answered_by})"
    if await switch(store, False, now, reason):
        decision.notices.append(f"emergency mode ended: {reason}")


def retry_target(policy: Policy, snapshot: Snapshot, tz: tzinfo | None = None) -> Target | None:
    """The cloud target a probe should try in automatic emergency mode, if the cloud is due."""
    if not snapshot.emergency:
        return None
    found = _Default(policy.routing.default_task)
    normal = plan_route(found, policy, replace(snapshot, emergency=False), Demand(), tz)
    if not cloud_due(normal, policy, snapshot):
        return None
    return next(t for t in normal.targets if not t.provider.local)


@dataclass(frozen=True, slots=True)
class _Default:
    task: TaskClass
    model: str | None = None


def _cooling(model_id: str, provider: ProviderSpec, snapshot: Snapshot) -> Cooldown | None:
    """The cooldown that keeps a cloud model from serving (the soonest to end), or None."""
    if block := snapshot.blocked(model_key(model_id)):
        return block
    blocks = []
    for cred in provider.credentials:
        block = snapshot.blocked(credential_key(cred.id), credential_key(cred.id, model_id))
        if block is None:
            return None
        blocks.append(block)
    return min(blocks, key=lambda c: c.until) if blocks else None


def _cloud_key(key: str, policy: Policy) -> bool:
    if (parts := credential_parts(key)) is None:
        return False
    provider = policy.providers.get(parts[0])
    return provider is not None and not provider.local


def _clock(when: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(when, tz).strftime("%H:%M:%S")


def _span(seconds: float) -> str:
    """`5m`, `90s`, `1h30m`."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")


async def switch_by_hand(config_path: str | os.PathLike[str] | None, on: bool) -> bool:
    """`stellwerk emergency on|off`: switch the mode in the configured state store."""
    policy = load_policy(config_path)
    store = open_store(policy.state)
    try:
        word = "on" if on else "off"
        return await switch(store, on, time.time(), f"{MANUAL} (stellwerk emergency {word})")
    finally:
        await store.close()
