"""The requests agents send, for the benchmarks: real OpenClaw captures, read where they lie.

The captures (`../shared/clients/openclaw/captures/` next to the repository) are internal data:
they are read at run time and never copied into the repository. Each kind below is one captured
request body with the model set per path (the gateway's `auto` or an explicit model, the fake's
or the peer's name elsewhere) and `stream` set or removed, sent as compact JSON, as OpenClaw's
SDKs send it. Without the directory, `available()` says why and the agent phases are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT.parent / "shared" / "clients" / "openclaw" / "captures"
SHORT = "What is the capital of Australia?"
OPENAI, ANTHROPIC = "/v1/chat/completions", "/v1/messages"


@dataclass(frozen=True)
class Kind:
    """One request of the benchmark: which capture (file and request index), which protocol."""

    name: str
    capture: str | None  # None: the short prompt
    index: int = 0
    anthropic: bool = False
    stream: bool = False


KINDS = (
    Kind("short", None),
    Kind("agent", "agent_turn.json"),
    Kind("agent_stream", "agent_turn.json", stream=True),
    Kind("agent_anthropic", "agent_turn_anthropic.json", anthropic=True),
    Kind("agent_anthropic_stream", "agent_turn_anthropic.json", anthropic=True, stream=True),
    Kind("toolloop", "agent_turn_toolcall.json", index=1),  # the continuation after a tool call
    Kind("heartbeat", "heartbeat.json"),
)


def available() -> str | None:
    """None when the captures can be read; else why not (the agent phases are then skipped)."""
    if not (CAPTURES / "agent_turn.json").is_file():
        return f"agent phases skipped: no OpenClaw captures at {CAPTURES}"
    return None


def body(kind: Kind, model: str) -> dict[str, Any]:
    """The request body of `kind` for `model`, streamed or not as the kind says."""
    if kind.capture is None:
        data: dict[str, Any] = {"messages": [{"role": "user", "content": SHORT}]}
        data["max_tokens"] = 64
    else:
        data = dict(_load(kind.capture)["requests"][kind.index]["body"])
    data["model"] = model
    data.pop("stream_options", None)
    data.pop("stream", None)
    if kind.stream:
        data["stream"] = True
        if not kind.anthropic:
            data["stream_options"] = {"include_usage": True}
    return data


def encode(data: dict[str, Any]) -> bytes:
    """Compact JSON, UTF-8 as is: what `JSON.stringify` sends."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def headers(key: str, anthropic: bool) -> dict[str, str]:
    found = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    if anthropic:
        found |= {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return found


_LOADED: dict[str, dict[str, Any]] = {}


def _load(name: str) -> dict[str, Any]:
    if name not in _LOADED:
        _LOADED[name] = json.loads((CAPTURES / name).read_text("utf-8"))
    return _LOADED[name]
