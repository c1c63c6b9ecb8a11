"""The router: the only orchestration with I/O.

For every request: classify, take a state snapshot, plan, then attempt the targets in order. A
failed attempt is classified (by the adapter, through `_http.classify_failure`), cools down what
the failure table says, rotates to the provider's next key where that helps, and moves on. The
caller's own bad request stops the chain and is returned as is. A stream may fail over until its
first content chunk has been passed on; after that a failure ends it, never splicing two models.
A fallback holds for one request only: the next one plans from the primary again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from zoneinfo import ZoneInfo

import aiohttp

from . import emergency, passthrough, warmth
from .affinity import TURN_TTL, turn_id
from .classify import Classification, classify, without_directive
from .config import load_policy
from .decision import Attempt, Decision, new_request_id
from .errors import (
    AllTargetsFailed,
    BudgetExhausted,
    NoRouteAvailable,
    ProviderError,
    StellwerkError,
)
from .failures import ACTIONS, FailureClass
from .fit import Fitting, minimal_context
from .ledger import Ledger, open_ledger
from .plan import RoutePlan, Skip, Target, demand_of, plan_route, starting_at
from .policy import ContextPolicy, Credential, Policy, RoutingMode
from .probe import ProbeTarget, due_probes
from .providers import registry
from .providers._http import new_session
from .providers.base import Provider
from .spend import Budgets, Hold
from .state import StateStore, open_store
from .state.base import Snapshot, credential_key, model_key
from .state.cooldown import cooldown_keys, duration_rule, local_credential_id
from .tokens import estimate_message, estimate_prompt, estimate_text
from .types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    StreamEnd,
    TaskClass,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    is_content,
)

log = logging.getLogger("stellwerk.router")
Sink = Callable[[Decision], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete answer and the decision that produced it."""

    response: ChatResponse
    decision: Decision


