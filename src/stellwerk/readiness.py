"""Whether a gateway can answer at all: a provider with a key, or a local one that runs.

A gateway without a single usable provider (no API key set, Ollama not running) would otherwise
start, say "ready", and answer every request with 502 or 503. `serve` logs a WARNING naming the
variables to set, and `/readyz` answers 503 with the same reason (see `server/app.py`).
"""

from __future__ import annotations

from .policy import Policy, ProviderSpec
from .state.base import Snapshot, credential_key, health_key
from .state.cooldown import local_credential_id

KEY_VARIABLES = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "openai-codex": "OPENAI_CODEX_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
}
"""The variable the built-in config reads each cloud provider's key from, by provider name."""


def key_hint(spec: ProviderSpec) -> str:
    """Where a provider's key comes from: `ANTHROPIC_API_KEY`, or `providers.NAME.keys`."""
    return KEY_VARIABLES.get(spec.name) or f"providers.{spec.name}.keys"


def missing_keys_hint(policy: Policy) -> str:
    """`set ANTHROPIC_API_KEY, OPENAI_API_KEY or OPENROUTER_API_KEY`, for the providers
    configured without a key (empty when every cloud provider has one)."""
    names = [key_hint(p) for p in policy.providers.values() if not p.local and not p.credentials]
    if not names:
        return ""
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"set {listed}"


def local_down(spec: ProviderSpec, snapshot: Snapshot) -> bool:
    """The health watch marked the local provider down, or its connection was refused."""
    ids = [c.id for c in spec.credentials] or [local_credential_id(spec)]
    for key in [health_key(spec.name), *(credential_key(i) for i in ids)]:
        cooldown = snapshot.cooldowns.get(key)
        if cooldown is not None and cooldown.active(snapshot.now):
            if key.startswith("health:") or cooldown.reason.value == "connect":
                return True
    return False


def unusable_reason(policy: Policy, snapshot: Snapshot | None = None) -> str | None:
    """Why no provider can answer, or None when one can. A local provider counts as usable
    unless `snapshot` shows it down (without a snapshot: unless there is none)."""
    if any(p.credentials for p in policy.providers.values() if not p.local):
        return None
    local = [p for p in policy.providers.values() if p.local]
    if any(snapshot is None or not local_down(p, snapshot) for p in local):
        return None
    parts = []
    if hint := missing_keys_hint(policy):
        parts.append(f"no API key is set ({hint})")
    for spec in local:
        variable = " (start it, or set OLLAMA_HOST)" if spec.type == "ollama" else ""
        parts.append(f"{spec.name} is not running at {spec.base_url}{variable}")
    if not parts:
        parts.append("no provider is configured")
    return "no usable provider: " + "; ".join(parts)
