"""`stellwerk serve --workers 2` as a real process: two gateways on one port.

The supervisor starts the workers on one port (SO_REUSEPORT), answers through them, forwards a
config reload and SIGTERM to each, starts a worker again when one dies, and a second gateway
asked for the same port refuses instead of silently sharing it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

import stellwerk
from stellwerk.testing._server import Reply
from stellwerk.testing.world import FakeWorld

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT") or not Path("/proc/self/task").exists(),
    reason="--workers needs SO_REUSEPORT; the test reads /proc",
)

SOURCE = str(Path(stellwerk.__file__).resolve().parents[1])
CONFIG = {"tasks": {"simple": {"primary": "openai/gpt-4o-mini", "fallbacks": []}}}
BODY = {"model": "auto:simple", "messages": [{"role": "user", "content": "hi"}]}


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


async def wait_for(check, seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def ask(url: str, times: int) -> list[str]:
    """`times` requests, each on a new connection (so the kernel picks a worker each time)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as client:
        answers = []
        for _ in range(times):
            async with client.post(f"{url}/v1/chat/completions", json=BODY) as r:
                assert r.status == 200, await r.text()
                answers.append((await r.json())["choices"][0]["message"]["content"])
        return answers


async def test_two_workers_serve_reload_restart_and_stop(tmp_path):
    async with FakeWorld() as world:
        world.fakes["openai"].default = Reply.ok("from a worker")
        config = tmp_path / "stellwerk.yaml"
        config.write_text(yaml.safe_dump(CONFIG))
        env = {**os.environ, **world.env(), "STELLWERK_STATE_DIR": str(tmp_path / "state")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE, env.get("PYTHONPATH")]))
        env.pop("STELLWERK_API_KEYS", None)
        ready, pid_file, log = tmp_path / "ready", tmp_path / "gateway.pid", tmp_path / "log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "stellwerk", "serve", "--workers", "2", "--port", "0",
                "--config", str(config), "--ready-file", str(ready), "--pid-file", str(pid_file),
                env=env, stdout=out, stderr=out, cwd=tmp_path,
            )  # fmt: skip
        try:
            await wait_for(ready.exists)
            url = ready.read_text().strip()
            assert int(pid_file.read_text()) == proc.pid
            workers = children(proc.pid)
            assert len(workers) == 2
            assert await ask(url, 6) == ["from a worker"] * 6

            port = url.rsplit(":", 1)[1]
            other = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "stellwerk", "serve", "--workers", "2", "--port", port,
                "--config", str(config), env=env, cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            said, _ = await asyncio.wait_for(other.communicate(), 30)
            assert other.returncode == 1 and b"address already in use" in said  # never joins

            proc.send_signal(signal.SIGHUP)
            await wait_for(lambda: log.read_text().count("config reloaded") == 2)
            async with aiohttp.ClientSession() as client:  # the dashboard's reload: all workers
                async with client.post(f"{url}/api/config/reload", json={}) as r:
                    assert r.status == 200, await r.text()
            await wait_for(lambda: log.read_text().count("config reloaded") == 4)

            os.kill(workers[0], signal.SIGKILL)
            await wait_for(lambda: len(set(children(proc.pid)) - set(workers)) == 1)
            # the new worker listens (its signal handlers are in place): the supervisor's line and
            # three workers' (a busy machine may take seconds to start one)
            await wait_for(lambda: log.read_text().count("listening on") == 4)
            assert await ask(url, 4) == ["from a worker"] * 4
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0, log.read_text()
        assert not pid_file.exists() and not ready.exists()
        assert log.read_text().count("stopped") == 2
