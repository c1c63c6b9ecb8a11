"""Reserve, then settle: how every attempt is charged against the budgets that apply to it.

Before an attempt the router reserves an estimate (prompt estimate plus the output asked for, or
a default) on the counter of every limit that applies to the target and the request's class, in
one atomic store operation. Planning sees reserved amounts as used, so concurrent requests can
overshoot a limit by at most what is already in flight. A successful attempt settles the
reservation with the usage and cost it reported, a failed one releases it, a stream cut off after
its first token settles with an estimate; the store makes each of these happen at most once.

After settling, each limit is checked against the thresholds (warn, downgrade, exhausted). The
first request in a window to cross one, in any process, gets `decision.budget_notice` (sent as
`x-stellwerk-budget`), a log warning and, when `budgets.webhook` is set, a webhook POST.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from .budget import (
    BudgetState,
    Level,
    applies,
    budget_row,
    budget_rows,
    budget_states,
    counter_key,
    state_of,
    window_of,
)
from .decision import Decision
from .plan import Target
from .policy import BudgetLimit, ModelSpec, Policy
from .state.base import StateStore
from .tokens import estimate_prompt
from .types import ChatRequest, Usage
from .webhook import Webhook

log = logging.getLogger("stellwerk.budget")

RESERVATION_TTL = 3600.0  # an unsettled reservation (a crashed process) stops counting after this
DEFAULT_OUTPUT_ESTIMATE = 1024  # output tokens reserved when the request sets no max_tokens


class Host(Protocol):
    """What the budget keeper reads from its router (current after a config reload)."""

    policy: Policy
    store: StateStore
    tz: tzinfo

    def clock(self) -> float: ...


def estimate(request: ChatRequest, model: ModelSpec) -> tuple[int, int]:
    """Tokens and micro-dollars to reserve for one attempt of `request` on `model`."""
    prompt = estimate_prompt(request)
    output = request.max_tokens or DEFAULT_OUTPUT_ESTIMATE
    if model.max_output:
        output = min(output, model.max_output)
    return prompt + output, model.cost_micros(prompt, output)


class Budgets:
    """Charges attempts against the configured budgets; one per router."""

    def __init__(self, host: Host, webhook: Webhook | None = None) -> None:
        self.host = host
        self.webhook = webhook or Webhook()
        self._warned: set[tuple[str, str]] = set()  # flags known to be set: no store round trip

    def hold(
        self,
        decision: Decision,
        target: Target,
        request: ChatRequest,
        partial: Callable[[], Usage | None] | None = None,
    ) -> Hold:
        """A reservation for one attempt: `async with budgets.hold(...) as hold: ...`.

        `partial` tells, when the attempt ends without `settle`, what it used anyway (a stream
        cut off after its first token); otherwise the reservation is released."""
        return Hold(self, decision, target, request, partial)

    async def aclose(self) -> None:
        await self.webhook.aclose()

    async def crossed(self, limits: list[BudgetLimit], decision: Decision) -> None:
        """Tell about every threshold these limits crossed for the first time in their window."""
        host = self.host
        now = host.clock()
        snapshot = await host.store.snapshot(now)
        settled = {k: u.settled for k, u in snapshot.budgets.items()}
        alerts = []
        for limit in limits:
            state = state_of(limit, host.policy.budgets, settled, now, host.tz)
            level = await self._first(state, now)
            if level is not None:
                alerts.append(f"{level.label} {state.text}")
                self._announce(level, state, decision, now)
        if alerts:
            decision.budget_notice = "; ".join(alerts)

    async def _first(self, state: BudgetState, now: float) -> Level | None:
        """The highest threshold of `state` that nobody had marked yet, marking all reached."""
        if state.level is Level.OK:  # the common case: no threshold reached, nothing to mark
            return None
        first = None
        for level in (Level.WARN, Level.DOWNGRADE, Level.EXHAUSTED):
            flag = (state.key, level.label)
            if level > state.level or flag in self._warned:
                continue
            if await self.host.store.mark_warned(state.key, level.label, now, state.window.end):
                first = level
            self._warned.add(flag)
        if len(self._warned) > 1000:
            self._warned.clear()
        return first

    def _announce(self, level: Level, state: BudgetState, decision: Decision, now: float) -> None:
        text = f"{level.label} {state.text}"
        row = budget_row(state, now, self.host.tz)
        log.warning("budget %s: %s, resets %s", text, row["text"], row["resets"])
        if url := self.host.policy.budgets.webhook:
            self.webhook.send(url, _payload(text, level, row, decision, now, self.host.tz))


def _payload(
    text: str, level: Level, row: dict[str, Any], decision: Decision, now: float, tz: tzinfo
) -> dict[str, Any]:
    at = datetime.fromtimestamp(now, tz).isoformat(timespec="seconds")
    notice = {"notice": text, "threshold": level.label, "request_id": decision.request_id}
    return {"event": "budget", "time": at, **notice, "budget": row}


class Hold:
    """One attempt's reservation; released on exit unless settled (see `Budgets.hold`)."""

    def __init__(
        self,
        budgets: Budgets,
        decision: Decision,
        target: Target,
        request: ChatRequest,
        partial: Callable[[], Usage | None] | None,
    ) -> None:
        self._budgets = budgets
        self._decision = decision
        self._target = target
        self._request = request
        self._partial = partial
        self._id: str | None = None
        self._limits: list[BudgetLimit] = []

    async def __aenter__(self) -> Hold:
        host = self._budgets.host
        model, now = self._target.model, host.clock()
        limits = host.policy.budgets.limits
        self._limits = [lim for lim in limits if applies(lim, model, self._decision.task)]
        if self._limits:
            keys = {}
            for limit in self._limits:
                window = window_of(limit.window, now, host.tz)
                keys[counter_key(limit, window)] = window.end
            tokens, micros = estimate(self._request, model)
            self._id = await host.store.reserve(keys, tokens, micros, now, RESERVATION_TTL)
        return self

    @property
    def reserved(self) -> bool:
        """Whether an estimate is held that `settle` will write to the store."""
        return self._id is not None

    async def settle(self, usage: Usage, cost_micros: int) -> None:
        """Replace the estimate with what the attempt used; then check the thresholds."""
        rid, self._id = self._id, None
        if rid is None:
            return
        host = self._budgets.host
        if await host.store.settle(rid, usage.total_tokens, cost_micros, host.clock()):
            await self._budgets.crossed(self._limits, self._decision)

    async def __aexit__(self, *exc: object) -> None:
        if self._id is None:
            return
        used = self._partial() if self._partial is not None else None
        if used is not None:
            model = self._target.model
            await self.settle(used, model.cost_of(used))
            return
        rid, self._id = self._id, None
        await self._budgets.host.store.release(rid)


async def read_budgets(config_path: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """Every budget's use, limit, percentage and reset time, read from the configured store."""
    from .config import load_policy
    from .state import open_store

    policy = load_policy(config_path)
    tz = ZoneInfo(policy.budgets.timezone)
    store = open_store(policy.state)
    try:
        now = time.time()
        snapshot = await store.snapshot(now)
    finally:
        await store.close()
    return budget_rows(budget_states(policy.budgets, snapshot.budgets, now, tz), now, tz)