class Router:
    """Routes chat requests over the configured providers. Use `async with` or `aclose()`."""

    def __init__(
        self,
        policy: Policy,
        store: StateStore,
        *,
        clock: Callable[[], float] = time.time,
        session: aiohttp.ClientSession | None = None,
        providers: Mapping[str, Provider] | None = None,
        sink: Sink | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.policy = policy
        self.store = store
        self.clock = clock
        self.ledger = ledger  # closed (flushed) by aclose()
        self.sink = sink or (_ledger_sink(ledger) if ledger is not None else _log_decision)
        self._session = session
        self._owns_session = session is None
        self._providers: dict[str, Provider] = dict(providers or {})
        self.tz: tzinfo = ZoneInfo(policy.budgets.timezone)
        self.budgets = Budgets(self)  # reserve and settle around every attempt

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **kwargs: object) -> Router:
        """A router for a config file (or the built-in default), its state store and ledger."""
        policy = load_policy(path)
        if "ledger" not in kwargs:
            kwargs["ledger"] = open_ledger(policy)
        return cls(policy, open_store(policy.state), **kwargs)  # type: ignore[arg-type]

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.budgets.aclose()
        if self.ledger is not None:
            await self.ledger.close()
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None
        await self.store.close()

    # -- the two entry points ----------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Answer:
        """Answer one request, falling back along the chain; raises when no target answered."""
        decision, request = await self._begin(request)
        try:
            attempts = _Attempts(decision.route, decision)
            fitting = Fitting(decision.route.context)
            for target, credential in attempts:
                if (sent := _fit(fitting, request, target, decision)) is None:
                    continue
                provider = self._provider(target.provider.name)
                t0 = time.perf_counter()
                async with self.budgets.hold(decision, target, sent) as hold:
                    try:
                        response = await provider.complete(sent, target.model, credential)
                    except ProviderError as exc:
                        fitting.failed(exc.failure, target.model, request)
                        await self._failed(exc, target, credential, decision, attempts, t0)
                        continue
                    decision.attempts.append(
                        Attempt(target.id, _cred_id(credential), None, 200, _ms(t0))
                    )
                    self._answered(decision, target, response.usage, response)
                    decision.calls_tools = bool(response.tool_calls)
                    decision.notices.extend(fitting.notices(target.model))
                    await self._settle(hold, decision)
                    self._keep_answer(decision, response)
                    return Answer(replace(response, target=target.id), decision)
            raise self._exhausted(decision)
        except BaseException as exc:
            decision.error = decision.error or _error_text(exc)
            raise
        finally:
            await self._finish(decision)

    def stream(self, request: ChatRequest) -> RoutedStream:
        """Stream one answer; `.decision` is set once planning is done."""
        return RoutedStream(self, request)

    async def _stream(self, request: ChatRequest, holder: RoutedStream) -> AsyncIterator[Chunk]:
        decision, request = await self._begin(request)
        holder.decision = decision
        out: _Output | None = None
        try:
            attempts = _Attempts(decision.route, decision)
            fitting = Fitting(decision.route.context)
            for target, credential in attempts:
                if (sent := _fit(fitting, request, target, decision)) is None:
                    continue
                holder.target = target.id
                out = _Output(target, sent)
                hold = self.budgets.hold(decision, target, sent, _partial(sent, out))
                async with hold:
                    try:
                        async with aclosing(self._open_stream(target, credential, sent, out)) as up:
                            async for chunk in up:
                                if isinstance(chunk, StreamEnd):
                                    decision.attempts.append(
                                        Attempt(
                                            target.id, _cred_id(credential), None, 200, _ms(out.t0)
                                        )
                                    )
                                    self._answered(decision, target, chunk.usage, chunk)
                                    decision.calls_tools = out.calls_tools
                                    decision.notices.extend(fitting.notices(target.model))
                                    await self._settle(hold, decision)
                                    self._keep_answer(decision, out)
                                yield chunk
                    except ProviderError as exc:
                        exc.after_first_token = exc.after_first_token or out.started
                        if out.started:
                            self._charge_partial(decision, out)
                        fitting.failed(exc.failure, target.model, request)
                        await self._failed(exc, target, credential, decision, attempts, out.t0)
                        continue
                return
            raise self._exhausted(decision)
        except BaseException as exc:
            if out is not None and out.started and decision.answered_by is None:
                self._charge_partial(decision, out)  # the client hung up mid-stream
            decision.error = decision.error or _error_text(exc)
            raise
        finally:
            await self._finish(decision)

    async def _open_stream(
        self, target: Target, credential: Credential | None, request: ChatRequest, out: _Output
    ) -> AsyncGenerator[Chunk, None]:
        provider = self._provider(target.provider.name)
        async for chunk in provider.stream(request, target.model, credential):
            if is_content(chunk):
                out.note(chunk)
            yield chunk

    # -- steps -------------------------------------------------------------------------------

    async def _begin(self, request: ChatRequest) -> tuple[Decision, ChatRequest]:
        if (local := self.policy.catalog.wants_show(request.model)) is not None:
            self._session = self._session or new_session()  # an Ollama model not in the config:
            await passthrough.learn(self.policy, local, self._session)  # its window, once
        found = classify(request, self.policy)
        turn = turn_id(request, found.reading)  # before the request is changed: as sent
        request = without_directive(request, found)
        snapshot = await self.store.snapshot(self.clock())
        routed = await self._route(found, snapshot, request)
        if _minimal(routed, found.task, self.policy):
            request = minimal_context(request, found.reading.at)
            routed = await self._route(found, snapshot, request)
        minimal = routed.route.context is ContextPolicy.MINIMAL
        reason = found.reason
        if turn and found.reading.continuation:
            kept = await _turn_target(self.store, turn, snapshot.now)
            if kept is not None:
                routed, why = _kept_turn(routed, kept)
                reason = f"{reason}; {why}"
        warm = await self._warm(found, routed, request, snapshot)
        if warm.cache is not None:
            routed, why = _cache_routed(routed, warm.cache)
            reason = f"{reason}; {why}"
        route = routed.route
        ttl = _cache_ttl(route, self.policy, warm.caches)
        # what the adapter needs to place prompt-cache breakpoints: the TTL, where the
        # conversation's own part ends, and whether the turn is reused at all (minimal context:
        # a heartbeat's next turn has a new time in it, only the prefix is)
        request = replace(
            request, cache_ttl=ttl, cache_prefix_only=minimal, cache_tail=found.reading.trailing
        )
        decision = Decision(
            request_id=request.metadata.get("request_id") or new_request_id(),
            task=str(found.task),
            confidence=found.confidence,
            reason=reason,
            source=found.source,
            route=route,
            started=self.clock(),
            client=request.metadata.get("client") or "library",
            turn=turn,
            continuation=found.reading.continuation,
            session=warm.session,
            estimate=warm.estimate,
            warm=warm.caches,
            cache=warm.cache,
        )
        if self.policy.ledger.store_content:
            decision.prompt = found.reading.text or request.last_user_text()
        decision.emergency = routed.emergency
        decision.notices.extend(found.notices)
        if routed.notice:
            decision.notices.append(routed.notice)
        if not route.targets:
            error: StellwerkError = NoRouteAvailable([(s.target, s.reason) for s in route.skipped])
            if route.blocked:
                error = BudgetExhausted(route.blocked)
            decision.error = str(error)
            await self._finish(decision)
            raise error
        return decision, request

    async def _warm(
        self,
        found: Classification,
        routed: emergency.Routed,
        request: ChatRequest,
        snapshot: Snapshot,
    ) -> _Warmth:
        """What the session's prompt caches hold, and for a turn's first request the choice they
        make (`warmth.py`); nothing under minimal context or with `routing.cache_aware` off."""
        if not self.policy.routing.cache_aware or routed.route.context is not ContextPolicy.FULL:
            return _Warmth()
        estimate = estimate_prompt(request)
        if estimate < warmth.CACHEABLE:  # no provider caches it: no read, and no write after
            return _Warmth(estimate=estimate)
        session = warmth.session_id(request)
        stored = await _turn_target(self.store, warmth.KEY + session, snapshot.now)
        caches = warmth.decode(stored, snapshot.now)
        if found.reading.continuation or found.source in ("model", "directive") or not caches:
            return _Warmth(session, caches, estimate)
        planned = routed.route
        if planned.mode is RoutingMode.SHADOW:  # what auto routing would do, and the cache
            planned = _auto_plan(found, self.policy, snapshot, request)
        at = found.reading.at
        new = sum(estimate_message(m) for m in request.messages[at:]) if at is not None else 0
        marks = "5m" if request.cache_marked else self.policy.tasks[planned.task].cache_ttl
        choice = warmth.choose(planned, planned.task, self.policy, caches, estimate, new, marks)
        return _Warmth(session, caches, estimate, choice)

    async def _route(
        self, found: Classification, snapshot: Snapshot, request: ChatRequest
    ) -> emergency.Routed:
        demand = demand_of(request)
        return await emergency.plan(found, self.policy, self.store, snapshot, demand, self.tz)

    async def _failed(
        self,
        exc: ProviderError,
        target: Target,
        credential: Credential | None,
        decision: Decision,
        attempts: _Attempts,
        t0: float,
    ) -> None:
        """Record a failed attempt, cool down what the failure table says; re-raise if final."""
        decision.attempts.append(
            Attempt(
                target.id,
                _cred_id(credential),
                exc.failure.value,
                exc.upstream_status,
                _ms(t0),
                str(exc),
            )
        )
        keys = await self._cool(exc, target, credential)
        log.info("attempt failed: %s %s: %s", target.id, exc.failure.value, exc)
        entered = await emergency.count_rate_limit(
            self.store, self.policy, exc.failure, target.provider, self.clock()
        )
        if not exc.fallback:
            raise exc
        attempts.failed(exc, keys)
        if entered:  # the storm starts now: the rest of this request goes local as well
            attempts.local_only = True
            decision.notices.append("emergency mode entered: local models only from here on")

    async def _cool(
        self, exc: ProviderError, target: Target, credential: Credential | None
    ) -> tuple[str, ...]:
        keys = cooldown_keys(exc.failure, target.provider, _cred_id(credential), target.id)
        rule = duration_rule(exc.failure, target.provider, self.policy.cooldowns, exc.retry_after)
        cooled = []
        for key in keys:
            cooldown = await self.store.strike(key, exc.failure, self.clock(), rule, str(exc)[:200])
            if cooldown.until > self.clock():
                cooled.append(key)
        return tuple(cooled)

    def _answered(
        self,
        decision: Decision,
        target: Target,
        usage: Usage,
        result: ChatResponse | StreamEnd,
    ) -> None:
        decision.answered_by = target.id
        decision.upstream_model = result.upstream_model
        decision.usage = usage
        reported = result.cost_micros
        decision.cost_micros = reported if reported is not None else target.model.cost_of(usage)
        if decision.route.chain and target.id != decision.route.chain[0]:
            decision.notices.append(decision.summary)

    def _charge_partial(self, decision: Decision, out: _Output) -> None:
        """A stream that stopped after its first token was billed: estimate what it used."""
        if decision.partial is not None:
            return
        decision.partial = out.target.id
        decision.usage = _estimated_usage(out.request, out)
        usage = decision.usage
        decision.cost_micros = out.target.model.cost_of(usage)
        self._keep_answer(decision, out)

    def _keep_answer(self, decision: Decision, source: ChatResponse | _Output) -> None:
        if self.policy.ledger.store_content:
            decision.answer = source.text

    def _exhausted(self, decision: Decision) -> AllTargetsFailed:
        failed = [(a.target, a.failure or "ok", a.message) for a in decision.attempts if not a.ok]
        return AllTargetsFailed(failed)

    async def _finish(self, decision: Decision) -> None:
        if decision.finished is not None:
            return
        decision.finished = self.clock()
        try:
            await emergency.answered(self.store, self.policy, decision, self.clock(), self.tz)
        except Exception:  # the answer stands even if the mode cannot be switched
            log.exception("emergency mode: recording the answer failed")
        if not decision.remembered:  # no settlement took them along (no budget limits)
            memories = self._memories(decision)
            if len(memories) > 1:  # at once: a store that groups writes commits them once
                await asyncio.gather(*memories)
            elif memories:  # alone, without gather's tasks (most requests write neither)
                await memories[0]
        try:
            await self.sink(decision)
        except Exception:  # a broken sink must never break an answer
            log.exception("decision sink failed")

    async def _settle(self, hold: Hold, decision: Decision) -> None:
        """Settle the answering attempt's reservation, and write what its answer tells (the
        turn's target, the session's warm caches) beside it, not after it: a store that groups
        writes commits them in one transaction instead of two (an agent's every request)."""
        memories = self._memories(decision) if hold.reserved else []
        if not memories:
            await hold.settle(decision.usage, decision.cost_micros)
            return
        decision.remembered = True
        await asyncio.gather(hold.settle(decision.usage, decision.cost_micros), *memories)

    def _memories(self, decision: Decision) -> list[Awaitable[None]]:
        """The writes that remember what the decision's answer tells, not started yet."""
        now = self.clock()
        memories: list[Awaitable[None]] = []
        if _keeps_turn(decision):
            memories.append(_remember_turn(self.store, decision, now))
        if _learns_warmth(decision, self.policy):
            memories.append(_remember_warmth(self.store, self.policy, decision, now))
        return memories

    def _provider(self, name: str) -> Provider:
        provider = self._providers.get(name)
        if provider is None:
            if self._session is None:
                self._session = new_session()
            spec = self.policy.providers[name]
            provider = self._providers[name] = registry.build(spec, self._session)
        return provider

    def swap_policy(self, policy: Policy) -> None:
        """Use a new policy for new requests (config reload); requests in flight keep theirs.

        Adapters whose provider settings changed are dropped, so a new base URL, header or
        timeout applies from the next attempt on.
        """
        old = self.policy
        self.policy = policy
        self.tz = ZoneInfo(policy.budgets.timezone)
        for name in list(self._providers):
            if policy.providers.get(name) != old.providers.get(name):
                del self._providers[name]

    # -- state commands ------------------------------------------------------------------------

    async def probe(self, *, all_cooled: bool = False) -> list[tuple[str, str]]:
        """Probe the cooled keys that are due (see `probe.py`; `all_cooled`: every cooled key a
        probe can test, due or not) and, in automatic emergency mode, the cloud once it is due
        (`emergency.retry_target`); `(key, outcome)` for each."""
        snapshot = await self.store.snapshot(self.clock())
        due = due_probes(snapshot, self.policy, all_cooled=all_cooled)
        if (retry := emergency.retry_target(self.policy, snapshot, self.tz)) is not None:
            credential = retry.credentials[0] if retry.credentials else None
            due.append(ProbeTarget(f"emergency:{retry.id}", retry.model, credential))
        results = [(each.key, await self._ping(each)) for each in due]
        reached = [
            d.model.id for d, (_, outcome) in zip(due, results, strict=True) if outcome == "ok"
        ]
        cloud = [m for m in reached if not self.policy.provider_of(m).local]
        if cloud and snapshot.emergency and not emergency.manual(snapshot):
            reason = f"a probe reached the cloud ({cloud[0]})"
            await emergency.switch(self.store, False, self.clock(), reason)
        return results

    async def _ping(self, due: ProbeTarget) -> str:
        """One one-token request; `ok` (and the key recovered) or the failure class."""
        provider = self._provider(due.model.provider)
        request = replace(ChatRequest.of("ping", model=due.model.id), max_tokens=8)
        try:
            await provider.complete(request, due.model, due.credential)
        except ProviderError as exc:
            target = Target(due.model, self.policy.providers[due.model.provider])
            await self._cool(exc, target, due.credential)
            return exc.failure.value
        await self.store.recover(due.key)
        log.info("probe succeeded: %s is usable again", due.key)
        return "ok"

    async def reset(self, target: str = "") -> int:
        """Clear cooldowns: all, or those of a provider, credential or model."""
        if not target:
            return await self.store.reset("")
        snapshot = await self.store.snapshot(self.clock())
        keys = [k for k in snapshot.cooldowns if _matches(k, target, self.policy)]
        for key in keys:
            await self.store.reset(key)
        return len(keys)


