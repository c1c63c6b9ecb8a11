"""Route planning: which targets, in which order, and why every other one was left out.

`plan_route` is pure. It takes the classification, the policy and a state snapshot (with `now`
inside it) and returns a `RoutePlan`; it reads no clock and no store, so every rule here is tested
with tables. The router then attempts the targets in order; the planner never calls anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo

from .budget import BudgetState, budget_states, exhausted_message, verdict
from .policy import (
    ContextPolicy,
    Credential,
    ModelSpec,
    Policy,
    ProviderSpec,
    RoutingMode,
)
from .state.base import Snapshot, credential_key, health_key, model_key
from .state.cooldown import describe
from .tokens import estimate_prompt
from .types import ChatRequest, ImagePart, TaskClass


class Classified(Protocol):
    """What the planner needs of a classification."""

    @property
    def task(self) -> TaskClass: ...

    @property
    def model(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Target:
    """One model to attempt, with the credentials usable for it now, in rotation order."""

    model: ModelSpec
    provider: ProviderSpec
    credentials: tuple[Credential, ...] = ()

    @property
    def id(self) -> str:
        return self.model.id


@dataclass(frozen=True, slots=True)
class Skip:
    target: str
    reason: str


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """The outcome of planning: targets to attempt in order and the ones left out, with why."""

    task: TaskClass  # the class whose chain was used (emergency when the mode forced it)
    mode: RoutingMode
    chain: tuple[str, ...]  # the planned chain before anything was skipped
    targets: tuple[Target, ...]
    skipped: tuple[Skip, ...] = ()
    why: str = ""  # how the chain was chosen
    shadow: tuple[str, ...] | None = None  # shadow mode: what auto routing would have tried
    context: ContextPolicy = ContextPolicy.FULL
    blocked: str | None = None  # `budgets.at_limit: block` refused the request: why

    @property
    def target_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.targets)


@dataclass(frozen=True, slots=True)
class Demand:
    """The size of a request: estimated prompt tokens and the output it asks for."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    needs: frozenset[str] = field(default_factory=frozenset)  # capabilities, e.g. {"tools"}


def plan_route(
    classification: Classified,
    policy: Policy,
    snapshot: Snapshot,
    demand: Demand = Demand(),
    tz: tzinfo | None = None,
) -> RoutePlan:
    """Plan the route of one request. Pure: all inputs are arguments."""
    task, chain, why, context = _choose_chain(classification, policy, snapshot)
    shadow = None
    if policy.routing.mode is RoutingMode.SHADOW and classification.model is None:
        shadow = policy.chain(classification.task)
    targets: list[Target] = []
    skipped: list[Skip] = []
    budgets = budget_states(policy.budgets, snapshot.budgets, snapshot.now, tz)
    blocked = False
    for model_id in chain:
        model = policy.models[model_id]
        reason, target = _admit(model, policy, snapshot, demand, task, context, tz)
        if target is not None and budgets:
            over = verdict(budgets, policy.budgets, model, target.provider, classification.task)
            if over is not None:
                reason, target, blocked = over.reason, None, blocked or over.block
        if target is None:
            skipped.append(Skip(model_id, reason))
        else:
            targets.append(target)
    refused = _refused(budgets, policy, tz) if blocked and not targets else None
    return RoutePlan(
        task,
        policy.routing.mode,
        chain,
        tuple(targets),
        tuple(skipped),
        why,
        shadow,
        context,
        refused,
    )


def _refused(budgets: list[BudgetState], policy: Policy, tz: tzinfo | None) -> str:
    return exhausted_message(budgets, tz or ZoneInfo(policy.budgets.timezone))


def _choose_chain(
    classification: Classified, policy: Policy, snapshot: Snapshot
) -> tuple[TaskClass, tuple[str, ...], str, ContextPolicy]:
    task = classification.task
    if snapshot.emergency:
        emergency = TaskClass.EMERGENCY
        return (
            emergency,
            policy.chain(emergency),
            "emergency mode: local only",
            _ctx(policy, emergency),
        )
    if classification.model is not None:
        return (
            task,
            policy.stack_from(classification.model),
            f"starts at {classification.model}",
            ContextPolicy.FULL,
        )
    mode = policy.routing.mode
    if mode is RoutingMode.AUTO and task in policy.routing.classes:
        return task, policy.chain(task), f"auto: {task} chain", _ctx(policy, task)
    primary = policy.default_primary
    if mode is RoutingMode.AUTO:
        why = f"class {task} not enabled for routing: default primary and stack"
    else:
        why = f"routing mode {mode}: default primary and stack"
    return task, policy.stack_from(primary), why, ContextPolicy.FULL


