"""`stellwerk status`: providers, masked credentials, cooldowns and the mode, as data and text.

One function builds the data from the policy and a snapshot (the gateway's status API returns the
same), another renders it for a terminal. Keys appear masked, never whole.
"""

from __future__ import annotations

import math
from datetime import datetime, tzinfo
from typing import Any

from .policy import Policy
from .state.base import Snapshot
from .state.cooldown import describe


def status_data(policy: Policy, snapshot: Snapshot, tz: tzinfo | None = None) -> dict[str, Any]:
    """Everything `status --json` prints."""
    return {
        "config": policy.source,
        "mode": "emergency" if snapshot.emergency else str(policy.routing.mode),
        "emergency": snapshot.emergency,
        "providers": [_provider(policy, name) for name in policy.providers],
        "cooldowns": [
            {
                "key": c.key,
                "reason": c.reason.value,
                "until": None if math.isinf(c.until) else _iso(c.until, tz),
                "strikes": c.strikes,
                "detail": c.detail,
                "text": describe(c, snapshot.now, tz),
            }
            for c in sorted(snapshot.cooldowns.values(), key=lambda c: c.key)
            if c.active(snapshot.now)
        ],
    }


def _provider(policy: Policy, name: str) -> dict[str, Any]:
    spec = policy.providers[name]
    return {
        "name": name,
        "type": spec.type,
        "base_url": spec.base_url,
        "available": spec.available,
        "local": spec.local,
        "credentials": [{"id": c.id, "key": c.masked} for c in spec.credentials],
        "models": [m.id for m in policy.models.values() if m.provider == name],
    }


def _iso(when: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(when, tz).isoformat(timespec="seconds")


def render_status(data: dict[str, Any]) -> str:
    """A terminal view of `status_data`."""
    lines = [f"config    {data['config']}", f"mode      {data['mode']}", "providers"]
    for p in data["providers"]:
        keys = ", ".join(f"{c['id']} {c['key']}" for c in p["credentials"])
        state = "local" if p["local"] else (keys or "no key: unavailable")
        lines.append(f"  {p['name']:<14} {p['type']:<18} {state}")
    lines.append("cooldowns" + ("" if data["cooldowns"] else "  none"))
    for c in data["cooldowns"]:
        lines.append(f"  {c['key']:<52} {c['text']}")
    return "\n".join(lines)
