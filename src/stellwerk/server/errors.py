"""Every failure the gateway answers, as one `Problem`, rendered in the caller's own format.

Clients branch on the status and on the error body their SDK knows, so a 404 for an unknown model
must look like OpenAI's own 404 to the OpenAI SDK and like Anthropic's to the Anthropic SDK. One
table maps Stellwerk's error tree to a status and the type names of both formats; the renderers
below never decide anything. Messages pass through `redact` on their way out: an upstream that
echoes a key in its error text does not get that key into the caller's hands.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import (
    AllTargetsFailed,
    BudgetExhausted,
    NoRouteAvailable,
    ProviderError,
    RequestError,
    StellwerkError,
    UnknownModelError,
)
from ..failures import FailureClass
from ..redaction import scrub
from ..wire.limits import cap

log = logging.getLogger("stellwerk.server")
JSON = dict[str, Any]

# Anthropic's error type for each status it documents; 5xx not listed are `api_error`.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    417: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
_PATH = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


@dataclass(frozen=True, slots=True)
class Problem:
    """One error answer: status, message, the type names of both formats, details."""

    status: int
    message: str
    openai_type: str = "invalid_request_error"
    code: str | int | None = None  # int: an upstream's own numeric code, passed on as is
    param: str | None = None
    retry: bool = True  # False sends `x-should-retry: false`: the SDKs then do not retry
    details: JSON = field(default_factory=dict)  # extra fields: attempts, skipped
    anthropic_kind: str | None = None  # the Anthropic type when it is not the status's own
    headers: dict[str, str] = field(default_factory=dict)  # `x-stellwerk-*` for this answer

    @property
    def anthropic_type(self) -> str:
        if self.anthropic_kind:
            return self.anthropic_kind
        return _ANTHROPIC_TYPES.get(self.status, "api_error")

    def redacted(self, secrets: Iterable[str]) -> Problem:
        """The same problem with every secret value in its texts masked."""
        values = [s for s in secrets if len(s) >= 8]
        return replace(
            self, message=redact(self.message, values), details=_redact_tree(self.details, values)
        )


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` without `secrets`, the keys this process sent, or anything shaped like a key."""
    return scrub(text, secrets)


def _redact_tree(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _redact_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_tree(v, secrets) for v in value]
    return value


# -- the table -------------------------------------------------------------------------------


def problem_for(exc: BaseException, request_id: str = "") -> Problem:
    """The answer for an exception raised while serving a request."""
    if isinstance(exc, HTTPProblem):
        return exc.problem
    if isinstance(exc, UnknownModelError):
        return Problem(404, str(exc), code="model_not_found", param="model")
    if isinstance(exc, RequestError):
        return Problem(400, str(exc), param=_param(str(exc)))
    if isinstance(exc, BudgetExhausted):
        return Problem(429, str(exc), "rate_limit_error", "budget_exhausted", retry=False)
    if isinstance(exc, NoRouteAvailable):
        if (unservable := request_fits_nowhere(exc.skipped)) is not None:
            return unservable
        skipped = [{"target": t, "reason": r} for t, r in exc.skipped]
        kind, code = "service_unavailable", "no_route_available"
        return Problem(503, str(exc), kind, code, retry=False, details={"skipped": skipped})
    if isinstance(exc, AllTargetsFailed):
        attempts = [{"target": t, "failure": f, "message": m} for t, f, m in exc.attempts]
        kind, code = "upstream_error", "all_targets_failed"
        return Problem(502, str(exc), kind, code, retry=False, details={"attempts": attempts})
    if isinstance(exc, ProviderError):
        return _provider_problem(exc)
    if isinstance(exc, StellwerkError):
        return Problem(exc.status, str(exc), exc.kind)
    log.error("unexpected error in request %s", request_id, exc_info=exc)
    return internal_error(request_id)


def _provider_problem(exc: ProviderError) -> Problem:
    """A failure the router did not fall back from: the caller's own error, or a broken stream."""
    if exc.failure is FailureClass.INVALID_REQUEST:
        return callers_own(exc)
    where = f"{exc.target}: " if exc.target else ""
    message = f"{where}{exc.failure.value}: {exc}"
    return Problem(502, message, "upstream_error", exc.failure.value, retry=False)


_TOO_SMALL = re.compile(r"^context (\S+) > window (\S+)$")
_LACKS = "lacks "
_NOT_ALLOWED = frozenset({"emergency mode: local only"})
"""Skip reasons that say a target is not allowed for this request (not that it is unavailable)."""


def request_fits_nowhere(skipped: Iterable[tuple[str, str]]) -> Problem | None:
    """The caller's 400 when every target was left out for the request itself: its prompt is
    too long for every window, or it needs a capability (vision, tools) no allowed model has.

    Such a request fails the same way on every retry, so it is not a 503 (which SDKs retry and
    the Anthropic format calls `overloaded_error`); it is what the providers answer: a 400
    context-length error. A chain with any target merely unavailable now (cooling down, down,
    no key, over budget) stays a 503. Read from the planner's skip reasons."""
    pairs = list(skipped)
    own = [(t, r) for t, r in pairs if _TOO_SMALL.match(r) or r.startswith(_LACKS)]
    if not own or any(r not in _NOT_ALLOWED for t, r in pairs if (t, r) not in own):
        return None
    details = {"skipped": [{"target": t, "reason": r} for t, r in pairs]}
    listed = "; ".join(f"{t}: {r}" for t, r in own)
    sizes = [m.groups() for _, r in own if (m := _TOO_SMALL.match(r))]
    if sizes:  # the prompt is what to fix first, also when a model lacks something too
        largest = max(sizes, key=lambda size: _tokens(size[1]))
        text = (
            f"prompt is too long: about {largest[0]} tokens (prompt and output) > {largest[1]}"
            f" maximum, the largest context window of the models allowed for this request"
            f" ({listed}). Please reduce the length of the messages."
        )
        return Problem(
            400,
            text,
            code="context_length_exceeded",
            param="messages",
            retry=False,
            details=details,
        )
    lacking = sorted({c.strip() for _, r in own if r.startswith(_LACKS) for c in r[6:].split(",")})
    needs = " and ".join(_CAPABILITY.get(c, c) for c in lacking)
    text = f"this request needs {needs}, which no model allowed for it supports ({listed})"
    return Problem(400, text, code="capability_unavailable", retry=False, details=details)