class RoutedStream:
    """An async iterator of chunks with the decision of the request attached."""

    def __init__(self, router: Router, request: ChatRequest) -> None:
        self.decision: Decision | None = None
        self.target: str | None = None
        self._chunks = router._stream(request, self)

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks

    async def aclose(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]


class _Attempts:
    """(target, credential) pairs in order.

    A failure that does not rotate keys ends its target. What one attempt cooled down is honoured
    by the rest of the same request: after a billing failure on `anthropic#1`, the chain's other
    Anthropic models are not tried with that key again.
    """

    def __init__(self, route: RoutePlan, decision: Decision) -> None:
        self._route = route
        self._decision = decision
        self._next_target = False
        self.cooled: set[str] = set()
        self.local_only = False  # set when a failure of this request started emergency mode

    def __iter__(self) -> Iterator[tuple[Target, Credential | None]]:
        for target in self._route.targets:
            self._next_target = False
            if self.local_only and not target.provider.local:
                self._decision.skipped.append(Skip(target.id, "emergency mode: local only"))
                continue
            usable = [c for c in target.credentials or (None,) if not self._cooled(target, c)]
            if not usable:
                self._decision.skipped.append(Skip(target.id, "cooled down by this request"))
            for credential in usable:
                yield target, credential
                if self._next_target:
                    break

    def _cooled(self, target: Target, credential: Credential | None) -> bool:
        cred = _cred_id(credential) or local_credential_id(target.provider)
        keys = (credential_key(cred), credential_key(cred, target.id), model_key(target.id))
        return any(k in self.cooled for k in keys)

    def failed(self, exc: ProviderError, keys: tuple[str, ...]) -> None:
        self._next_target = not ACTIONS[exc.failure].rotate_key
        self.cooled.update(keys)


