"""`stellwerk serve --workers N`: N gateway processes sharing one port.

One Python process keeps one core busy at most; on a machine with more cores, more processes
serve more requests. The kernel spreads new connections over the processes that listen on the
same port with SO_REUSEPORT, so no process has to hand connections on. This supervisor binds the
port first (so `--port 0` resolves to one port for all), starts the workers as ordinary
`stellwerk serve` processes on it, writes the pid and ready files once every worker listens,
forwards SIGHUP (config reload) and SIGTERM/SIGINT (graceful stop) to them, and restarts a worker
that dies. Each worker has its own router, connection pool and metrics (`/metrics` counts the
worker that answered it); cooldowns, budgets and the ledger live in the shared state database.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..config import load_policy
from ..errors import StellwerkError
from ..wire.hop import INSTANCE, INSTANCE_ENV
from .run import (
    SHUTDOWN_TIMEOUT,
    _remove_pid,
    _write_atomic,
    default_pid_file,
    refuse_self_reference,
)

log = logging.getLogger("stellwerk.server")
START_TIMEOUT = 60.0
RESTART_PAUSE = 1.0


def serve_workers(
    workers: int,
    config_path: str | os.PathLike[str] | None,
    *,
    host: str | None = None,
    port: int | None = None,
    ready_file: Path | None = None,
    pid_file: Path | None = None,
    echo: Callable[[str], object] = print,
) -> None:
    """Run `workers` gateway processes on one port until SIGTERM or SIGINT."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise StellwerkError("--workers needs SO_REUSEPORT, which this platform does not have")
    policy = load_policy(config_path)
    gateway = policy.gateway
    host = host or gateway.host
    holder = _reserve(host, gateway.port if port is None else port)
    try:
        shown = f"[{host}]" if ":" in host else host
        refuse_self_reference(policy, f"http://{shown}:{holder.getsockname()[1]}")
    except StellwerkError:
        holder.close()
        raise
    os.environ.setdefault(INSTANCE_ENV, INSTANCE)  # the workers share one id in the loop marker
    pid_path = pid_file or default_pid_file()
    with holder, tempfile.TemporaryDirectory(prefix="stellwerk-workers-") as tmp:
        pool = _Pool(workers, config_path, host, holder.getsockname()[1], Path(tmp))
        try:
            url = pool.start()
            echo(f"stellwerk gateway listening on {url} ({workers} workers)")
            if gateway.dashboard:
                echo(f"dashboard: {url}/ui/")
            _write_atomic(pid_path, f"{os.getpid()}\n")
            if ready_file is not None:
                _write_atomic(ready_file, url + "\n")
            pool.supervise()
        finally:
            pool.stop()
            _remove_pid(pid_path)
            if ready_file is not None:
                ready_file.unlink(missing_ok=True)


def _reserve(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to the port, so every worker binds the same one."""
    if port and _listening(host, port):  # SO_REUSEPORT would let us join another gateway
        raise StellwerkError(f"cannot listen on {host}:{port}: address already in use")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StellwerkError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _listening(host: str, port: int) -> bool:
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    try:
        socket.create_connection((target, port), timeout=0.5).close()
    except OSError:
        return False
    return True


class _Pool:
    """The worker processes, their signals and their restarts."""

    def __init__(
        self,
        size: int,
        config_path: str | os.PathLike[str] | None,
        host: str,
        port: int,
        tmp: Path,
    ) -> None:
        self.size, self.config_path, self.host, self.port, self.tmp = (
            size,
            config_path,
            host,
            port,
            tmp,
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stopping = False
        self.reload = False

    def argv(self, index: int) -> list[str]:
        argv = [sys.executable, "-m", "stellwerk", "serve", "--reuse-port"]
        argv += ["--host", self.host, "--port", str(self.port)]
        argv += ["--pid-file", str(self.tmp / f"{index}.pid")]
        argv += ["--ready-file", str(self.tmp / f"{index}.ready")]
        if self.config_path is not None:
            argv += ["--config", os.fspath(self.config_path)]
        return argv

    def start(self) -> str:
        """Start every worker and wait until each listens; the gateway's URL."""
        self.procs = [subprocess.Popen(self.argv(i)) for i in range(self.size)]
        ready = [self.tmp / f"{i}.ready" for i in range(self.size)]
        deadline = time.monotonic() + START_TIMEOUT
        while not all(r.exists() for r in ready):
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                raise StellwerkError("a gateway worker did not start (see its log above)")
            time.sleep(0.01)
        return ready[0].read_text().strip()

    def supervise(self) -> None:
        """Forward signals, restart workers that die, until told to stop."""
        previous = {
            signal.SIGTERM: signal.signal(signal.SIGTERM, self._stop),
            signal.SIGINT: signal.signal(signal.SIGINT, self._stop),
            signal.SIGHUP: signal.signal(signal.SIGHUP, self._reload),
        }
        try:
            while not self.stopping:
                if self.reload:
                    self.reload = False
                    self.send(signal.SIGHUP)
                self._restart_dead()
                time.sleep(0.1)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _restart_dead(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None and not self.stopping:
                log.warning("gateway worker %d exited (%s); restarting it", i, proc.returncode)
                time.sleep(RESTART_PAUSE)
                self.procs[i] = subprocess.Popen(self.argv(i))

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def _reload(self, *_: object) -> None:
        self.reload = True

    def send(self, sig: signal.Signals) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM to every worker; they finish what is in flight, then exit."""
        self.stopping = True
        self.send(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT + 5
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
