"""`stellwerk check`: is every configured provider usable, and is the local fallback in place?

Routing problems are cheapest to find before the first request needs the fallback: a key that
was revoked, an OpenRouter account without credit, an Ollama that is not running or lacks the
models the chains name. The check asks each provider one cheap question per key (a model list,
OpenRouter's key info: no tokens spent) and asks Ollama what it has installed (`/api/tags`,
`/api/show` for size, quantization and context window) and loaded (`/api/ps`).

Keys are shown masked, never whole. A provider without a key is reported and skipped: not having
an account is not a fault. Unhealthy (exit status 1) means: a configured key is refused or its
provider unreachable, a local provider does not answer, or a model a chain names is missing from
Ollama (the report gives the `ollama pull` line that fixes it).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from .config import load_policy
from .errors import ProviderError
from .failures import FailureClass
from .policy import Credential, Policy, ProviderSpec
from .providers import ollama
from .providers._http import get_json, new_session
from .readiness import key_hint

ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """One credential: masked, and whether the provider accepted it."""

    id: str
    key: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A model installed in Ollama."""

    name: str
    parameters: str = ""
    quantization: str = ""
    context_length: int | None = None
    loaded: bool = False


@dataclass(frozen=True, slots=True)
class WantedModel:
    """A model of this provider that a chain names, and whether it is installed."""

    id: str
    upstream: str
    installed: bool
    context_window: int  # what Stellwerk sends as num_ctx

    @property
    def fix(self) -> str:
        return "" if self.installed else f"ollama pull {self.upstream}"


@dataclass(frozen=True, slots=True)
class OllamaReport:
    version: str
    installed: tuple[LocalModel, ...] = ()
    wanted: tuple[WantedModel, ...] = ()

    @property
    def loaded(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.installed if m.loaded)


@dataclass(frozen=True, slots=True)
class ProviderCheck:
    """One provider's result; `ok` is None when it was skipped (no key)."""

    name: str
    type: str
    base_url: str
    ok: bool | None
    detail: str = ""
    keys: tuple[KeyCheck, ...] = ()
    ollama: OllamaReport | None = None
    problems: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Report:
    providers: tuple[ProviderCheck, ...]

    @property
    def problems(self) -> list[str]:
        return [p for check in self.providers for p in check.problems]

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "problems": self.problems,
            "providers": [asdict(p) for p in self.providers],
        }


async def check_config(config_path: str | os.PathLike[str] | None) -> Report:
    """`stellwerk check`: the report for a config file (or the built-in default)."""
    return await run_check(load_policy(config_path))


async def run_check(policy: Policy, session: aiohttp.ClientSession | None = None) -> Report:
    """Check every configured provider at once."""
    own = session is None
    session = session or new_session()
    try:
        checks = [_check(session, policy, spec) for spec in policy.providers.values()]
        return Report(tuple(await asyncio.gather(*checks)))
    finally:
        if own:
            await session.close()


async def _check(
    session: aiohttp.ClientSession, policy: Policy, spec: ProviderSpec
) -> ProviderCheck:
    if spec.type == "ollama":
        return await _check_ollama(session, policy, spec)
    if not spec.credentials and not spec.local:
        hint = f"no key: skipped (set {key_hint(spec)})"
        return ProviderCheck(spec.name, spec.type, spec.base_url, None, hint)
    keys = tuple([await _check_key(session, spec, c) for c in spec.credentials or (None,)])
    failed = tuple(f"{spec.name}: {k.id} {k.detail}" for k in keys if not k.ok)
    detail = "; ".join(k.detail for k in keys if not k.ok) or "answers"
    return ProviderCheck(
        spec.name, spec.type, spec.base_url, not failed, detail, keys, None, failed
    )


async def _check_key(
    session: aiohttp.ClientSession, spec: ProviderSpec, credential: Credential | None
) -> KeyCheck:
    """One cheap authenticated GET with one key (or none, for a local server)."""
    cred_id = credential.id if credential else f"{spec.name}#local"
    masked = credential.masked if credential else ""
    url, headers = _probe_request(spec, credential)
    started = time.perf_counter()
    error = await _get(session, spec, url, headers)
    if error is not None:
        return KeyCheck(cred_id, masked, False, error)
    return KeyCheck(
        cred_id, masked, True, f"answers ({(time.perf_counter() - started) * 1000:.0f} ms)"
    )


def _probe_request(spec: ProviderSpec, credential: Credential | None) -> tuple[str, dict[str, str]]:
    """The cheapest request that proves a key works: a model list, or OpenRouter's key info
    (OpenRouter's model list is public and would accept any key)."""
    headers = dict(spec.headers)
    secret = credential.secret.reveal() if credential else None
    if spec.type == "anthropic":
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if secret:
            headers["x-api-key"] = secret
        return f"{spec.base_url}/v1/models", headers
    if secret:
        headers["authorization"] = f"Bearer {secret}"
    if spec.type == "openrouter":
        return f"{spec.base_url}/key", headers
    return f"{spec.base_url}/models", headers


async def _get(
    session: aiohttp.ClientSession, spec: ProviderSpec, url: str, headers: Mapping[str, str]
) -> str | None:
    """None if the GET succeeded, else what went wrong, in words (never the key)."""
    try:
        await get_json(session, spec, url, headers, spec.name)
    except ProviderError as exc:
        return f"{exc.failure.value}: {exc}"
    return None