class _Output:
    """What a stream attempt has passed on so far: whether it started, and how much."""

    def __init__(self, target: Target, request: ChatRequest) -> None:
        self.target = target
        self.request = request  # as sent to the target
        self.t0 = time.perf_counter()
        self.started = False
        self.chars = 0
        self.parts: list[str] = []  # the answer text passed on (references, not copies)
        self.calls_tools = False

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def note(self, chunk: Chunk) -> None:
        self.started = True
        if isinstance(chunk, TextDelta | ThinkingDelta):
            self.chars += len(chunk.text)
            if isinstance(chunk, TextDelta):
                self.parts.append(chunk.text)
        elif isinstance(chunk, ToolCallDelta):
            self.chars += len(chunk.arguments)
        elif isinstance(chunk, ToolCallStart):
            self.calls_tools = True


def _minimal(routed: emergency.Routed, task: TaskClass, policy: Policy) -> bool:
    """Minimal context for the route's class, and in emergency mode for a class that has it."""
    if routed.route.context is ContextPolicy.MINIMAL:
        return True
    return routed.emergency == emergency.ON and policy.tasks[task].context is ContextPolicy.MINIMAL


def _cache_ttl(route: RoutePlan, policy: Policy, warm: warmth.Warm) -> str | None:
    """The TTL of the prompt-cache breakpoints an adapter places for the routed class: the class's
    own, or under `auto` what the session's rhythm calls for (`warmth.ttl`)."""
    ttl = policy.tasks[route.task].cache_ttl if route.task in policy.tasks else None
    return warmth.ttl(warm) if ttl == "auto" else ttl


