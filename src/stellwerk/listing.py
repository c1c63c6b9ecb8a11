"""`stellwerk models`: the models a client may name, and whether each is usable now.

One row per configured model (the catalog and the config's `models:`): its id and aliases, tier,
context window, prices (cache prices included; None when unknown), whether its provider has a key
(or is local) and any cooldown in force, read from the state store as `stellwerk status` reads it.
`/v1/models` lists the same ids (and `auto`, `auto:<class>` and the aliases). Any other
`provider/model` of a configured provider passes through too; the list says so.
"""

from __future__ import annotations

import os
from datetime import datetime, tzinfo
from typing import Any

from .policy import ModelSpec, Policy
from .state.base import Snapshot, credential_key, health_key, model_key
from .state.cooldown import describe


def model_rows(
    policy: Policy, snapshot: Snapshot, tz: tzinfo | None = None
) -> list[dict[str, Any]]:
    """What `models --json` prints: one object per configured model, in catalog order."""
    return [_row(spec, policy, snapshot, tz) for spec in policy.models.values()]


def _row(spec: ModelSpec, policy: Policy, snapshot: Snapshot, tz: tzinfo | None) -> dict[str, Any]:
    provider = policy.providers[spec.provider]
    cooldown = _cooldown(spec, policy, snapshot)
    key = "local" if provider.local else ("present" if provider.credentials else "missing")
    return {
        "id": spec.id,
        "provider": spec.provider,
        "upstream": spec.upstream,
        "aliases": list(spec.aliases),
        "tier": str(spec.tier),
        "context_window": spec.context_window,
        "max_output": spec.max_output,
        "capabilities": sorted(spec.capabilities),
        "price": _price(spec),
        "price_source": spec.source,
        "key": key,
        "usable": provider.available and cooldown is None,
        "cooldown": None
        if cooldown is None
        else {
            "until": datetime.fromtimestamp(cooldown.until, tz).isoformat(timespec="seconds"),
            "reason": describe(cooldown, snapshot.now, tz),
        },
    }


def _price(spec: ModelSpec) -> dict[str, float] | None:
    """USD per million tokens; None when no price is known."""
    if not spec.priced:
        return None
    return {
        "input": spec.input_price / 1_000_000,
        "output": spec.output_price / 1_000_000,
        "cache_read": spec.cache_read_price / 1_000_000,
        "cache_write": spec.cache_write_price / 1_000_000,
        "cache_write_1h": spec.cache_write_1h_price / 1_000_000,
    }


def _cooldown(spec: ModelSpec, policy: Policy, snapshot: Snapshot) -> Any:
    """The cooldown keeping the model from use now: the model's, the local provider's health,
    or every key's (the soonest to end); None when it is usable."""
    if not snapshot.cooldowns:
        return None
    provider = policy.providers[spec.provider]
    found = snapshot.blocked(model_key(spec.id), health_key(provider.name))
    if found is not None:
        return found
    ids = [c.id for c in provider.credentials] or [f"{provider.name}#local"]
    blocks = [snapshot.blocked(credential_key(i), credential_key(i, spec.id)) for i in ids]
    if blocks and all(b is not None for b in blocks):
        return min(blocks, key=lambda c: c.until)  # type: ignore[union-attr]
    return None


async def read_models(config_path: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """The rows for a config file, with the cooldowns in its state store."""
    from .router import Router

    async with Router.from_config(config_path) as router:
        snapshot = await router.store.snapshot(router.clock())
        return model_rows(router.policy, snapshot, router.tz)


def render_models(rows: list[dict[str, Any]]) -> str:
    """The rows for a terminal: usable first marked `ok`, prices in USD per million tokens."""
    lines = [
        f"{'':<3}{'model':<30} {'tier':<10} {'window':>8}  {'in':>7} {'out':>7} "
        f"{'c.read':>7} {'c.write':>7}  key / aliases"
    ]
    for row in rows:
        mark = "ok" if row["usable"] else "-"
        price = row["price"]
        cells = (
            [_usd(price[k]) for k in ("input", "output", "cache_read", "cache_write")]
            if price
            else ["?", "?", "?", "?"]
        )
        window = f"{row['context_window'] // 1000}k"
        notes = [row["key"]] if row["key"] != "present" else ["key"]
        if row["aliases"]:
            notes.append(", ".join(row["aliases"]))
        if row["cooldown"]:
            notes.append(f"cooling down: {row['cooldown']['reason']}")
        lines.append(
            f"{mark:<3}{row['id']:<30} {row['tier']:<10} {window:>8}  "
            + " ".join(f"{c:>7}" for c in cells)
            + "  "
            + "; ".join(notes)
        )
    lines.append(
        "prices: USD per million tokens (?: unknown). Any other provider/model of a configured"
        " provider passes through (e.g. openai/gpt-4.1, ollama/llama3.2)."
    )
    return "\n".join(lines)


def _usd(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if value else "0"
