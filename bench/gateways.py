"""Starting and stopping the gateways under test as real processes, and their configs.

Each gateway runs the way a user runs it (`stellwerk serve`, `litellm --config`), its output in a
log file, on a port chosen up front so start-up can be timed from the spawn to the first 200 of
its health endpoint. The Stellwerk configs point every provider at the one fake upstream; the
routed one adds the work a real deployment does: automatic classification, a chain of three
whose first target's key is in a billing cooldown (skipped by the plan) and whose second
answers, budgets, and whatever else the installed version accepts (`OPTIONAL`, each tried on its
own and dropped if the config rejects it). The failover config puts a target that answers a fast
503 on every request second (tried, failed, struck, passed over), so each request makes two
upstream calls.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from load import rss_mib, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
SOURCE = [ROOT / "src"]  # the tree under test (`overhead.py --source` changes it)
PROVIDER_ENV = (
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_CODEX_API_KEY",
    "OPENROUTER_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_BASE_URL",
    "OPENAI_CODEX_BASE_URL",
    "OPENROUTER_BASE_URL",
    "OLLAMA_HOST",
    "STELLWERK_CONFIG",
    "STELLWERK_API_KEYS",
)
KEY = "sk-bench-0123456789abcdef"
CHAIN = ("bench-billing/gpt-4o-mini", "bench-down/gpt-4o-mini", "openai/gpt-4o-mini")
ROUTE_PROMPT = "What is the capital of Australia?"
CLASSES = ("heartbeat", "simple", "complex", "code", "reasoning")


@dataclass
class Process:
    """A gateway under test: its process, base URL, start-up time and idle memory."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    startup_s: float
    idle_rss_mib: float
    log: Path
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


RUNNING: list[Process] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
    return {**env, **extra}


async def launch(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    url: str,
    health: str,
    workdir: Path,
    timeout: float = 120.0,
) -> Process:
    """Spawn `argv` and wait until `url + health` answers 200."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=workdir
        )
    started = await wait_healthy(url + health, timeout, lambda: proc.poll() is None)
    if started is None:
        proc.kill()
        proc.wait()
        tail = log.read_text("utf-8", "replace")[-2000:]
        raise RuntimeError(f"{name} did not become healthy:\n{tail}")
    await asyncio.sleep(0.5)  # let start-up work scheduled after the first answer settle
    process = Process(name, proc, url, started, rss_mib(proc.pid), log)
    RUNNING.append(process)
    return process


def stop_all() -> None:
    """Stop every process `launch` started, newest first."""
    while RUNNING:
        RUNNING.pop().stop()


# -- Stellwerk -------------------------------------------------------------------------------


def stellwerk_command() -> list[str]:
    """The `stellwerk` console script next to this Python, as a user runs it."""
    script = Path(sys.executable).parent / "stellwerk"
    return [str(script)] if script.exists() else [sys.executable, "-m", "stellwerk"]


def stellwerk_argv(config: Path, port: int, workers: int) -> list[str]:
    argv = [*stellwerk_command(), "serve", "--config", str(config), "--port", str(port)]
    return argv + (["--workers", str(workers)] if workers > 1 else [])


def stellwerk_env(state_dir: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(SOURCE[0]), os.environ.get("PYTHONPATH")]))
    return clean_env({"STELLWERK_STATE_DIR": str(state_dir), "PYTHONPATH": path})


def base_config(upstream: str) -> dict[str, Any]:
    """Every provider at the fake upstream; the plain gateway path (the model names a target)."""
    return {
        "providers": {
            "openai": {"base_url": f"{upstream}/v1", "keys": [KEY]},
            "anthropic": {"base_url": upstream, "keys": [KEY]},
            "openai-codex": {"base_url": f"{upstream}/v1", "keys": []},
            "openrouter": {"base_url": f"{upstream}/v1", "keys": []},
            "ollama": {"base_url": "http://127.0.0.1:9"},
        },
    }


def routed_config(upstream: str, failover: bool = False) -> dict[str, Any]:
    """The base config plus automatic routing over a chain of three whose first key is cooling
    down; with `failover`, the second target fails fast on every request and the third answers."""
    config = base_config(upstream)
    for name, key in (("bench-billing", "sk-fail-402"), ("bench-down", "sk-fail-503")):
        config["providers"][name] = {
            "type": "openai-compatible",
            "base_url": f"{upstream}/v1",
            "keys": [key],
        }
    config["models"] = {
        model: {
            "tier": "budget",
            "price": {"input": 0.15, "output": 0.60},
            "context_window": 128000,
            "capabilities": ["tools"],
            "upstream": "gpt-4o-mini",
            "aliases": [model.replace("/", "-")],
        }
        for model in CHAIN[:2]
    }
    config["stack"] = [CHAIN[2]]
    fallbacks = list(CHAIN[1:]) if failover else [CHAIN[2], CHAIN[1]]
    config["tasks"] = {c: {"primary": CHAIN[0], "fallbacks": fallbacks} for c in CLASSES}
    config["cooldowns"] = {"breaker": "0s"}  # the 503 target is tried on every request
    return config


OPTIONAL: dict[str, dict[str, Any]] = {
    "budgets": {
        "budgets": {
            "limits": [
                {"window": "daily", "usd": 100000},
                {"window": "weekly", "tokens": 10**12},
                {"window": "daily", "usd": 100000, "scope": "provider:openai"},
            ]
        }
    },
    "ledger": {"ledger": {"backend": "sqlite", "store_content": False}},
}
"""Routing work that exists only in some versions: each added if the config accepts it."""


def with_optional(config: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """`config` with every OPTIONAL section this version accepts; (config, on, rejected)."""
    sys.path.insert(0, str(SOURCE[0]))
    from stellwerk.config import policy_from_dict
    from stellwerk.errors import ConfigError

    on, rejected = [], []
    for name, section in OPTIONAL.items():
        candidate = _merge(config, section)
        try:
            policy_from_dict(candidate, env={})
        except ConfigError as exc:
            rejected.append(f"{name}: {exc}")
            continue
        config = candidate
        on.append(name)
    return config, on, rejected


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


async def start_stellwerk(
    name: str, config: dict[str, Any], workdir: Path, workers: int = 1
) -> Process:
    directory = workdir / name
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "stellwerk.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    return await launch(
        name,
        stellwerk_argv(config_file, port, workers),
        env=stellwerk_env(directory / "state"),
        url=f"http://127.0.0.1:{port}",
        health="/healthz",
        workdir=directory,
    )


def time_cold_route(config: dict[str, Any], workdir: Path, runs: int) -> list[float]:
    """Seconds per `stellwerk route PROMPT` run, as a fresh process each time."""
    directory = workdir / "route"
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "stellwerk.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [*stellwerk_command(), "route", "--config", str(config_file), ROUTE_PROMPT]
    env = stellwerk_env(directory / "state")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=directory, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times
