"""The gateway's light health watch on local providers.

A stopped Ollama shows itself to the router only when a request tries it: a refused connection,
then a breaker cooldown of 30 s, then the next request tries again. In emergency mode, where
local models are all there is, that is a failed attempt every 30 s and an answer that comes
later than it should. The gateway therefore asks every local Ollama for its version
(`GET /api/version`, a few hundred bytes, no model loaded) every `health.interval` and keeps the
result in the shared state as a mark on `health:<provider>`:

- a provider that does not answer is marked down at once; the planner skips it with the reason
  `ollama down (health check)`. The mark lasts three intervals and is renewed by every failed
  ping, so it lapses by itself if the watching gateway stops;
- a provider that answers again loses the mark and its refused-connection cooldown, so the next
  request uses it without waiting for the breaker.

Only transitions are logged and only failed pings write to the store; a healthy Ollama costs one
small GET per interval and one snapshot read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp

from .errors import ProviderError
from .failures import FailureClass
from .policy import Policy, ProviderSpec
from .providers import ollama
from .providers._http import new_session
from .state.base import Snapshot, StateStore, credential_key, health_key
from .state.cooldown import local_credential_id

log = logging.getLogger("stellwerk.health")

MARK_INTERVALS = 3
"""A down mark lasts this many intervals unless a failed ping renews it."""

PING_TIMEOUT = 5.0
"""Seconds a ping may take at most (less when the interval is shorter)."""


def watched(policy: Policy) -> list[ProviderSpec]:
    """The providers the watch pings: local Ollama servers."""
    return [p for p in policy.providers.values() if p.local and p.type == "ollama"]


class HealthWatch:
    """Pings local providers and keeps their health marks in the store."""

    def __init__(
        self,
        policy: Callable[[], Policy],
        store: StateStore,
        clock: Callable[[], float],
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._policy = policy  # read on every round: a config reload applies at once
        self.store = store
        self.clock = clock
        self._session = session
        self._owns_session = session is None

    async def check(self) -> dict[str, bool]:
        """One round: ping every watched provider, update its mark; `{name: up}`."""
        policy = self._policy()
        interval = policy.health.interval or 10.0
        results = {}
        for spec in watched(policy):
            error = await self._ping(spec, min(interval, PING_TIMEOUT))
            results[spec.name] = error is None
            if error is None:
                await self._up(spec)
            else:
                await self._down(spec, error, interval)
        return results

    async def run(self) -> None:
        """Check every `health.interval` until cancelled (the first check after one interval)."""
        while True:
            interval = self._policy().health.interval
            await asyncio.sleep(interval or 60.0)
            if not interval:
                continue  # switched off (a reload may switch it on again)
            try:
                await self.check()
            except Exception:  # the watch must never die of one bad round
                log.exception("health check failed")

    async def aclose(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def _ping(self, spec: ProviderSpec, timeout: float) -> str | None:
        """None if the provider answered, else why not."""
        if self._session is None:
            self._session = new_session()
        credential = spec.credentials[0] if spec.credentials else None
        try:
            await asyncio.wait_for(ollama.version(self._session, spec, credential), timeout)
        except TimeoutError:
            return f"no answer within {timeout:g}s"
        except ProviderError as exc:
            return str(exc)
        return None

    async def _up(self, spec: ProviderSpec) -> None:
        snapshot = await self.store.snapshot(self.clock())
        if health_key(spec.name) not in snapshot.cooldowns:
            return
        await self.store.recover(health_key(spec.name))
        for key in _refused(snapshot, spec):
            await self.store.recover(key)
        log.warning("%s is back (health check): local models usable again", spec.name)

    async def _down(self, spec: ProviderSpec, error: str, interval: float) -> None:
        now = self.clock()
        key = health_key(spec.name)
        was_down = key in (await self.store.snapshot(now)).cooldowns
        mark = interval * MARK_INTERVALS
        await self.store.strike(key, FailureClass.CONNECT, now, lambda _: mark, error[:200])
        if not was_down:
            log.warning("%s down (health check): %s; skipped until it answers", spec.name, error)


def _refused(snapshot: Snapshot, spec: ProviderSpec) -> list[str]:
    """The provider's credential cooldowns caused by refused connections."""
    ids = [c.id for c in spec.credentials] or [local_credential_id(spec)]
    keys = [credential_key(i) for i in ids]
    return [
        k for k in keys if (c := snapshot.cooldowns.get(k)) and c.reason is FailureClass.CONNECT
    ]


@contextlib.asynccontextmanager
async def watching(
    policy: Callable[[], Policy], store: StateStore, clock: Callable[[], float]
) -> AsyncIterator[HealthWatch]:
    """Run a health watch in the background for the duration of the block."""
    watch = HealthWatch(policy, store, clock)
    task = asyncio.create_task(watch.run(), name="stellwerk-health-watch")
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await watch.aclose()
