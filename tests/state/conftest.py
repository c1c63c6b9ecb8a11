"""Store fixtures for the state contract suite.

`make_store` opens a store of the backend under test on a shared location, so a test can open a
second instance (another process's view, or the same process after a restart). Redis runs as a
real redis-server (tests/conftest.py); each test has its own key prefix on it. To add a backend,
add its name to BACKENDS and a branch in `_open`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from stellwerk.state import MemoryStore, SQLiteStore, StateStore

BACKENDS = ["memory", "sqlite", "redis"]
DURABLE = {"sqlite", "redis"}  # backends whose state outlives the store object and is shared

MakeStore = Callable[[], StateStore]


def _open(backend: str, path: Path, shared: MemoryStore, redis: tuple[str, str]) -> StateStore:
    if backend == "memory":
        return shared
    if backend == "sqlite":
        return SQLiteStore(path)
    if backend == "redis":
        from stellwerk.state.redis import RedisStore

        url, prefix = redis
        return RedisStore(url, prefix=prefix)
    raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[MakeStore]:
    """Open (another) store on the same state; all are closed after the test."""
    opened: list[StateStore] = []
    shared = MemoryStore()
    redis = ("", "")
    if backend == "redis":  # the server starts only when a Redis test runs
        server = request.getfixturevalue("redis_server")
        redis = (server.url, request.getfixturevalue("redis_prefix"))

    def make() -> StateStore:
        store = _open(backend, tmp_path / "state" / "state.db", shared, redis)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
def store(make_store: MakeStore) -> StateStore:
    return make_store()


@pytest.fixture
def durable(backend: str) -> str:
    """Skip unless the backend keeps state outside the store object."""
    if backend not in DURABLE:
        pytest.skip(f"{backend} state lives only in its store object")
    return backend
