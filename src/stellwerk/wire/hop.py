"""The hop marker: every request Stellwerk sends upstream says that Stellwerk sent it.

`OPENAI_BASE_URL` is both the variable the official SDKs read to find a gateway and the one
Stellwerk reads to find OpenAI; pointed at the gateway's own address, one request became 76
nested decisions (issue 15). Each upstream request carries `x-stellwerk-hop` with the ids of the
gateways it has passed, this one last; a gateway refuses a request whose marker names itself, or
that has already passed `MAX_HOPS` gateways (a loop through several gateways, or through the
workers of one, whose ids differ unless `serve --workers` shares one).
"""

from __future__ import annotations

import os
import secrets
from contextvars import ContextVar

HOP_HEADER = "x-stellwerk-hop"
INSTANCE_ENV = "STELLWERK_INSTANCE_ID"
INSTANCE = os.environ.get(INSTANCE_ENV) or f"sw-{secrets.token_hex(6)}"
"""This process's id in the marker (workers of one `serve --workers` share their parent's)."""
MAX_HOPS = 4
"""Gateways a request may already have passed (deliberately chained gateways stay possible)."""
MAX_MARKER = 400
"""Characters of a marker that are read; a longer one counts as too many hops."""

INCOMING: ContextVar[tuple[str, ...]] = ContextVar("stellwerk_hops", default=())
"""The gateways the request being served has passed (set by the gateway for each request)."""


def hop_headers() -> dict[str, str]:
    """The marker for an upstream request made while serving the current request."""
    return {HOP_HEADER: ", ".join([*INCOMING.get(), INSTANCE])}


def parse(value: str) -> tuple[str, ...]:
    """The gateway ids in a marker."""
    return tuple(part.strip() for part in value[:MAX_MARKER].split(",") if part.strip())


def loop_reason(value: str) -> str | None:
    """Why a request with this marker must be refused (None: it may pass)."""
    hops = parse(value)
    if INSTANCE in hops:
        return "this request came from this gateway itself"
    if len(hops) >= MAX_HOPS or len(value) > MAX_MARKER:
        return f"this request has already passed {len(hops)} Stellwerk gateways"
    return None
