"""Throwaway redis-server and PostgreSQL instances on loopback, for tests and benchmarks.

The state contract runs against a real Redis and the ledger tests against a real PostgreSQL,
because their atomicity (Lua scripts, transactions) is what the backends promise. Each server
runs from the distribution's binaries on 127.0.0.1, on a free port, with its data in a fresh
temporary directory that is deleted when it stops. PostgreSQL refuses to run as root, so as root
the cluster is created and started as the `postgres` user that Debian's package creates.

A missing binary raises `ServerMissing` whose message says how to install it; the test suite
turns that into a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

INSTALL = "bash scripts/test-servers (or: sudo apt-get install -y redis-server postgresql)"
START_TIMEOUT = 30.0


class ServerMissing(RuntimeError):
    """A server binary is not installed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes] | None, what: str, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break  # it exited (say, the port was taken after all): not our server answering
        if ready():
            return
        time.sleep(0.02)
    text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not start:\n{text}")


class RedisServer:
    """A redis-server on 127.0.0.1; `stop()` and `start()` again keep its port and its data."""

    def __init__(self, *, persistent: bool = False) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise ServerMissing(f"redis-server is not installed; install it with: {INSTALL}")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="stellwerk-redis-"))
        self.persistent = persistent  # an append-only file, so a restart keeps the data
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        """Start (again, on the same port); the first start moves to another port if it must."""
        for attempt in range(3):
            try:
                self._start()
            except RuntimeError:
                if self._started or attempt == 2:
                    raise
                self.port = free_port()  # another process took the port meanwhile
            else:
                self._started = True
                return self
        raise AssertionError("unreachable")

    def _start(self) -> None:
        assert self.binary is not None
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.dir), "--save", "", "--protected-mode", "no"]
        args += ["--appendonly", "yes" if self.persistent else "no"]
        log = self.dir / "redis.log"
        with log.open("ab") as out:
            self._proc = subprocess.Popen(args, stdout=out, stderr=out, cwd=self.dir)
        _wait(self._answers, self._proc, f"redis-server on port {self.port}", log)

    def stop(self) -> None:
        """Shut the server down (it writes its append-only file first)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with trust authentication."""

    USER = "stellwerk"

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="stellwerk-pg-"))
        self.data = self.dir / "data"
        self._owner: str | None = None
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
            self._owner = _postgres_user()
            shutil.chown(self.dir, self._owner)
        self._started = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", self.USER, "--auth=trust", "--no-sync")
        log = self.dir / "postgres.log"
        for attempt in range(3):
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data), "-l", str(log), "-o", options, "-w", "start"
                )
            except RuntimeError:
                if attempt == 2:
                    raise
                self.port = free_port()  # another process took the port meanwhile
            else:
                break
        self._started = True
        _wait(self._answers, None, f"PostgreSQL on port {self.port}", log)
        return self

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER,
                  "-d", "postgres", "-q", "-c", f'CREATE DATABASE "{name}"')  # fmt: skip
        return self.url(name)

    def close(self) -> None:
        if self._started:
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self._started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._owner is not None:
            command = ["runuser", "-u", self._owner, "--", *command]
        done = subprocess.run(command, capture_output=True, cwd=self.dir, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            raise RuntimeError(f"{tool} failed ({done.returncode}):\n{output}")


def _postgres_bin() -> Path:
    """The directory with initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if versions:
        return Path(versions[-1]).parent
    raise ServerMissing(f"PostgreSQL is not installed; install it with: {INSTALL}")


def _postgres_user() -> str:
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        raise ServerMissing(
            "running as root, PostgreSQL needs a `postgres` user to run as; "
            f"Debian's package creates it: {INSTALL}"
        ) from None
