"""Stellwerk: a model router and gateway for LLM traffic.

The public names are loaded on first use, so `import stellwerk` (and the CLI) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .classify import Classification, classify
    from .config import load_policy
    from .decision import Attempt, Decision
    from .errors import (
        AllTargetsFailed,
        BudgetExhausted,
        ConfigError,
        NoRouteAvailable,
        ProviderError,
        RequestError,
        StellwerkError,
        UnknownModelError,
    )
    from .failures import FailureClass
    from .plan import RoutePlan, plan_route
    from .policy import Policy
    from .router import Answer, RoutedStream, Router
    from .types import ChatRequest, ChatResponse, Message, TaskClass, Tool, Usage

_EXPORTS = {
    "AllTargetsFailed": "errors",
    "Answer": "router",
    "Attempt": "decision",
    "BudgetExhausted": "errors",
    "ChatRequest": "types",
    "ChatResponse": "types",
    "Classification": "classify",
    "ConfigError": "errors",
    "Decision": "decision",
    "FailureClass": "failures",
    "Message": "types",
    "NoRouteAvailable": "errors",
    "Policy": "policy",
    "ProviderError": "errors",
    "RequestError": "errors",
    "RoutePlan": "plan",
    "RoutedStream": "router",
    "Router": "router",
    "StellwerkError": "errors",
    "TaskClass": "types",
    "Tool": "types",
    "UnknownModelError": "errors",
    "Usage": "types",
    "classify": "classify",
    "load_policy": "config",
    "plan_route": "plan",
}

__all__ = [
    "AllTargetsFailed",
    "Answer",
    "Attempt",
    "BudgetExhausted",
    "ChatRequest",
    "ChatResponse",
    "Classification",
    "ConfigError",
    "Decision",
    "FailureClass",
    "Message",
    "NoRouteAvailable",
    "Policy",
    "ProviderError",
    "RequestError",
    "RoutePlan",
    "RoutedStream",
    "Router",
    "StellwerkError",
    "TaskClass",
    "Tool",
    "UnknownModelError",
    "Usage",
    "classify",
    "load_policy",
    "plan_route",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stellwerk' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