# -- Ollama ----------------------------------------------------------------------------------


async def _check_ollama(
    session: aiohttp.ClientSession, policy: Policy, spec: ProviderSpec
) -> ProviderCheck:
    credential = spec.credentials[0] if spec.credentials else None
    try:
        report = await _ollama_report(session, policy, spec, credential)
    except ProviderError as exc:
        detail, problem = str(exc), f"{spec.name}: not answering at {spec.base_url} ({exc})"
        if exc.failure is FailureClass.CONNECT:  # refused, or no such host
            detail = "Ollama is not running (start it, or set OLLAMA_HOST)"
            problem = (
                f"{spec.name}: Ollama is not running at {spec.base_url}"
                " (start it, or set OLLAMA_HOST)"
            )
        return ProviderCheck(
            spec.name, spec.type, spec.base_url, False, detail, (), None, (problem,)
        )
    problems = tuple(
        f"{spec.name}: {w.id} is not installed (run: {w.fix})"
        for w in report.wanted
        if not w.installed
    )
    keys = (KeyCheck(credential.id, credential.masked, True),) if credential else ()
    detail = f"version {report.version}"
    return ProviderCheck(spec.name, spec.type, spec.base_url, True, detail, keys, report, problems)


async def _ollama_report(
    session: aiohttp.ClientSession,
    policy: Policy,
    spec: ProviderSpec,
    credential: Credential | None,
) -> OllamaReport:
    version = await ollama.version(session, spec, credential)
    tags = await ollama.list_models(session, spec, credential)
    running = {m.get("name") for m in await ollama.running_models(session, spec, credential)}
    names = [str(m.get("name") or m.get("model")) for m in tags]
    shows = await asyncio.gather(*(_show(session, spec, n, credential) for n in names))
    installed = tuple(
        _local_model(tag, name, show, name in running)
        for tag, name, show in zip(tags, names, shows, strict=True)
    )
    wanted = tuple(_wanted(policy, spec, {m.name for m in installed}))
    return OllamaReport(version, installed, wanted)


async def _show(
    session: aiohttp.ClientSession, spec: ProviderSpec, name: str, credential: Credential | None
) -> Mapping[str, Any]:
    try:
        return await ollama.show_model(session, spec, name, credential)
    except ProviderError:
        return {}


def _local_model(
    tag: Mapping[str, Any], name: str, show: Mapping[str, Any], loaded: bool
) -> LocalModel:
    details = tag.get("details") or {}
    return LocalModel(
        name=name,
        parameters=str(details.get("parameter_size") or ""),
        quantization=str(details.get("quantization_level") or ""),
        context_length=ollama.context_length(show),
        loaded=loaded,
    )


def _wanted(policy: Policy, spec: ProviderSpec, installed: set[str]) -> list[WantedModel]:
    """The provider's models that the stack or a class chain names, in chain order."""
    named = [*policy.stack]
    for task in policy.tasks.values():
        named += [task.primary, *task.fallbacks]
    ids = [m for m in dict.fromkeys(named) if policy.models[m].provider == spec.name]
    return [
        WantedModel(m, up, _installed(up, installed), policy.models[m].context_window)
        for m in ids
        if (up := policy.models[m].upstream)
    ]


def _installed(name: str, installed: set[str]) -> bool:
    """Ollama's own lookup: `llama3` is `llama3:latest`."""
    return name in installed or f"{name}:latest" in installed


# -- rendering -------------------------------------------------------------------------------


def render(report: Report) -> str:
    """The report for a terminal."""
    lines: list[str] = []
    for check in report.providers:
        lines.append(f"{check.name:<14} {_state(check)}")
        for key in check.keys:
            lines.append(f"  key {key.id:<14} {key.key:<12} {'ok' if key.ok else key.detail}")
        if check.ollama is not None:
            lines.extend(_render_ollama(check.ollama))
    verdict = "healthy" if report.healthy else f"unhealthy: {len(report.problems)} problem(s)"
    lines.append(verdict)
    lines.extend(f"  - {p}" for p in report.problems)
    return "\n".join(lines)


def _state(check: ProviderCheck) -> str:
    if check.ok is None:
        return check.detail
    mark = "ok" if check.ok else "FAILED"
    return f"{mark:<7} {check.base_url}  {check.detail}"


def _render_ollama(report: OllamaReport) -> list[str]:
    lines = ["  installed"]
    for m in report.installed:
        ctx = f"ctx {m.context_length}" if m.context_length else "ctx ?"
        loaded = "  (loaded)" if m.loaded else ""
        lines.append(f"    {m.name:<24} {m.parameters:<7} {m.quantization:<8} {ctx}{loaded}")
    if not report.installed:
        lines.append("    none")
    lines.append("  used by the chains")
    for w in report.wanted:
        state = (
            f"installed, run with num_ctx {w.context_window}"
            if w.installed
            else f"MISSING: {w.fix}"
        )
        lines.append(f"    {w.id:<24} {w.upstream:<16} {state}")
    lines.append(f"  loaded    {', '.join(report.loaded) or 'none'}")
    return lines


def to_json_text(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2)
