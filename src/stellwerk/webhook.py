"""Budget alerts to an optional webhook: JSON POSTs in the background, retried, never in the way.

A request that crosses a budget threshold must not wait for (or fail because of) someone's chat
webhook. `Webhook.send` only schedules a task; the task posts the JSON body and retries with
exponential backoff on connection errors, timeouts and non-2xx answers, then gives up with a log
line. `aclose` gives deliveries still under way a moment to finish, then cancels them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

log = logging.getLogger("stellwerk.webhook")


class Webhook:
    """Delivers JSON bodies to URLs from background tasks."""

    attempts = 5
    backoff = 0.5  # seconds before the first retry; doubles each time
    timeout = 10.0  # seconds per POST

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[bool]] = set()

    def send(self, url: str, body: dict[str, Any]) -> asyncio.Task[bool]:
        """Post `body` to `url` in the background; the task's result says whether it arrived."""
        task = asyncio.get_running_loop().create_task(self._deliver(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(self, url: str, body: dict[str, Any]) -> bool:
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            problem = await self._post(url, body)
            if problem is None:
                return True
            log.info("webhook %s: attempt %d failed: %s", url, attempt + 1, problem)
        log.warning("webhook %s: gave up after %d attempts", url, self.attempts)
        return False

    async def _post(self, url: str, body: dict[str, Any]) -> str | None:
        """None when the POST was accepted (2xx), else what went wrong."""
        try:
            async with self._client().post(url, json=body) as response:
                await response.read()
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def aclose(self, grace: float = 1.0) -> None:
        """Let deliveries under way finish for up to `grace` seconds, cancel the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