def _fit(
    fitting: Fitting, request: ChatRequest, target: Target, decision: Decision
) -> ChatRequest | None:
    """The request as `target` takes it (`fit.py`); None, with the skip recorded, if it cannot."""
    adapted = fitting.prepare(request, target.model)
    if adapted.refusal is not None:
        decision.skipped.append(Skip(target.id, adapted.refusal))
        return None
    return adapted.request


def _partial(request: ChatRequest, out: _Output) -> Callable[[], Usage | None]:
    """What a stream attempt used if it stops after its first token (for the budgets)."""
    return lambda: _estimated_usage(request, out) if out.started else None


def _estimated_usage(request: ChatRequest, out: _Output) -> Usage:
    return Usage(estimate_prompt(request), estimate_text("x" * out.chars), estimated=True)


def _matches(key: str, target: str, policy: Policy) -> bool:
    """Whether a state key belongs to a provider, credential or model named by the user."""
    body = key.split(":", 1)[1]
    parts = body.split("|")
    model = policy.resolve_model(target)
    if model is not None:
        return model.id in parts
    return any(p == target or p.startswith(f"{target}#") for p in parts)


def _cred_id(credential: Credential | None) -> str | None:
    return credential.id if credential is not None else None


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "cancelled (client disconnected)"
    if isinstance(exc, ProviderError):
        return f"{exc.failure.value}: {exc}"
    return str(exc) or type(exc).__name__


