"""The ledger: exactly one record per request, for `stellwerk stats` and `stellwerk log`.

The router's sink is `Ledger.record`; `Router.from_config` opens the ledger the configuration
names (`ledger:`) and `Router.aclose()` flushes and closes it. With the default SQLite backend the
records live in `ledger.db` next to the state database (`state.db`): `ledger.path` when set, else
the directory of `state.path`, else `$STELLWERK_STATE_DIR`, else the XDG state directory. With
`backend: postgres` they live in the PostgreSQL database at `ledger.url`, shared by every replica
(`postgres.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import ConfigError
from ..policy import Policy
from ..state import default_state_path
from .base import LedgerBackend, Row, row_from
from .memory import MemoryLedger
from .sqlite import SQLiteLedger
from .writer import Ledger

LEDGER_FILE = "ledger.db"

__all__ = [
    "LEDGER_FILE",
    "Ledger",
    "LedgerBackend",
    "MemoryLedger",
    "Row",
    "SQLiteLedger",
    "ledger_path",
    "open_backend",
    "open_ledger",
    "row_from",
]


def ledger_path(policy: Policy, env: Mapping[str, str] | None = None) -> Path:
    """Where the SQLite ledger lives: `ledger.path`, else `ledger.db` beside the state file."""
    if policy.ledger.path:
        return Path(policy.ledger.path).expanduser()
    state = Path(policy.state.path).expanduser() if policy.state.path else default_state_path(env)
    return state.parent / LEDGER_FILE


def open_backend(policy: Policy, env: Mapping[str, str] | None = None) -> LedgerBackend:
    """The backend `ledger.backend` names."""
    backend = policy.ledger.backend
    if backend == "memory":
        return MemoryLedger()
    if backend == "sqlite":
        return SQLiteLedger(ledger_path(policy, env))
    if backend == "postgres":
        return _postgres(policy.ledger.url)
    raise ConfigError("ledger.backend", f"unknown backend {backend!r} (sqlite, memory, postgres)")


def _postgres(url: str) -> LedgerBackend:
    """A `PostgresLedger`; psycopg is imported only when the config asks for it."""
    if not url:
        raise ConfigError("ledger.url", "the postgres backend needs a URL: postgresql://host/db")
    try:
        from .postgres import PostgresLedger
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "psycopg":
            raise
        raise ConfigError(
            "ledger.backend", "postgres needs psycopg: pip install 'stellwerk[postgres]'"
        ) from None
    return PostgresLedger(url)


def open_ledger(
    policy: Policy,
    env: Mapping[str, str] | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> Ledger:
    """The ledger the configuration names, ready to be the router's sink."""
    return Ledger(
        open_backend(policy, env),
        store_content=policy.ledger.store_content,
        retention=policy.ledger.retention,
        clock=clock,
    )
