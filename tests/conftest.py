"""Real servers for the tests that need them: a redis-server and a PostgreSQL cluster.

Each is started once per test session (with pytest-xdist, once per worker: every worker is its
own session, with its own servers on their own free ports), only when a test first asks for it,
and stopped at the end. A test opens its own key prefix or database on it, so tests never see
each other's data. A missing binary fails the tests that need it with the command that installs
it; they are never skipped.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stellwerk.testing.servers import PostgresServer, RedisServer, ServerMissing


def _started(factory: Callable[[], RedisServer | PostgresServer]) -> RedisServer | PostgresServer:
    try:
        return factory().start()
    except ServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session (tests share it under their own key prefixes)."""
    server = _started(RedisServer)
    assert isinstance(server, RedisServer)
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session (tests share it, each in its own database)."""
    server = _started(PostgresServer)
    assert isinstance(server, PostgresServer)
    yield server
    server.close()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database."""
    return postgres_server.create_database(f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def new_redis() -> Iterator[Callable[..., RedisServer]]:
    """Start a redis-server of a test's own (to stop and restart it); stopped after the test."""
    started: list[RedisServer] = []

    def start(*, persistent: bool = True) -> RedisServer:
        server = _started(lambda: RedisServer(persistent=persistent))
        assert isinstance(server, RedisServer)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_file(*parts: str) -> Path:
    """A file of `../shared` beside the checkout (the real client's captures, the routing data).
    CI always has it, so a test that needs it fails there without it; elsewhere it is skipped."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI has ../shared beside the clone")
        pytest.skip(f"{path} not present (../shared is beside a checkout of the project)")
    return path


def capture(name: str) -> list[dict[str, Any]]:
    """The requests of one capture of the real OpenClaw agent, each `{"route", "headers",
    "body"}` (`../shared/clients/openclaw/captures/NAME.json`)."""
    path = shared_file("clients", "openclaw", "captures", f"{name}.json")
    requests: list[dict[str, Any]] = json.loads(path.read_text())["requests"]
    return requests


@pytest.fixture(scope="session")
def _empty_config_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-config-home")


@pytest.fixture(autouse=True)
def _no_user_config(_empty_config_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the config of whoever runs the suite (~/.config/stellwerk/stellwerk.yaml)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(_empty_config_home))