_CAPABILITY = {"vision": "vision (it has images)", "tools": "tool use (it has tools)"}


def _tokens(text: str) -> int:
    """`200k` or `8192` (the planner's way of writing a size) as a number."""
    try:
        return int(float(text[:-1]) * 1000) if text.endswith("k") else int(text)
    except ValueError:
        return 0


def callers_own(exc: ProviderError) -> Problem:
    """The upstream's answer to the caller's own error, as is: its status (a 4xx), type, message,
    param and code, in the caller's format (an OpenAI error becomes Anthropic's
    `invalid_request_error` with the same message, and back). Stellwerk's part, which target
    said so and what it said that the caller's format has no field for, goes into headers."""
    status = exc.upstream_status or 400
    status = status if 400 <= status < 500 else 400
    error = exc.upstream_error
    headers = {"x-stellwerk-upstream": exc.target} if exc.target else {}
    if exc.upstream_status:
        headers["x-stellwerk-upstream-status"] = str(exc.upstream_status)
    if error is None:
        return Problem(400, str(exc), code="upstream_invalid_request", headers=headers)
    if error.code is not None:
        headers["x-stellwerk-upstream-code"] = _header(str(error.code))
    if error.param is not None:
        headers["x-stellwerk-upstream-param"] = _header(error.param)
    kind = error.type or "invalid_request_error"
    anthropic = kind if error.format == "anthropic" else None
    if anthropic is None and _ANTHROPIC_TYPES.get(status, "api_error") == "api_error":
        anthropic = "invalid_request_error"  # a 4xx Anthropic has no type of its own for
    message = error.message or str(exc)
    return Problem(status, message, kind, error.code, error.param, True, {}, anthropic, headers)


def _header(value: str) -> str:
    """A header value: printable ASCII on one line, bounded."""
    return "".join(c if " " <= c <= "~" else "?" for c in value)[:200]


def internal_error(request_id: str) -> Problem:
    text = "internal error in the gateway; the gateway log has the details"
    return Problem(500, f"{text} (request {request_id})" if request_id else text, "server_error")


def unauthorized() -> Problem:
    return Problem(401, "invalid or missing API key for this gateway", code="invalid_api_key")


def too_large(limit: int) -> Problem:
    return Problem(413, f"request body too large (limit {limit} bytes)", code="request_too_large")


def undecodable(encoding: str) -> Problem:
    """A body its `Content-Encoding` header does not describe (a plain body sent as gzip)."""
    shown = cap(encoding, 40) or "(none)"
    text = f"the request body could not be decoded as its Content-Encoding says ({shown})"
    return Problem(400, text, code="invalid_content_encoding")


def loop_detected(reason: str) -> Problem:
    """A request that reached the gateway it came from: a provider's base URL (often
    `OPENAI_BASE_URL`, which the SDKs read too) points at the gateway itself."""
    text = (
        f"request loop: {reason} (x-stellwerk-hop). A provider's base URL points at a"
        " Stellwerk gateway, probably this one: check OPENAI_BASE_URL, ANTHROPIC_BASE_URL,"
        " OLLAMA_HOST and the providers' base_url in the config"
    )
    return Problem(508, text, "server_error", "loop_detected", retry=False)


def unsupported_encoding(encoding: str, supported: Iterable[str]) -> Problem:
    text = (
        f"Content-Encoding {cap(encoding, 40)!r} is not supported;"
        f" send the body as {', '.join(supported)}"
    )
    return Problem(415, text, code="unsupported_content_encoding", retry=False)


def body_timeout(seconds: float) -> Problem:
    text = f"the request body did not arrive within {seconds:g} seconds"
    return Problem(408, text, code="request_timeout")


def busy_reading(limit: int) -> Problem:
    text = f"the gateway is already receiving {limit} request bodies; try again shortly"
    return Problem(503, text, "service_unavailable", "too_many_uploads")


def _param(message: str) -> str | None:
    """The key path a RequestError message starts with (`messages[0].role: ...`), if any."""
    match = _PATH.match(message)
    return match.group(1) if match else None


# -- the two formats -------------------------------------------------------------------------


def openai_error(problem: Problem) -> JSON:
    """`{"error": {message, type, param, code}}` as the OpenAI SDKs read it."""
    error: JSON = {
        "message": problem.message,
        "type": problem.openai_type,
        "param": problem.param,
        "code": problem.code,
    }
    return {"error": {**error, **problem.details}}


def anthropic_error(problem: Problem) -> JSON:
    """`{"type": "error", "error": {type, message}}` as the Anthropic SDKs read it."""
    error: JSON = {"type": problem.anthropic_type, "message": problem.message}
    return {"type": "error", "error": {**error, **problem.details}}


class HTTPProblem(Exception):
    """Raised inside the gateway to answer with a Problem (401, 413, ...)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(problem.message)
