"""`stellwerk route`: classify and plan a request, and say why, without calling any model.

The explanation reads the same state the gateway reads (cooldowns, emergency mode), so what it
prints is what a request sent now would do.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .classify import Classification, classify, known_names, without_directive
from .config import load_policy
from .errors import RequestError, UnknownModelError
from .fit import minimal_context
from .plan import RoutePlan, demand_of, plan_route
from .policy import ContextPolicy, Policy
from .state.base import Snapshot
from .tokens import estimate_prompt
from .types import ChatRequest


@dataclass
class Explainer:
    policy: Policy
    snapshot: Snapshot

    @classmethod
    def open(cls, config_path: str | os.PathLike[str] | None = None) -> Explainer:
        """Load the config and take one snapshot of the shared state."""
        policy = load_policy(config_path)
        return cls(policy, asyncio.run(_read_snapshot(policy)))

    def explain(self, request: ChatRequest) -> dict[str, Any]:
        """The decision for one request as plain data (what `route --json` prints): the same
        steps as the gateway's (classify, take the directive out, plan, minimal context for a
        class that has it, plan again), without calling anything."""
        found = classify(request, self.policy)
        if found.directive and found.notices:
            raise UnknownModelError(f"{found.notices[0]}; {known_names(self.policy)}")
        request = without_directive(request, found)
        route = plan_route(found, self.policy, self.snapshot, demand_of(request))
        sent = len(request.messages)
        if route.context is ContextPolicy.MINIMAL:
            request = minimal_context(request, found.reading.at)
            route = plan_route(found, self.policy, self.snapshot, demand_of(request))
        result = _as_dict(found, route)
        result["context"] = {
            "policy": str(route.context),
            "messages": len(request.messages),
            "of": sent,
            "tokens": estimate_prompt(request),
        }
        return result

    def explain_prompt(
        self, prompt: str, *, system: str | None = None, model: str = "auto"
    ) -> dict[str, Any]:
        return self.explain(ChatRequest.of(prompt, system=system, model=model))

    def explain_line(self, line: str) -> dict[str, Any]:
        """One `--jsonl` input line (`prompt`, or `messages` in OpenAI form) → one answer."""
        try:
            data = json.loads(line)
            return self.explain(_request_from_line(data))
        except (ValueError, RequestError, UnknownModelError, TypeError, AttributeError) as exc:
            return {"error": str(exc)}

    def render(self, result: dict[str, Any]) -> str:
        """A readable table of one decision."""
        lines = [
            f"task      {result['task']}  (confidence {result['confidence']:.2f}, "
            f"{result['source']})",
            f"reason    {result['reason']}",
            f"route     {result['why']}  [mode {result['mode']}]",
        ]
        context = result["context"]
        lines.append(
            f"context   {context['policy']}: {context['messages']} of {context['of']} messages, "
            f"≈{context['tokens']:,} tokens"
        )
        lines.append(
            "chain     " + ("(none: every target is skipped)" if not result["chain"] else "")
        )
        for i, target in enumerate(result["chain"], 1):
            lines.append(f"  {i:>2}. {target:<32} {self._describe(target)}")
        if result["skipped"]:
            lines.append("skipped")
            for skip in result["skipped"]:
                lines.append(f"      {skip['target']:<32} {skip['reason']}")
        if result.get("shadow"):
            lines.append("shadow    auto would try: " + " → ".join(result["shadow"][:3]) + " …")
        return "\n".join(lines)

    def _describe(self, target: str) -> str:
        model = self.policy.models[target]
        price = f"${model.input_price / 1e6:.2f}/${model.output_price / 1e6:.2f} per Mtok"
        window = f"{model.context_window // 1000}k"
        return f"{model.tier:<10} {price:<24} {window:>5}"


def _as_dict(found: Classification, route: RoutePlan) -> dict[str, Any]:
    return {
        "task": str(found.task),
        "confidence": round(found.confidence, 3),
        "reason": found.reason,
        "source": found.source,
        "routed_as": str(route.task),
        "mode": str(route.mode),
        "why": route.why,
        "chain": list(route.target_ids),
        "skipped": [{"target": s.target, "reason": s.reason} for s in route.skipped],
        "planned": list(route.chain),
        "shadow": list(route.shadow) if route.shadow else None,
    }


def _request_from_line(data: Any) -> ChatRequest:
    """A `prompt` line, or a whole request body in OpenAI's or Anthropic's form (the gateway's
    endpoints parse it the same way): messages, system, tools, tool_choice, max_tokens."""
    if not isinstance(data, dict):
        raise ValueError("each line must be a JSON object")
    if "messages" in data:
        body = {"model": "auto", **data}
        body.pop("format", None)
        if _anthropic_form(data):
            from .wire.anthropic import parse_request as parse_anthropic

            return parse_anthropic(body)
        from .wire.openai import parse_request

        return parse_request(body)
    prompt = data.get("prompt")
    if not isinstance(prompt, str):
        raise ValueError("each line needs a `prompt` string or `messages`")
    return ChatRequest.of(prompt, system=data.get("system"), model=data.get("model", "auto"))


def _anthropic_form(data: dict[str, Any]) -> bool:
    """A Messages API body: said so, or a top-level `system`, an `input_schema` tool, or
    `tool_use`/`tool_result` blocks (OpenAI's form has none of these)."""
    if data.get("format") in ("anthropic", "openai"):
        return bool(data["format"] == "anthropic")
    if "system" in data:
        return True
    tools = data.get("tools")
    if isinstance(tools, list) and any(isinstance(t, dict) and "input_schema" in t for t in tools):
        return True
    messages = data.get("messages")
    blocks = (
        block
        for m in (messages if isinstance(messages, list) else ())
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for block in m["content"]
    )
    return any(
        isinstance(b, dict) and b.get("type") in {"tool_use", "tool_result", "image"}
        for b in blocks
    )


async def _read_snapshot(policy: Policy) -> Snapshot:
    from .state import open_store

    if policy.state.backend == "sqlite" and not _state_exists(policy):
        return Snapshot(now=time.time())  # nothing has ever cooled down on this machine
    store = open_store(policy.state)
    try:
        return await store.snapshot(time.time())
    finally:
        await store.close()


def _state_exists(policy: Policy) -> bool:
    from .state import default_state_path

    return Path(policy.state.path or default_state_path()).exists()