def _ledger_sink(ledger: Ledger) -> Sink:
    async def sink(decision: Decision) -> None:
        await ledger.record(decision)
        await _log_decision(decision)

    return sink


async def _log_decision(decision: Decision) -> None:
    log.info(
        "decision %s task=%s answered_by=%s attempts=%d error=%s",
        decision.request_id,
        decision.task,
        decision.answered_by,
        len(decision.attempts),
        decision.error,
    )


# -- one model per agent turn (affinity.py) ---------------------------------------------------


async def _turn_target(store: StateStore, turn: str, now: float) -> str | None:
    """The target that answered the turn so far; None (planned afresh) if the store fails."""
    try:
        return await store.turn_target(turn, now)
    except Exception:
        log.exception("turn affinity: reading the turn's model failed")
        return None


def _auto_plan(
    found: Classification, policy: Policy, snapshot: Snapshot, request: ChatRequest
) -> RoutePlan:
    """The route auto routing would plan (for shadow mode's report of the cache's choice)."""
    auto = replace(policy, routing=replace(policy.routing, mode=RoutingMode.AUTO))
    return plan_route(found, auto, snapshot, demand_of(request))


@dataclass(frozen=True, slots=True)
class _Warmth:
    """What a request's session holds warm, Stellwerk's estimate of the prompt, and the choice."""

    session: str = ""
    caches: warmth.Warm = field(default_factory=dict)
    estimate: int = 0
    cache: warmth.Choice | None = None


