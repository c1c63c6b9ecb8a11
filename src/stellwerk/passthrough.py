"""Models the catalog does not list: any `provider/model` of a configured provider.

A client may name any model its provider serves: one of OpenRouter's hundreds, an OpenAI or
Anthropic model on the day it ships, any model installed in Ollama. `Policy.resolve_model` finds
such a model and `build` makes its `ModelSpec`, once per model (the policy's `ModelCatalog` keeps
it):

- prices, cache prices and the context window from genai-prices (`prices.py`); a model it does not
  know has no price (`priced=False`: counted as unknown, not as $0) and a 128k window;
- the tier from the price: premium from $2 per million input tokens or $10 output, budget up to $1
  input, mid between (and when the price is unknown); local for a local provider;
- capabilities, conservatively: `tools` for the chat models of Anthropic, OpenAI and OpenRouter,
  `vision` for the model families known to take images; for Ollama what `/api/show` reports;
- a local model's window from Ollama's `/api/show` (its trained context length, capped at
  `LOCAL_WINDOW_CAP`: Stellwerk sends the window as `num_ctx`, which sets Ollama's memory use).

A bare name (`gpt-4o`, `claude-3-5-sonnet-20241022`) goes to the provider its naming convention
or the price database tells: `claude-*` to Anthropic, `gpt-*`, `o1`, `o3`, ... to OpenAI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import prices
from .policy import ModelSpec, ProviderSpec
from .types import Tier

DEFAULT_WINDOW = 128_000  # a cloud model the database does not know
LOCAL_DEFAULT_WINDOW = 8192  # a local model whose `/api/show` was not read
LOCAL_WINDOW_CAP = 16_384  # the largest num_ctx sent for a model not in the config
PREMIUM_INPUT, PREMIUM_OUTPUT, BUDGET_INPUT = 2_000_000, 10_000_000, 1_000_000  # micro-dollars

_CONVENTIONS = (  # bare-name prefix → provider type
    (re.compile(r"^claude-", re.I), "anthropic"),
    (re.compile(r"^(gpt-|chatgpt-|o\d+(?:-|$)|codex-)", re.I), "openai"),
)
_VISION = re.compile(r"claude-(?:3|sonnet|opus|haiku)|gpt-4o|gpt-4\.1|gpt-5|(?:^|/)o[134](?:-|$)")
_CHAT_TOOLS = frozenset({"anthropic", "openai", "openai-codex", "openrouter"})
_OLLAMA_CAPS = {"tools": "tools", "vision": "vision", "thinking": "reasoning"}


def build(
    model_id: str, provider: ProviderSpec, upstream: str, show: Mapping[str, Any] | None = None
) -> ModelSpec:
    """The spec of a model the catalog does not list, at `provider` under `upstream`."""
    if provider.local:
        return _local(model_id, provider, upstream, show)
    price = prices.lookup(provider.type, upstream)
    caps = {"tools"} if provider.type in _CHAT_TOOLS else set()
    if _VISION.search(upstream.lower()):
        caps.add("vision")
    api = "responses" if provider.type == "openai-codex" or "codex" in upstream.lower() else "chat"
    if price is None:
        return ModelSpec(
            id=model_id,
            provider=provider.name,
            upstream=upstream,
            tier=Tier.MID,
            input_price=0,
            output_price=0,
            context_window=DEFAULT_WINDOW,
            max_output=min(DEFAULT_WINDOW // 4, 8192),
            capabilities=frozenset(caps),
            api=api,
            priced=False,
            source="default",
        )
    window = price.context_window or DEFAULT_WINDOW
    anthropic = provider.type == "anthropic"
    read, write, hour = (0.1, 1.25, 2.0) if anthropic else (1.0, 1.0, 1.0)
    return ModelSpec(
        id=model_id,
        provider=provider.name,
        upstream=upstream,
        tier=tier_of(price.input, price.output),
        input_price=price.input,
        output_price=price.output,
        context_window=window,
        max_output=min(window // 4, 8192),
        capabilities=frozenset(caps),
        api=api,
        cache_read_price=_or(price.cache_read, price.input * read),
        cache_write_price=_or(price.cache_write, price.input * write),
        cache_write_1h_price=_or(price.cache_write_1h, price.input * hour),
        source="database",
    )


def tier_of(input_price: int, output_price: int) -> Tier:
    """The tier a price puts a model in (micro-dollars per million tokens)."""
    if input_price >= PREMIUM_INPUT or output_price >= PREMIUM_OUTPUT:
        return Tier.PREMIUM
    return Tier.BUDGET if input_price <= BUDGET_INPUT else Tier.MID


def bare_provider(name: str, providers: Mapping[str, ProviderSpec]) -> str | None:
    """The configured provider a bare model name belongs to, or None.

    `claude-*` goes to Anthropic and `gpt-*`, `o1`, `o3-mini`, ... to OpenAI by convention;
    other names to the provider the price database names for them. A name with a slash whose
    first part is no provider (`meta-llama/llama-3.1-70b-instruct`) goes to OpenRouter when the
    database knows it there."""
    if "/" in name:
        kind = "openrouter" if prices.lookup("openrouter", name) is not None else None
    else:
        kind = next((k for pattern, k in _CONVENTIONS if pattern.match(name)), None)
        if kind is None:
            found = prices.provider_of(name)
            kind = found if found in ("anthropic", "openai") else None
    if kind is None:
        return None
    if kind in providers and providers[kind].type == kind:
        return kind
    return next((p.name for p in providers.values() if p.type == kind), None)


def _local(
    model_id: str, provider: ProviderSpec, upstream: str, show: Mapping[str, Any] | None
) -> ModelSpec:
    trained = _context_length(show) if show else None
    window = min(trained, LOCAL_WINDOW_CAP) if trained else LOCAL_DEFAULT_WINDOW
    caps = (show or {}).get("capabilities") or ()
    capabilities = frozenset(_OLLAMA_CAPS[c] for c in caps if c in _OLLAMA_CAPS)
    return ModelSpec(
        id=model_id,
        provider=provider.name,
        upstream=upstream,
        tier=Tier.LOCAL,
        input_price=0,
        output_price=0,
        context_window=window,
        max_output=min(window // 2, 8192),
        capabilities=capabilities,
        source="ollama" if trained else "default",
    )


def _context_length(show: Mapping[str, Any]) -> int | None:
    from .providers.ollama import context_length

    return context_length(show)


def _or(value: int | None, default: float) -> int:
    return round(default) if value is None else value


async def learn(policy: Any, model_id: str, session: Any) -> None:
    """Read a local model's `/api/show` once, before its spec is built (the router calls this
    for an Ollama model the config does not list); a failure leaves the defaults."""
    from .errors import ProviderError
    from .providers import ollama

    spec = policy.providers[model_id.partition("/")[0]]
    credential = spec.credentials[0] if spec.credentials else None
    try:
        show = await ollama.show_model(session, spec, model_id.partition("/")[2], credential)
    except ProviderError:
        show = {}
    policy.catalog.learn(model_id, show)
