"""Provider types by name: the built-ins, and third-party adapters through entry points.

Built-ins are listed here as import paths so that only the adapters a config uses are imported;
third parties register in the `stellwerk.providers` entry-point group, exactly as the built-ins
are declared in pyproject.toml.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import aiohttp

from ..policy import ProviderSpec
from .base import Provider, ProviderFactory

BUILTIN: dict[str, str] = {
    "anthropic": "stellwerk.providers.anthropic:AnthropicProvider",
    "openai": "stellwerk.providers.openai:OpenAIProvider",
    "openai-codex": "stellwerk.providers.openai:OpenAICodexProvider",
    "openrouter": "stellwerk.providers.openai:OpenRouterProvider",
    "openai-compatible": "stellwerk.providers.openai:OpenAICompatibleProvider",
    "ollama": "stellwerk.providers.ollama:OllamaProvider",
}
GROUP = "stellwerk.providers"


def factory(kind: str) -> ProviderFactory:
    """The adapter class for a provider type."""
    path = BUILTIN.get(kind)
    if path is None:
        found = [ep for ep in entry_points(group=GROUP) if ep.name == kind]
        if not found:
            raise LookupError(f"no provider adapter for type {kind!r}")
        return found[0].load()  # type: ignore[no-any-return]
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def build(spec: ProviderSpec, session: aiohttp.ClientSession) -> Provider:
    return factory(spec.type)(spec, session)
