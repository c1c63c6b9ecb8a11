"""The failure table of the architecture, as data.

What an upstream failure *means* is decided here once: whether the router falls back, what is put
into cooldown (the credential, the credential+model pair, the model, or nothing), and whether the
caller gets the error back as its own. The router reads this table instead of growing `if` ladders.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal


class FailureClass(enum.StrEnum):
    BILLING = "billing"
    RATE_LIMIT = "rate_limit"
    OVERLOADED = "overloaded"
    SERVER = "server"
    TIMEOUT = "timeout"
    CONNECT = "connect"
    AUTH = "auth"
    MODEL_NOT_FOUND = "model_not_found"
    CONTEXT_OVERFLOW = "context_overflow"
    INVALID_REQUEST = "invalid_request"
    STREAM_BROKEN = "stream_broken"


CooldownScope = Literal["credential", "credential_model", "model", "none"]
CooldownKind = Literal["billing", "rate_limit", "breaker", "disabled", "unavailable", "none"]


@dataclass(frozen=True, slots=True)
class Action:
    """What the router does after one failure of a class."""

    fallback: bool  # try the next target
    rotate_key: bool  # first try the next key of the same provider
    scope: CooldownScope  # what cools down
    cooldown: CooldownKind  # which duration rule applies


ACTIONS: dict[FailureClass, Action] = {
    FailureClass.BILLING: Action(True, True, "credential", "billing"),
    FailureClass.RATE_LIMIT: Action(True, True, "credential_model", "rate_limit"),
    FailureClass.OVERLOADED: Action(True, False, "credential_model", "breaker"),
    FailureClass.SERVER: Action(True, False, "credential_model", "breaker"),
    FailureClass.TIMEOUT: Action(True, False, "credential_model", "breaker"),
    FailureClass.CONNECT: Action(True, False, "credential", "breaker"),
    FailureClass.AUTH: Action(True, True, "credential", "disabled"),
    FailureClass.MODEL_NOT_FOUND: Action(True, False, "model", "unavailable"),
    FailureClass.CONTEXT_OVERFLOW: Action(True, False, "none", "none"),
    FailureClass.INVALID_REQUEST: Action(False, False, "none", "none"),
    FailureClass.STREAM_BROKEN: Action(True, False, "credential_model", "breaker"),
}
