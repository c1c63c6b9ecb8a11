"""`stellwerk serve`: run the gateway until a signal says stop, reload the config on SIGHUP.

Shutdown is graceful: SIGTERM or SIGINT stop accepting connections, let requests in flight finish
(at most `SHUTDOWN_TIMEOUT` seconds) and then close the router, which flushes the state store.
SIGHUP (or `stellwerk config reload`, which sends it) re-reads the config file; a file that does
not validate is logged with its key path and the running config stays. `--port 0` binds a free
port and `--ready-file` receives the URL once the gateway listens, so tests never race for ports.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from ..classify import preload
from ..config import load_policy
from ..errors import ConfigError, StellwerkError
from ..health import HealthWatch
from ..policy import Policy
from ..readiness import unusable_reason
from ..router import Router
from ..state import default_state_path
from .app import create_app
from .errors import redact
from .gateway import GATEWAY, Gateway

log = logging.getLogger("stellwerk.server")
API_KEYS_ENV = "STELLWERK_API_KEYS"
ADMIN_KEYS_ENV = "STELLWERK_ADMIN_KEYS"
SHUTDOWN_TIMEOUT = 10.0
PID_FILE = "gateway.pid"
LOOP_ENV = "STELLWERK_LOOP"
T = TypeVar("T")


def client_keys(env: Mapping[str, str], name: str = API_KEYS_ENV) -> tuple[str, ...] | None:
    """Client keys from `$STELLWERK_API_KEYS` (comma-separated; admin keys from
    `$STELLWERK_ADMIN_KEYS` with `name=ADMIN_KEYS_ENV`); None: follow the config."""
    raw = env.get(name)
    if raw is None:
        return None
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def default_pid_file(env: Mapping[str, str] | None = None) -> Path:
    """Next to the state database: `$STELLWERK_STATE_DIR/gateway.pid` or the XDG state dir."""
    return default_state_path(env).parent / PID_FILE


GC_YOUNG = 50_000
"""Net allocations of container objects between two collections of the youngest generation
(Python's default: 700)."""

SWITCH_INTERVAL = 0.001
"""Seconds a thread keeps the GIL once another one asks for it (Python's default: 0.005)."""


def tune_for_serving() -> None:
    """Set the garbage collector and the GIL up for serving, once everything is loaded.

    What start-up made (modules, the config, the classifier, aiohttp) lives as long as the
    process, and `gc.freeze()` moves it out of the collector's sight, so a full collection no
    longer walks some 50,000 objects (~30 ms each time, a pause every request in flight waits
    out). A request's objects die by reference counting as it ends, but at 700 net allocations
    the collector ran every few requests, each time walking everything in flight (the requests
    of all open connections, the ledger rows waiting for their write) only to find it alive; at
    `GC_YOUNG` it runs some hundred times less often. Measured at 64 requests in flight on the
    overhead benchmark's gateway: ~60-100 µs of collector CPU per request before, ~5 after, with
    the same RSS. Cycles (an exception and its traceback) are still collected, later.

    Threads (the ledger's writer turning decisions into rows, the dashboard's stats) run Python
    beside the event loop, and a request the loop is ready to answer waits while one of them
    holds the GIL, up to the switch interval. At `SWITCH_INTERVAL` it waits a millisecond at
    most. Requests slower than three times the median, one request at a time, 4,000 of them:
    ~30 with the ledger writing every quarter second, ~10 every 50 ms, ~5-10 with this too."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, older, oldest)
    sys.setswitchinterval(SWITCH_INTERVAL)


def run_loop(main: Coroutine[Any, Any, T], env: Mapping[str, str] | None = None) -> T:
    """Run `main` on uvloop when it is installed (`pip install 'stellwerk[fast]'`), else on
    asyncio's own loop; `STELLWERK_LOOP=asyncio` forces the latter."""
    with asyncio.Runner(loop_factory=loop_factory(os.environ if env is None else env)) as runner:
        return runner.run(main)


def loop_factory(env: Mapping[str, str]) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (asyncio's default) when absent or switched off."""
    if env.get(LOOP_ENV, "auto").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def serve(
    config_path: str | os.PathLike[str] | None,
    *,
    host: str | None = None,
    port: int | None = None,
    ready_file: Path | None = None,
    pid_file: Path | None = None,
    echo: Callable[[str], object] = print,
    reuse_port: bool = False,
) -> None:
    """Run the gateway until SIGTERM or SIGINT (`reuse_port`: one of `--workers N`)."""
    router = Router.from_config(config_path)
    preload()  # the classifier's weights, so the first request does not wait for them
    app = create_app(
        router,
        api_keys=client_keys(os.environ),
        admin_keys=client_keys(os.environ, ADMIN_KEYS_ENV),
    )
    gateway = app[GATEWAY]
    gateway.config_path, gateway.supervised = config_path, reuse_port
    _log_redacted(gateway)
    tune_for_serving()
    runner = web.AppRunner(
        app,
        handle_signals=False,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        access_log=None,  # every request is logged once, as its decision; this line cost ~9 %
    )
    pid_path = pid_file or default_pid_file()
    await warn_if_unusable(router)
    with _Signals(lambda: reload_config(gateway, config_path)) as signals:
        await runner.setup()
        try:
            host = host or router.policy.gateway.host
            url = await _listen(runner, host, port, router, reuse_port)
            gateway.host = host
            refuse_self_reference(router.policy, url)
            echo(f"stellwerk gateway listening on {url} (config: {router.policy.source})")
            if router.policy.gateway.dashboard and not reuse_port:  # the supervisor says it once
                echo(f"dashboard: {url}/ui/")
            _write_atomic(pid_path, f"{os.getpid()}\n")
            if ready_file is not None:
                _write_atomic(ready_file, url + "\n")
            await signals.stop.wait()
            log.info(
                "shutting down: finishing requests in flight (at most %.0fs)", SHUTDOWN_TIMEOUT
            )
        finally:
            await runner.cleanup()
            await router.aclose()
            _remove_pid(pid_path)
            if ready_file is not None:
                ready_file.unlink(missing_ok=True)
    log.info("stopped")


async def warn_if_unusable(router: Router) -> str | None:
    """Log a WARNING when no provider can answer (no key set, Ollama not running): the reason,
    naming the variables to set; None when one can. Local servers are pinged once first, and
    the health watch's marks that this leaves make `/readyz` agree from the start."""
    policy = router.policy
    if any(p.credentials for p in policy.providers.values() if not p.local):
        return None
    watch = HealthWatch(lambda: policy, router.store, router.clock)
    try:
        await watch.check()
    except Exception as exc:  # a failed ping must not stop the gateway from starting
        log.debug("start-up health check failed: %s", exc)
    finally:
        await watch.aclose()
    reason = unusable_reason(policy, await router.store.snapshot(router.clock()))
    if reason is not None:
        log.warning(
            "%s. The gateway runs, but /readyz answers 503 and every request fails until a"
            " provider is usable (`stellwerk check` shows what is missing)",
            reason,
        )
    return reason


async def _listen(
    runner: web.AppRunner, host: str, port: int | None, router: Router, reuse_port: bool = False
) -> str:
    port = router.policy.gateway.port if port is None else port
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        raise StellwerkError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return f"http://{shown}:{bound_port}"


_LOCAL = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", "ip6-localhost"})
_ANY = frozenset({"0.0.0.0", "::", ""})


def refuse_self_reference(policy: Policy, url: str) -> None:
    """StellwerkError when a provider's base URL is this gateway's own listen address
    (`OPENAI_BASE_URL` set for an SDK that should reach the gateway, read by Stellwerk too)."""
    listening = urlsplit(url)
    ours = _host_names(listening.hostname or "")
    for spec in policy.providers.values():
        target = urlsplit(spec.base_url)
        default = 443 if target.scheme == "https" else 80
        try:
            port = target.port or default
        except ValueError:
            continue
        if port == listening.port and (target.hostname or "").lower() in ours:
            raise StellwerkError(
                f"provider {spec.name}'s base URL {spec.base_url} is this gateway's own address"
                f" ({url}): every request would loop back here. Point it at the provider (for"
                " OpenAI unset OPENAI_BASE_URL in the gateway's environment, or set the"
                f" provider's base_url in the config), or listen on another port"
            )


def _host_names(host: str) -> frozenset[str]:
    """The names a client may use for `host`: every local name when it is a loopback or
    wildcard address, else the name itself."""
    host = host.lower().strip("[]")
    if host in _LOCAL or host in _ANY:
        names = set(_LOCAL)
        if host in _ANY:  # listening everywhere: the machine's own names reach it too
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        return frozenset(names)
    return frozenset({host})


class _Signals:
    """SIGTERM and SIGINT set `stop` (repeats while shutting down change nothing); SIGHUP
    calls `on_reload`. Installed for the whole life of the gateway, shutdown included."""

    def __init__(self, on_reload: Callable[[], object]) -> None:
        self.stop = asyncio.Event()
        self._handlers: dict[signal.Signals, Callable[[], object]] = {
            signal.SIGTERM: self.stop.set,
            signal.SIGINT: self.stop.set,
        }
        if hasattr(signal, "SIGHUP"):
            self._handlers[signal.SIGHUP] = on_reload

    def __enter__(self) -> _Signals:
        loop = asyncio.get_running_loop()
        for sig, handler in self._handlers.items():
            try:
                loop.add_signal_handler(sig, handler)
            except NotImplementedError:  # Windows: plain handlers, run on the loop's thread
                signal.signal(sig, lambda *_, h=handler: loop.call_soon_threadsafe(h))
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._handlers:
            try:
                loop.remove_signal_handler(sig)
            except NotImplementedError:
                signal.signal(sig, signal.SIG_DFL)


def reload_config(gateway: Gateway, config_path: str | os.PathLike[str] | None) -> bool:
    """Validate the config file again and swap it in; keep the running one if it is invalid."""
    try:
        policy = load_policy(config_path)
    except ConfigError as exc:
        log.error("config reload rejected, the running config stays: %s", exc)
        return False
    except Exception as exc:  # an unreadable file must not take the gateway down
        log.error("config reload failed, the running config stays: %s", exc)
        return False
    gateway.reload(policy)
    log.info("config reloaded from %s", policy.source)
    return True


def signal_reload(pid_file: Path) -> int:
    """Send SIGHUP to the gateway whose pid is in `pid_file`; its pid. StellwerkError if none."""
    if not hasattr(signal, "SIGHUP"):
        raise StellwerkError("config reload needs SIGHUP, which this platform does not have")
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        raise StellwerkError(f"no running gateway found via {pid_file}: {exc}") from None
    return pid


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def _remove_pid(path: Path) -> None:
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


# -- logging ---------------------------------------------------------------------------------


class _Redact(logging.Filter):
    """Masks every secret the gateway knows in every log line, whoever wrote it."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__()
        self.gateway = gateway
        self._known: tuple[object, list[str]] = (None, [])  # (policy, its secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        secrets = self._secrets()
        if any(s in message for s in secrets):
            record.msg, record.args = redact(message, secrets), None
        return True

    def _secrets(self) -> list[str]:
        """The secrets, collected again only after a config reload (every line pays otherwise)."""
        policy = self.gateway.router.policy
        if self._known[0] is not policy:
            self._known = (policy, [s for s in self.gateway.secrets() if len(s) >= 8])
        return self._known[1]


def _log_redacted(gateway: Gateway) -> None:
    """Log to stderr at INFO, with secrets masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Redact(gateway))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
