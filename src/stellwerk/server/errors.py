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

log = logging.getLogger("stellwerk.server")
JSON = dict[str, Any]

# Anthropic's error type for each status it documents; 5xx not listed are `api_error`.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
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
    code: str | None = None
    param: str | None = None
    retry: bool = True  # False sends `x-should-retry: false`: the SDKs then do not retry
    details: JSON = field(default_factory=dict)  # extra fields: attempts, skipped

    @property
    def anthropic_type(self) -> str:
        return _ANTHROPIC_TYPES.get(self.status, "api_error")

    def redacted(self, secrets: Iterable[str]) -> Problem:
        """The same problem with every secret value in its texts masked."""
        values = [s for s in secrets if len(s) >= 8]
        if not values:
            return self
        return replace(
            self, message=redact(self.message, values), details=_redact_tree(self.details, values)
        )


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, f"{secret[:3]}…{secret[-4:]}")
    return text


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
        return Problem(400, str(exc), code="upstream_invalid_request")
    where = f"{exc.target}: " if exc.target else ""
    message = f"{where}{exc.failure.value}: {exc}"
    return Problem(502, message, "upstream_error", exc.failure.value, retry=False)


def internal_error(request_id: str) -> Problem:
    text = "internal error in the gateway; the gateway log has the details"
    return Problem(500, f"{text} (request {request_id})" if request_id else text, "server_error")


def unauthorized() -> Problem:
    return Problem(401, "invalid or missing API key for this gateway", code="invalid_api_key")


def too_large(limit: int) -> Problem:
    return Problem(413, f"request body too large (limit {limit} bytes)", code="request_too_large")


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
