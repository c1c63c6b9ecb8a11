"""The peer for `--peer litellm`: the LiteLLM proxy, in a throwaway virtual environment.

It is never a dependency of Stellwerk: `ensure_litellm` creates its own venv (with `python3 -m
venv`, so its own pip) and installs `litellm[proxy]` there once; later runs reuse it. The proxy
gets one OpenAI-compatible model entry pointing at the same fake upstream and runs with its
defaults (one worker, no database) and a random master key, which recent versions require and
clients then send as their key. Two environment settings keep it off the network, which a
benchmark on loopback must not depend on: the bundled model-cost map instead of a download, and
no telemetry.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import yaml
from gateways import KEY, Process, clean_env, free_port, launch

DEFAULT_VENV = Path("/tmp/stellwerk-bench-peer")
MODEL = "bench"
HEALTH = "/health/liveliness"
MASTER_KEY = "sk-" + secrets.token_hex(32)  # since 1.10x the proxy refuses to start without one
OFFLINE = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
}


def ensure_litellm(venv: Path = DEFAULT_VENV, log: Path | None = None) -> Path:
    """The `litellm` executable in `venv`, installing it first if needed."""
    executable = venv / "bin" / "litellm"
    if executable.exists():
        return executable
    python3 = shutil.which("python3") or "python3"
    out = log.open("ab") if log else subprocess.DEVNULL
    try:
        subprocess.run([python3, "-m", "venv", "--clear", str(venv)], check=True, stdout=out)
        pip = [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check"]
        subprocess.run([*pip, "litellm[proxy]"], check=True, stdout=out, stderr=out)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    if not executable.exists():
        raise RuntimeError(f"litellm[proxy] installed, but {executable} is missing")
    return executable


def version(venv: Path = DEFAULT_VENV) -> str:
    python = venv / "bin" / "python"
    probe = "from importlib.metadata import version; print(version('litellm'))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def config(upstream: str) -> dict[str, object]:
    return {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": f"{upstream}/v1",
                    "api_key": KEY,
                },
            }
        ]
    }


async def start_litellm(executable: Path, upstream: str, workdir: Path) -> Process:
    directory = workdir / "litellm"
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "config.yaml"
    config_file.write_text(yaml.safe_dump(config(upstream)))
    port = free_port()
    argv = [str(executable), "--config", str(config_file), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--num_workers", "1"]
    return await launch(
        "litellm",
        argv,
        env=clean_env({**OFFLINE, "LITELLM_MASTER_KEY": MASTER_KEY}),
        url=f"http://127.0.0.1:{port}",
        health=HEALTH,
        workdir=directory,
        timeout=180.0,
    )
