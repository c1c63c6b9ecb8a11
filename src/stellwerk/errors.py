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

Messages never contain secrets: credentials are referred to by their masked id only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

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
        self.skipped = tuple(skipped)
        reasons = "; ".join(f"{t}: {r}" for t, r in self.skipped) or "empty chain"
        super().__init__(f"no target available ({reasons})")


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
        self.body = body
        self.target = target
        self.after_first_token = after_first_token
        super().__init__(message)

    @property
    def fallback(self) -> bool:
        """Whether the router may try the next target after this failure."""
        from .failures import ACTIONS

        return ACTIONS[self.failure].fallback and not self.after_first_token


class AllTargetsFailed(StellwerkError):
    """Every target in the chain was tried and failed; `attempts` is `(target, failure, msg)`."""

    status = 502

    def __init__(self, attempts: Sequence[tuple[str, str, str]]) -> None:
        self.attempts = tuple(attempts)
        listing = "; ".join(f"{t}: {f} ({m})" for t, f, m in self.attempts)
        super().__init__(f"all targets failed: {listing}")
