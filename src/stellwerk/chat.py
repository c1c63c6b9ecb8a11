"""The asynchronous bodies of `stellwerk chat`, `status` and `reset` (the CLI stays synchronous)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from .errors import StellwerkError
from .router import Router
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
    echo: Echo = _echo,
) -> int:
    """Answer one prompt; print the answer, then the model that answered and why. Exit code."""
    request = ChatRequest.of(prompt, system=system, model=model)
    request = replace(request, max_tokens=max_tokens or None, metadata={"client": "cli"})
    async with Router.from_config(config_path) as router:
        try:
            if stream:
                decision = await _stream(router, request, echo)
            else:
                answer = await router.complete(request)
                echo(answer.response.text)
                decision = answer.decision
        except StellwerkError as exc:
            echo(f"stellwerk: {exc}", err=True)
            return 1
    echo("")
    echo(f"— {decision.summary}", err=True)
    return 0


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


async def run_probes(config_path: str | os.PathLike[str] | None) -> list[tuple[str, str]]:
    async with Router.from_config(config_path) as router:
        return await router.probe()