def _ctx(policy: Policy, task: TaskClass) -> ContextPolicy:
    return policy.tasks[task].context


def _admit(
    model: ModelSpec,
    policy: Policy,
    snapshot: Snapshot,
    demand: Demand,
    task: TaskClass,
    context: ContextPolicy,
    tz: tzinfo | None,
) -> tuple[str, Target | None]:
    provider = policy.providers[model.provider]
    if task is TaskClass.EMERGENCY and not provider.local:
        return "emergency mode: local only", None
    if not provider.available:
        return "no key", None
    if snapshot.cooldowns:
        if snapshot.blocked(health_key(provider.name)):
            return f"{provider.name} down (health check)", None
        if blocked := snapshot.blocked(model_key(model.id)):
            return describe(blocked, snapshot.now), None  # local time, as in `status`
    if (reason := _too_small(model, demand, context)) is not None:
        return reason, None
    missing = demand.needs - model.capabilities
    if context is ContextPolicy.FIT:  # fitting turns tools into text, never an image into one
        missing &= {"vision"}
    if missing:
        return f"lacks {', '.join(sorted(missing))}", None
    usable, reason = _credentials(model, provider, snapshot, tz)
    if reason:
        return reason, None
    return "", Target(model, provider, usable)


def _too_small(model: ModelSpec, demand: Demand, context: ContextPolicy) -> str | None:
    """Why the model's window cannot hold the prompt plus the output asked for, if it cannot."""
    if context is ContextPolicy.FIT or not demand.prompt_tokens:
        return None
    output = min(demand.output_tokens, model.max_output) if demand.output_tokens else 0
    if demand.prompt_tokens + output <= model.context_window:
        return None
    return f"context {_k(demand.prompt_tokens + output)} > window {_k(model.context_window)}"


def _k(tokens: int) -> str:
    return f"{tokens // 1000}k" if tokens >= 10_000 else str(tokens)


def _credentials(
    model: ModelSpec, provider: ProviderSpec, snapshot: Snapshot, tz: tzinfo | None
) -> tuple[tuple[Credential, ...], str]:
    """The provider's credentials not cooling down for this model, or why none is usable.

    A keyless local provider yields no credential and no reason: usable without one."""
    if not snapshot.cooldowns:  # nothing cools down: every key is usable, in rotation order
        return provider.credentials, ""
    ids = _credential_ids(provider)
    usable: list[Credential] = []
    blocks = []
    for cred_id, cred in ids:
        blocked = snapshot.blocked(credential_key(cred_id), credential_key(cred_id, model.id))
        if blocked is None:
            if cred is not None:
                usable.append(cred)
            else:
                return (), ""  # keyless local provider: usable, no credential to carry
        else:
            blocks.append(blocked)
    if usable:
        return tuple(usable), ""
    if not blocks:
        return (), "no key"
    soonest = min(blocks, key=lambda c: c.until)
    return (), describe(soonest, snapshot.now)  # local time


def _credential_ids(provider: ProviderSpec) -> Iterable[tuple[str, Credential | None]]:
    if provider.credentials:
        return [(c.id, c) for c in provider.credentials]
    return [(f"{provider.name}#local", None)]


def demand_of(request: ChatRequest) -> Demand:
    """What a request needs of a target: its prompt's size, its output, tools, vision."""
    needs = set()
    if request.tools:
        needs.add("tools")
    if any(isinstance(p, ImagePart) for m in request.messages for p in m.content):
        needs.add("vision")
    return Demand(estimate_prompt(request), request.max_tokens or 0, frozenset(needs))


def starting_at(route: RoutePlan, target: str, why: str) -> RoutePlan:
    """The route with `target` (one of its targets) first and the rest of the chain after it as
    fallback; `why` is added to the route's reason (turn affinity, a warm prompt cache)."""
    first = next(t for t in route.targets if t.id == target)
    chain = (target, *(m for m in route.chain if m != target))
    targets = (first, *(t for t in route.targets if t.id != target))
    reason = f"{route.why}; {why}" if route.why else why
    return replace(route, chain=chain, targets=targets, why=reason)
