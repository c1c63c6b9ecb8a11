"""Prometheus metrics of one gateway, fed by the router's decisions.

Every request ends in exactly one decision (also on failure and on a client that hung up), so
the metrics are taken from the decision sink instead of from the handlers: nothing is counted
twice and nothing is missed. Each app has its own `CollectorRegistry`, so tests (and two apps in
one process) never share counters. Labels hold task classes, target ids and failure classes only:
bounded by the config, and never a key or a prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..failures import FailureClass

if TYPE_CHECKING:
    from ..decision import Decision
    from ..ledger import Ledger
    from ..state.base import Snapshot

CANCELLED = frozenset({"cancelled (client disconnected)"})  # router._error_text
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The gateway's counters, histograms and gauges, and their text exposition."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            GCCollector,
            Histogram,
            ProcessCollector,
        )

        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, CPU seconds, fds
        GCCollector(registry=registry)  # python_gc_collections_total by generation
        self.requests = Counter(
            "stellwerk_requests",
            "Routed requests by task class, answering target and outcome",
            ["task", "target", "outcome"],
            registry=registry,
        )
        self.attempts = Counter(
            "stellwerk_attempts",
            "Attempts by target and failure class (ok: answered)",
            ["target", "failure"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "stellwerk_fallbacks",
            "Moves to the next target, by the failure class that caused them",
            ["failure"],
            registry=registry,
        )
        self.duration = Histogram(
            "stellwerk_request_duration_seconds",
            "Time from routing start to the recorded decision",
            ["task"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.upstream = Histogram(
            "stellwerk_upstream_duration_seconds",
            "Duration of one attempt at one target",
            ["target"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.tokens = Counter(
            "stellwerk_tokens",
            "Tokens by answering target and direction (input, output)",
            ["target", "direction"],
            registry=registry,
        )
        self.cost = Counter(
            "stellwerk_cost_usd", "Cost in US dollars by target", ["target"], registry=registry
        )
        self.cooldowns = Gauge(
            "stellwerk_cooldowns_active",
            "Active cooldowns by failure class",
            ["reason"],
            registry=registry,
        )
        self.emergency = Gauge(
            "stellwerk_emergency_mode", "1 while local-only emergency mode is on", registry=registry
        )
        self.responses = Counter(
            "stellwerk_http_responses",
            "HTTP responses by endpoint and status",
            ["endpoint", "status"],
            registry=registry,
        )
        self.ledger_pending = Gauge(
            "stellwerk_ledger_pending_rows",
            "Decisions recorded but not yet written to the ledger",
            registry=registry,
        )
        self.ledger_failing = Gauge(
            "stellwerk_ledger_write_failing",
            "1 while the ledger's last write failed (its rows wait for the next one)",
            registry=registry,
        )
        self.ledger_dropped = Counter(
            "stellwerk_ledger_dropped_rows",
            "Decisions the ledger gave up on (writes kept failing, or recorded after shutdown)",
            registry=registry,
        )
        self._dropped = 0  # the ledger's count when last exported
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: `labels()` validates and locks on every
        call, and the label values are bounded by the config."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, decision: Decision) -> None:
        """Count one finished request from its decision."""
        child = self._child
        task, target = decision.task, decision.answered_by or "none"
        child(self.requests, task, target, outcome(decision)).inc()
        for attempt in decision.attempts:
            child(self.attempts, attempt.target, attempt.failure or "ok").inc()
            child(self.upstream, attempt.target).observe(attempt.latency_ms / 1000)
        for failure in fallback_failures(decision):
            child(self.fallbacks, failure).inc()
        if decision.finished is not None:
            child(self.duration, task).observe(max(decision.finished - decision.started, 0.0))
        if decision.answered_by is not None or decision.usage.total_tokens:
            child(self.tokens, target, "input").inc(decision.usage.input_tokens)
            child(self.tokens, target, "output").inc(decision.usage.output_tokens)
            child(self.cost, target).inc(decision.cost_micros / 1_000_000)

    def response(self, endpoint: str, status: int) -> None:
        self._child(self.responses, endpoint, str(status)).inc()

    def render(self, snapshot: Snapshot, ledger: Ledger | None = None) -> bytes:
        """The text exposition, with the state gauges read from `snapshot` and the ledger's
        backlog from `ledger` (the gateway's; none when the ledger is off)."""
        from prometheus_client import generate_latest

        if ledger is not None:
            self.ledger_pending.set(ledger.pending)
            self.ledger_failing.set(1 if ledger.failing else 0)
            if ledger.dropped > self._dropped:
                self.ledger_dropped.inc(ledger.dropped - self._dropped)
                self._dropped = ledger.dropped

        counts = dict.fromkeys((f.value for f in FailureClass), 0)
        for cooldown in snapshot.cooldowns.values():
            if cooldown.active(snapshot.now):
                counts[cooldown.reason.value] = counts.get(cooldown.reason.value, 0) + 1
        for reason, count in counts.items():
            self.cooldowns.labels(reason).set(count)
        self.emergency.set(1 if snapshot.emergency else 0)
        return bytes(generate_latest(self.registry))


def outcome(decision: Decision) -> str:
    """ok (first target of the chain answered), fallback, cancelled or error."""
    if decision.answered_by is not None:
        chain = decision.route.chain
        return "ok" if chain and chain[0] == decision.answered_by else "fallback"
    return "cancelled" if decision.error in CANCELLED else "error"


def fallback_failures(decision: Decision) -> list[str]:
    """The failure class of every failed attempt the router moved on from."""
    failed = [a.failure or "failed" for a in decision.attempts if not a.ok]
    if decision.answered_by is None and failed:
        failed.pop()  # the last failure ended the request: nothing came after it
    return failed


def content_type() -> str:
    from prometheus_client import CONTENT_TYPE_LATEST

    return str(CONTENT_TYPE_LATEST)
