"""The asynchronous bodies of `stellwerk chat`, `status`, `reset` and `probe` (the CLI stays
synchronous)."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from .errors import StellwerkError
from .failures import FailureClass
from .policy import Policy
from .router import Router
from .state.base import Snapshot, credential_parts
from .state.cooldown import local_credential_id
from .status import status_data
from .types import ChatRequest, TextDelta, ThinkingDelta, ToolCallStart

Echo = Callable[..., Any]
_echo: Echo = click.echo


async def run_chat(
    config_path: str | os.PathLike[str] | None,
    prompt: str,
    *,
    model: str = "auto",
    system: str | None = None,
    stream: bool = False,
    max_tokens: int | None = None,
    as_json: bool = False,
    echo: Echo = _echo,
) -> int:
    """Answer one prompt; print the answer, then the model that answered and why. Exit code.

    `as_json`: one JSON object on stdout instead (the answer, the model, the whole decision)."""
    request = ChatRequest.of(prompt, system=system, model=model)
    request = replace(request, max_tokens=max_tokens or None, metadata={"client": "cli"})
    async with Router.from_config(config_path) as router:
        try:
            if stream and not as_json:
                decision = await _stream(router, request, echo)
            else:
                answer = await router.complete(request)
                decision = answer.decision
                if as_json:
                    echo(json.dumps(_chat_json(answer.response.text, decision), indent=2))
                    return 0
                echo(answer.response.text)
        except StellwerkError as exc:
            echo(f"stellwerk: {exc}", err=True)
            return 1
    echo("")
    echo(f"— {decision.summary}", err=True)
    return 0


def _chat_json(text: str, decision: Any) -> dict[str, Any]:
    return {
        "answer": text,
        "model": decision.answered_by,
        "task": str(decision.task),
        "summary": decision.summary,
        "decision": decision.to_json(),
    }


async def _stream(router: Router, request: ChatRequest, echo: Echo) -> Any:
    routed = router.stream(request)
    async for chunk in routed:
        if isinstance(chunk, TextDelta):
            echo(chunk.text, nl=False)
        elif isinstance(chunk, ThinkingDelta):
            continue
        elif isinstance(chunk, ToolCallStart):
            echo(f"\n[tool call {chunk.name}]", nl=False)
    return routed.decision


async def read_status(config_path: str | os.PathLike[str] | None) -> dict[str, Any]:
    async with Router.from_config(config_path) as router:
        snapshot = await router.store.snapshot(router.clock())
        return status_data(router.policy, snapshot, router.tz)


async def reset_cooldowns(config_path: str | os.PathLike[str] | None, target: str) -> int:
    async with Router.from_config(config_path) as router:
        return await router.reset(target)


def reset_target_error(policy: Policy, target: str) -> str | None:
    """Why `stellwerk reset TARGET` names nothing this config knows, with a suggestion; None
    when TARGET is a provider, a credential id (`openai#2`), a model id or an alias."""
    if not target or policy.resolve_model(target) is not None:
        return None
    names = set(policy.providers) | set(policy.aliases) | set(policy.models)
    for spec in policy.providers.values():
        names |= {c.id for c in spec.credentials} | {local_credential_id(spec)}
    if target in names:
        return None
    close = difflib.get_close_matches(target, sorted(names), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    providers = ", ".join(policy.providers)
    return (
        f"{target!r} is not a provider, key or model of this config{hint};"
        f" providers: {providers}. `stellwerk reset` with no TARGET clears every cooldown"
    )


async def run_probes(config_path: str | os.PathLike[str] | None) -> list[tuple[str, str]]:
    results, _ = await run_probes_explained(config_path)
    return results


async def run_probes_explained(
    config_path: str | os.PathLike[str] | None,
) -> tuple[list[tuple[str, str]], list[str]]:
    """The probes that ran, `(key, outcome)` each; when none did, the reasons why not."""
    async with Router.from_config(config_path) as router:
        results = await router.probe()
        if results:
            return results, []
        snapshot = await router.store.snapshot(router.clock())
        return [], why_no_probe(router.policy, snapshot)


def why_no_probe(policy: Policy, snapshot: Snapshot) -> list[str]:
    """Why `probe` found nothing due: one line per cooling key, or that none is cooling."""
    from datetime import datetime

    every = policy.cooldowns.probe_every
    cooling = sorted(
        (c for c in snapshot.cooldowns.values() if c.active(snapshot.now)), key=lambda c: c.key
    )
    keys = [(c, parts[0]) for c in cooling if (parts := credential_parts(c.key)) is not None]
    if not keys:
        return ["no probe due: no key is cooling down"]
    lines = []
    for c, provider_name in keys:
        provider = provider_name or "PROVIDER"
        if c.reason is FailureClass.BILLING and not policy.cooldowns.probe_billing:
            why = (
                "billing cooldowns are not probed (cooldowns.probe.billing: false): after"
                f" topping up, run `stellwerk reset {provider}`"
            )
        elif c.reason in (FailureClass.AUTH, FailureClass.MODEL_NOT_FOUND):
            why = f"never probed ({c.reason.value}): fix it, then `stellwerk reset {provider}`"
        elif every <= 0:
            why = "probes are off (cooldowns.probe.every: 0s); it ends by itself"
        elif snapshot.now - c.since < every:
            at = datetime.fromtimestamp(c.since + every).strftime("%H:%M:%S")
            why = f"first probe due at {at} (cooldowns.probe.every after it began)"
        else:
            why = "no model of this config to probe it with"
        lines.append(f"{c.key}: {why}")
    return ["no probe due", *(f"  {line}" for line in lines)]
