"""What the caller is told about routing: the `x-stellwerk-*` headers and the inline notice.

A gateway that silently answers with another model than the one asked for loses trust the first
time a user notices. Every answer therefore names its task class, the model that answered, how many
attempts it took and why each earlier target of the chain did not answer; the request that first
crosses a budget threshold says so in `x-stellwerk-budget` (`warn 83% daily`). Header values are
ASCII and single-line (HTTP allows nothing else safely); the optional inline notice is one short
line appended to the answer text, for users who never look at headers. In emergency mode every
answer carries `x-stellwerk-mode: emergency` (`emergency-retry` while it tries the cloud again),
and `x-stellwerk-notice` carries every notice of the decision (emergency mode, context fitted,
tools dropped), separated by ` | `.
"""

from __future__ import annotations

import unicodedata

from ..decision import Decision

NOTICE_PREFIX = "\n\n[stellwerk] "
MODES = {"on": "emergency", "retry": "emergency-retry"}  # Decision.emergency -> x-stellwerk-mode


def notice_headers(
    decision: Decision | None, target: str | None = None, *, streaming: bool = False
) -> dict[str, str]:
    """The notice headers for a decision; `streaming` counts the attempt still running."""
    if decision is None:
        return {}
    target = target or decision.answered_by
    attempts = len(decision.attempts) + (1 if streaming and target else 0)
    headers = {"x-stellwerk-task": header_value(decision.task)}
    if target:
        headers["x-stellwerk-model"] = header_value(target)
    headers["x-stellwerk-attempts"] = str(attempts)
    if reasons := fallback_reasons(decision, target):
        headers["x-stellwerk-fallback"] = ", ".join(header_value(r) for r in reasons)
    if decision.budget_notice:
        headers["x-stellwerk-budget"] = header_value(decision.budget_notice)
    if mode := MODES.get(decision.emergency):
        headers["x-stellwerk-mode"] = mode
    if decision.notices:
        headers["x-stellwerk-notice"] = " | ".join(header_value(n) for n in decision.notices)
    return headers


def fallback_reasons(decision: Decision, target: str | None) -> list[str]:
    """Why each target before `target` in the chain did not answer, in chain order.

    A failed attempt reads `anthropic/claude-haiku-4-5: billing`; a target the plan left out
    reads `anthropic/claude-sonnet-4-0: skipped (no key)`. Without an answer: the whole chain.
    """
    chain = decision.route.chain
    upto = chain.index(target) if target in chain else len(chain)
    failures: dict[str, list[str]] = {}
    for attempt in decision.attempts:
        if not attempt.ok:
            failures.setdefault(attempt.target, []).append(attempt.failure or "failed")
    skips = {s.target: s.reason for s in decision.all_skipped}
    reasons: list[str] = []
    for model_id in chain[:upto]:
        if model_id in failures:
            reasons.extend(f"{model_id}: {f}" for f in failures[model_id])
        elif model_id in skips:
            reasons.append(f"{model_id}: skipped ({skips[model_id]})")
    return reasons


def header_value(text: str) -> str:
    """`text` as a safe header value: ASCII, one line, no commas (they separate entries)."""
    if text.isascii() and text.isprintable() and "," not in text and "  " not in text:
        return text.strip()  # already safe: the common case, at a fraction of the cost
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join(plain.replace(",", ";").split())


def inline_notice(decision: Decision) -> str | None:
    """The line appended to the answer when a fallback answered, or None."""
    if not decision.notices:
        return None
    return NOTICE_PREFIX + decision.notices[-1]
