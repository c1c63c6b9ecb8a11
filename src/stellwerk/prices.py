"""Prices and context windows of models the catalog does not list, from `genai-prices`.

The catalog (`data/catalog.yaml`) keeps tiers, roles and prices for the models the default
strategy names. Every other model a client asks for by `provider/model` (a new OpenAI model, one of
OpenRouter's hundreds) is priced from pydantic's maintained price database, `genai-prices`, which
ships its data inside the package: no network is used (its optional updater, `UpdatePrices`, is
never started here).

Importing the database costs about 150 ms and 24 MB, so it is imported on the first look-up of a
model the catalog does not price, never when Stellwerk starts, and each model is looked up once
per process (`lookup` is cached): the router builds a pass-through model's `ModelSpec` once and
keeps it. A model the database does not know has no price: `lookup` returns None and the caller
counts its cost as unknown, never as $0.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

log = logging.getLogger("stellwerk.prices")

# Stellwerk's provider types → the database's provider ids (local and self-hosted: none)
DATABASE_PROVIDER = {
    "anthropic": "anthropic",
    "openai": "openai",
    "openai-codex": "openai",
    "openrouter": "openrouter",
}


@dataclass(frozen=True, slots=True)
class Price:
    """A database entry: USD prices as integer micro-dollars per million tokens (None: the
    database names no such price) and the context window."""

    model: str  # the database's id of the model
    provider: str  # the database's id of the provider
    context_window: int | None
    input: int
    output: int
    cache_read: int | None = None
    cache_write: int | None = None
    cache_write_1h: int | None = None


def lookup(provider_type: str, name: str) -> Price | None:
    """The current list price of `name` at a provider of `provider_type`; None if unknown."""
    database = DATABASE_PROVIDER.get(provider_type)
    if database is None:
        return None
    return _lookup(database, name.lower())


def provider_of(name: str) -> str | None:
    """The database's provider for a bare model name (`claude-3-haiku` → anthropic), if any."""
    snapshot = _snapshot()
    if snapshot is None:
        return None
    try:
        provider = snapshot.find_provider(name.lower(), None, None)
    except LookupError:
        return None
    return str(provider.id)


@functools.lru_cache(maxsize=1024)
def _lookup(database: str, name: str) -> Price | None:
    snapshot = _snapshot()
    if snapshot is None:
        return None
    try:
        provider, model = snapshot.find_provider_model(name, None, database, None)
    except LookupError:
        return None
    prices = model.get_prices(datetime.now(tz=UTC))
    read = _micros(getattr(prices, "input_mtok", None))
    output = _micros(getattr(prices, "output_mtok", None))
    if read is None or output is None:
        return None
    window = model.context_window if isinstance(model.context_window, int) else None
    return Price(
        model=str(model.id),
        provider=str(provider.id),
        context_window=window,
        input=read,
        output=output,
        cache_read=_micros(getattr(prices, "cache_read_mtok", None)),
        cache_write=_micros(getattr(prices, "cache_write_mtok", None)),
        cache_write_1h=_micros(getattr(prices, "cache_write_1h_mtok", None)),
    )


def _micros(value: Any) -> int | None:
    """Micro-dollars per million tokens from a USD price; tiered prices at their base tier."""
    base = getattr(value, "base", value)
    if not isinstance(base, Decimal | int | float):
        return None
    return round(Decimal(base) * 1_000_000)


@functools.cache
def _snapshot() -> Any:
    """The database bundled with the package (imported here, on first use); None if missing."""
    try:
        from genai_prices import data_snapshot
    except ImportError:  # pragma: no cover - a dependency; tolerated, prices are then unknown
        log.warning("genai-prices is not installed: models outside the catalog have no price")
        return None
    return data_snapshot.get_snapshot()
