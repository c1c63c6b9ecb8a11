"""Probes: ask a cooled-down credential early whether it works again.

A billing lockout that lasts hours after the account was topped up is a complaint users of other
gateways have. Stellwerk retries every cooled key when its cooldown ends anyway; with probes it
also sends a one-token request once `cooldowns.probe.every` has passed since the failures began,
and ends the cooldown at the first success. Billing cooldowns are not probed by default (a probe
on an empty account is a wasted request); auth failures and unknown models never are: they need a
config change or `stellwerk reset`.

Choosing what to probe is pure; `Router.probe` does the calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from .failures import FailureClass
from .policy import Credential, ModelSpec, Policy
from .state.base import Cooldown, Snapshot, credential_parts

NEVER = frozenset({FailureClass.AUTH, FailureClass.MODEL_NOT_FOUND})


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    key: str
    model: ModelSpec
    credential: Credential | None


def due_probes(
    snapshot: Snapshot, policy: Policy, *, all_cooled: bool = False
) -> list[ProbeTarget]:
    """The cooled keys whose probe is due now, each with the model and credential to try.

    `all_cooled` (the dashboard's "probe now"): every cooled key a probe can test, due or not,
    billing included (one token, asked for by hand)."""
    every = policy.cooldowns.probe_every
    if every <= 0 and not all_cooled:
        return []
    found = []
    for cooldown in snapshot.cooldowns.values():
        if all_cooled:
            wanted = cooldown.reason not in NEVER
        else:
            wanted = _probeable(cooldown, policy) and snapshot.now - cooldown.since >= every
        if wanted:
            target = _target(cooldown.key, policy)
            if target is not None and cooldown.active(snapshot.now):
                found.append(target)
    return found


def _probeable(cooldown: Cooldown, policy: Policy) -> bool:
    if cooldown.reason in NEVER:
        return False
    return cooldown.reason is not FailureClass.BILLING or policy.cooldowns.probe_billing


def _target(key: str, policy: Policy) -> ProbeTarget | None:
    if (parts := credential_parts(key)) is None:
        return None
    provider_name, cred_id, model_id = parts
    provider = policy.providers.get(provider_name)
    if provider is None:
        return None
    credential = next((c for c in provider.credentials if c.id == cred_id), None)
    if credential is None and not provider.local:
        return None
    model = policy.models.get(model_id) if model_id else _cheapest(policy, provider_name)
    return ProbeTarget(key, model, credential) if model is not None else None


def _cheapest(policy: Policy, provider: str) -> ModelSpec | None:
    models = [m for m in policy.models.values() if m.provider == provider]
    return min(models, key=lambda m: (m.input_price + m.output_price, m.id), default=None)
