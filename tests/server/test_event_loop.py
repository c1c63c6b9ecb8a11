"""`stellwerk serve` runs on uvloop when it is installed, on asyncio's loop when told to."""

from __future__ import annotations

import asyncio

import pytest

from stellwerk.server.run import loop_factory, run_loop


def test_asyncio_when_switched_off() -> None:
    assert loop_factory({"STELLWERK_LOOP": "asyncio"}) is None

    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_loop(which(), {"STELLWERK_LOOP": "asyncio"}).startswith("asyncio")


def test_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert loop_factory({}) is uvloop.new_event_loop

    async def which() -> bool:
        return isinstance(asyncio.get_running_loop(), uvloop.Loop)

    assert run_loop(which(), {})