def _cache_routed(routed: emergency.Routed, choice: warmth.Choice) -> tuple[emergency.Routed, str]:
    """The route after the cache's choice, and what the reason says: the chosen target first
    in auto mode; in shadow mode only what it would have done."""
    if not choice.changed:
        return routed, choice.explain()
    if routed.route.mode is not RoutingMode.AUTO:
        return routed, f"cache-aware would take {choice.chosen}, not {choice.planned}"
    route = starting_at(routed.route, choice.chosen, choice.explain())
    return replace(routed, route=route), choice.explain()


def _learns_warmth(decision: Decision, policy: Policy) -> bool:
    """Whether the decision's answer tells what a session's cache holds (`_remember_warmth`)."""
    target = decision.answered_by
    return bool(decision.session) and target is not None and target in policy.models


async def _remember_warmth(
    store: StateStore, policy: Policy, decision: Decision, now: float
) -> None:
    """Learn what the answering target's cache now holds for the decision's session."""
    target = decision.answered_by
    if not _learns_warmth(decision, policy) or target is None:
        return
    kind = policy.provider_of(target).type
    retention = policy.models[target].cache_retention
    usage, estimate = decision.usage, decision.estimate
    learned = warmth.learned(decision.warm, target, kind, usage, now, estimate, retention)
    known = learned if learned is not None else decision.warm
    warm = warmth.seen(known, now, first=not decision.continuation)
    ttl = max((e[1] for e in warm.values()), default=now + 1) - now
    try:
        await store.remember_turn(warmth.KEY + decision.session, warmth.encode(warm), now, ttl)
    except Exception:
        log.exception("cache-aware routing: remembering the warm caches failed")


def _kept_turn(routed: emergency.Routed, kept: str) -> tuple[emergency.Routed, str]:
    """The route started at the turn's target, the rest of the chain after it as fallback, and
    what the decision's reason says. A target the plan left out (cooling down, too small now,
    not in this chain, e.g. in emergency mode) leaves the route as planned."""
    route = routed.route
    if all(t.id != kept for t in route.targets):
        skip = next((s.reason for s in route.skipped if s.target == kept), "not in the chain")
        return routed, f"turn affinity: {kept} left out ({skip})"
    why = f"turn affinity: {kept}"
    return replace(routed, route=starting_at(route, kept, why)), why


def _keeps_turn(decision: Decision) -> bool:
    """Whether the decision's answer keeps its turn going (it calls tools): a continuation will
    ask which target answered (`_remember_turn`)."""
    return bool(decision.turn) and decision.answered_by is not None and decision.calls_tools


async def _remember_turn(store: StateStore, decision: Decision, now: float) -> None:
    """Record which target answered the decision's turn (every answer that calls tools starts
    the turn's TTL again); the answer stands if the store fails, and the next request is planned
    afresh. An answer without tool calls ends its turn: no continuation will ask, so nothing is
    written (most requests: a short prompt, a heartbeat, a tool loop's last step)."""
    if not _keeps_turn(decision) or decision.answered_by is None:
        return
    try:
        await store.remember_turn(decision.turn, decision.answered_by, now, TURN_TTL)
    except Exception:
        log.exception("turn affinity: remembering the turn's model failed")


__all__ = ["Answer", "FailureClass", "RoutedStream", "Router", "minimal_context"]
