"""Shared routing state: cooldowns and emergency mode, behind one `StateStore` interface.

`open_store(policy.state)` picks the backend the configuration names: SQLite (the default),
memory, or Redis (`state.url`: several gateway replicas share it; see `state/redis.py`). The
SQLite file lives at `state.path` when that is set, else in `$STELLWERK_STATE_DIR`, else in the
XDG state directory (`$XDG_STATE_HOME/stellwerk`, by default `~/.local/state/stellwerk`), so every
process of one user on one machine shares it without configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from ..policy import StatePolicy
from .base import FOREVER, Cooldown, Snapshot, StateStore, credential_key, model_key
from .cooldown import cooldown_keys, describe, duration, duration_rule
from .memory import MemoryStore
from .sqlite import SQLiteStore

STATE_DIR_ENV = "STELLWERK_STATE_DIR"
STATE_FILE = "state.db"

__all__ = [
    "FOREVER",
    "STATE_DIR_ENV",
    "Cooldown",
    "MemoryStore",
    "SQLiteStore",
    "Snapshot",
    "StateStore",
    "cooldown_keys",
    "credential_key",
    "default_state_path",
    "describe",
    "duration",
    "duration_rule",
    "model_key",
    "open_store",
]


def default_state_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the SQLite state lives when `state.path` is empty."""
    env = os.environ if env is None else env
    if directory := env.get(STATE_DIR_ENV):
        return Path(directory).expanduser() / STATE_FILE
    base = env.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(base) / "stellwerk" / STATE_FILE


def open_store(policy: StatePolicy, env: Mapping[str, str] | None = None) -> StateStore:
    """The state store the configuration names (`state.backend`, `state.path`, `state.url`)."""
    if policy.backend == "memory":
        return MemoryStore()
    if policy.backend == "sqlite":
        return SQLiteStore(
            Path(policy.path).expanduser() if policy.path else default_state_path(env)
        )
    if policy.backend == "redis":
        return _redis_store(policy)
    known = "sqlite, memory, redis"
    raise ConfigError("state.backend", f"unknown backend {policy.backend!r} ({known})")


def _redis_store(policy: StatePolicy) -> StateStore:
    """A `RedisStore`; the `redis` package is imported only when the config asks for it."""
    if not policy.url:
        raise ConfigError("state.url", "the redis backend needs a URL (or $STELLWERK_REDIS_URL)")
    try:
        from .redis import RedisStore
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "redis":
            raise
        raise ConfigError(
            "state.backend", "redis needs the redis package: pip install 'stellwerk[redis]'"
        ) from None
    return RedisStore(policy.url, prefix=policy.prefix, cache=policy.cache)
