"""One ledger row per decision, and the interface every ledger backend implements.

A row holds the columns that `stellwerk stats` and `stellwerk log` aggregate and filter on (time,
class, model, tokens, cost, failures) next to the whole decision as JSON, so reports stay simple
queries while nothing the router decided is lost. Rows are built once, when the decision is
recorded; a decision is never read again after that.

Backends are synchronous on purpose: the `Ledger` runs them in a worker thread, off the event
loop, and the CLI reads them the same way. SQLite and an in-process list implement the protocol;
a PostgreSQL backend needs only a new `query.Dialect` and a connection that speaks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from ..decision import Decision
from ..redaction import scrub


@dataclass(frozen=True, slots=True)
class Row:
    """One recorded decision: the aggregated columns, and the decision as JSON."""

    ts: float  # when the request started, epoch seconds
    request_id: str
    client: str  # openai | anthropic | library | cli
    task: str
    source: str  # how the class was found: rule, model, directive, header, ...
    mode: str  # the routing mode: auto | shadow | off
    routed_as: str  # the class whose chain was used (emergency when forced)
    shadow_first: str | None  # shadow mode: the first target auto routing would have used
    answered_by: str | None
    model: str | None  # whose tokens these are: answered_by, or a stream cut off mid-answer
    provider: str | None  # the provider of `model`
    upstream_model: str | None
    attempts: int
    fallback: bool  # answered after at least one failed attempt
    failures: tuple[tuple[str, str], ...]  # (target, failure class) of every failed attempt
    input_tokens: int
    output_tokens: int
    estimated: bool  # the tokens are Stellwerk's estimate, not the provider's report
    cost_micros: int
    latency_ms: float  # of the answering attempt; of all attempts when none answered
    error: str | None
    turn: str | None = None  # the agent turn (`affinity.turn_id`): its requests share it
    continuation: bool = False  # the request continued its turn after tool calls
    cache_read_tokens: int = 0  # the part of input_tokens read from a prompt cache
    cache_write_tokens: int = 0  # the part of input_tokens written to one
    cache_write_1h_tokens: int = 0  # the part of cache_write_tokens written with a 1 h TTL
    cache_displaced: str | None = None  # the target cache-aware routing took the turn from
    cache_saved_micros: int = 0  # what that choice was expected to save (`warmth.Choice`)
    prompt: str | None = None  # only with `ledger.store_content`
    answer: str | None = None  # only with `ledger.store_content`
    decision: str = ""  # the whole decision as JSON (empty when a query left it out)
    id: int | None = None  # insertion order, set by the backend

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def row_from(decision: Decision, *, store_content: bool = False) -> Row:
    """The ledger row of a finished decision."""
    model = decision.answered_by or decision.partial
    failed = tuple((a.target, a.failure) for a in decision.attempts if a.failure is not None)
    shadow = decision.route.shadow
    data = {**decision.to_json(), "ts": decision.started, "finished": decision.finished}
    encoded = msgspec.json.encode(data).decode()
    if decision.error is not None or failed:  # upstream texts: no key in them is stored
        encoded = scrub(encoded)
    return Row(
        ts=decision.started,
        request_id=decision.request_id,
        client=decision.client,
        task=decision.task,
        source=decision.source,
        mode=str(decision.route.mode),
        routed_as=str(decision.route.task),
        shadow_first=shadow[0] if shadow else None,
        answered_by=decision.answered_by,
        model=model,
        provider=model.partition("/")[0] if model else None,
        upstream_model=decision.upstream_model,
        attempts=len(decision.attempts),
        fallback=decision.answered_by is not None and bool(failed),
        failures=failed,
        input_tokens=decision.usage.input_tokens,
        output_tokens=decision.usage.output_tokens,
        estimated=decision.usage.estimated,
        cost_micros=decision.cost_micros,
        latency_ms=_latency(decision),
        error=scrub(decision.error) if decision.error else decision.error,
        turn=decision.turn or None,
        continuation=decision.continuation,
        cache_read_tokens=decision.usage.cache_read_tokens,
        cache_write_tokens=decision.usage.cache_write_tokens,
        cache_write_1h_tokens=decision.usage.cache_write_1h_tokens,
        cache_displaced=_displaced(decision),
        cache_saved_micros=_cache_saved(decision),
        prompt=decision.prompt if store_content else None,
        answer=decision.answer if store_content else None,
        decision=encoded,
    )


def _latency(decision: Decision) -> float:
    if decision.answered_by is not None and decision.attempts:
        return round(decision.attempts[-1].latency_ms, 2)
    return round(sum(a.latency_ms for a in decision.attempts), 2)


class LedgerBackend(Protocol):
    """Where rows are kept. Synchronous: called from a worker thread, one call at a time."""

    def write(self, rows: Sequence[Row]) -> None:
        """Append `rows` in one transaction: all of them or none."""
        ...

    def prune(self, before: float) -> int:
        """Delete the rows older than `before` (epoch seconds); return how many."""
        ...

    def since(self, start: float, end: float | None = None) -> list[Row]:
        """Rows with `start <= ts < end`, oldest first, without the decision JSON and content."""
        ...

    def tail(self, count: int) -> list[Row]:
        """The last `count` rows written, oldest first, complete."""
        ...

    def after(self, row_id: int, limit: int = 1000) -> list[Row]:
        """Rows written after the row with id `row_id`, oldest first, complete."""
        ...

    def close(self) -> None: ...


def _displaced(decision: Decision) -> str | None:
    """The planned target a warm cache took the turn from, when it did and the turn was routed
    so (not in shadow mode, and answered by the chosen target)."""
    choice = decision.cache
    if choice is None or not choice.changed or decision.answered_by != choice.chosen:
        return None
    return choice.planned


def _cache_saved(decision: Decision) -> int:
    choice = decision.cache
    if _displaced(decision) is None or choice is None:
        return 0
    return round(choice.planned_micros - choice.chosen_micros)
