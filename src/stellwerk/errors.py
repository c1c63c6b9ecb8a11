"""Every error Stellwerk raises, in one tree.

```
StellwerkError
├── ConfigError              bad config; the message quotes the key path
├── RequestError      400    bad client input
│   └── UnknownModelError 404  the model, alias or class named does not exist
├── BudgetExhausted   429    the budget policy says block
├── NoRouteAvailable  503    every target was cooling down, over budget or too small
├── ProviderError            one attempt failed; carries its FailureClass
└── AllTargetsFailed  502    every attempt failed; .attempts lists them in order
```

Messages never contain secrets: credentials are referred to by their masked id only, and every
text an upstream sent passes `redaction.scrub` before it becomes part of a `ProviderError` (its
message and its body), so no key an upstream echoes reaches a store, a log or a caller.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .redaction import scrub, scrub_bytes

if TYPE_CHECKING:
    from .failures import FailureClass


class StellwerkError(Exception):
    """Base of every error Stellwerk raises on purpose."""

    status = 500
    kind = "api_error"


class ConfigError(StellwerkError):
    """The configuration is invalid; `path` names the offending key (`tasks.code.fallbacks[1]`)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class RequestError(StellwerkError):
    """The caller's request is malformed or asks for something impossible."""

    status = 400
    kind = "invalid_request_error"


class UnknownModelError(RequestError):
    status = 404
    kind = "not_found_error"


class BudgetExhausted(StellwerkError):
    status = 429
    kind = "rate_limit_error"


class NoRouteAvailable(StellwerkError):
    """No target may be tried; `skipped` holds `(target, reason)` pairs."""

    status = 503
    kind = "overloaded_error"

    def __init__(self, skipped: Sequence[tuple[str, str]]) -> None:
        self.skipped = tuple((t, scrub(r)) for t, r in skipped)
        reasons = "; ".join(f"{t}: {r}" for t, r in self.skipped) or "empty chain"
        super().__init__(f"no target available ({reasons})")


@dataclass(frozen=True, slots=True)
class UpstreamError:
    """The error object an upstream sent, as it sent it: what the caller gets back "as is" when
    the upstream rejected the request as the caller's own error."""

    format: Literal["openai", "anthropic", "plain"]  # OpenAI-shaped (OpenRouter, ...), or not
    message: str
    type: str | None = None
    param: str | None = None
    code: str | int | None = None


def upstream_error_of(body: bytes | None) -> UpstreamError | None:
    """The error object of an upstream error body: OpenAI's `{"error": {message, type, param,
    code}}`, Anthropic's `{"type": "error", "error": {type, message}}`, Ollama's
    `{"error": "text"}`; None when the body holds none."""
    if not body:
        return None
    try:
        data: Any = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return UpstreamError("plain", text) if text else None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, str) and error:
        return UpstreamError("plain", error)
    if not isinstance(error, dict):
        return None
    message, kind = error.get("message"), error.get("type")
    if not isinstance(message, str):
        message = str(message or kind or "")
    kind = kind if isinstance(kind, str) else None
    if data.get("type") == "error":
        return UpstreamError("anthropic", message, kind)
    param, code = error.get("param"), error.get("code")
    return UpstreamError(
        "openai",
        message,
        kind,
        param if isinstance(param, str) else None,
        code if isinstance(code, str | int) and not isinstance(code, bool) else None,
    )


class ProviderError(StellwerkError):
    """One attempt at one target failed."""

    status = 502

    def __init__(
        self,
        failure: FailureClass,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        body: bytes | None = None,
        target: str = "",
        after_first_token: bool = False,
    ) -> None:
        self.failure = failure
        self.upstream_status = status
        self.retry_after = retry_after
        self.body = scrub_bytes(body) if body else body
        self.target = target
        self.after_first_token = after_first_token
        super().__init__(scrub(message))

    @property
    def upstream_error(self) -> UpstreamError | None:
        """The upstream's own error object, from the (scrubbed) body it sent."""
        return upstream_error_of(self.body)

    @property
    def fallback(self) -> bool:
        """Whether the router may try the next target after this failure."""
        from .failures import ACTIONS

        return ACTIONS[self.failure].fallback and not self.after_first_token


class AllTargetsFailed(StellwerkError):
    """Every target in the chain was tried and failed; `attempts` is `(target, failure, msg)`."""

    status = 502

    def __init__(self, attempts: Sequence[tuple[str, str, str]]) -> None:
        self.attempts = tuple((t, f, scrub(m)) for t, f, m in attempts)
        listing = "; ".join(f"{t}: {f} ({m})" for t, f, m in self.attempts)
        super().__init__(f"all targets failed: {listing}")
