"""The dashboard's decision feed: every recorded decision, for the pages that watch.

With a ledger, one task per process reads the rows written since the last one it saw, every
`POLL_EVERY` seconds while at least one page watches, and hands them to every page; so a page
sees every worker's and every replica's decisions, and the request path pays nothing for it.
Without a ledger (`ledger.backend: memory` keeps one; only a router built without any has none),
the gateway's own decisions are kept in a short ring and numbered here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from ..decision import Decision
from ..ledger import Ledger
from ..ledger.base import Row, row_from

log = logging.getLogger("stellwerk.server")

BACKLOG = 50  # decisions a new page gets first
POLL_EVERY = 0.5  # seconds between the feed's ledger reads while a page watches
Batch = list[dict[str, Any]]


def event(row: Row) -> dict[str, Any]:
    """One decision as the page shows it (from its ledger row, where texts are scrubbed)."""
    fallback = None
    if row.failures:
        fallback = "; ".join(f"{failure} on {target}" for target, failure in row.failures[:3])
    return {
        "id": row.id,
        "time": datetime.fromtimestamp(row.ts).astimezone().isoformat(timespec="seconds"),
        "ts": row.ts,
        "request_id": row.request_id,
        "client": row.client,
        "task": row.task,
        "routed_as": row.routed_as,
        "source": row.source,
        "mode": row.mode,
        "model": row.answered_by,
        "fallback": fallback if row.answered_by is not None else None,
        "failures": [{"target": t, "failure": f} for t, f in row.failures],
        "status": "ok" if row.answered_by is not None else "error",
        "error": row.error,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cache_read_tokens": row.cache_read_tokens,
        "cache_write_tokens": row.cache_write_tokens,
        "cache_share": round(row.cache_read_tokens / row.input_tokens, 4)
        if row.input_tokens
        else 0.0,
        "cost_micros": row.cost_micros,
        "latency_ms": round(row.latency_ms, 1),
        "cache_routed_from": row.cache_displaced,
    }


class Feed:
    """The decisions for the pages that watch, from one reader of the ledger per process.

    With a ledger, a task reads the newest rows every `POLL_EVERY` seconds while at least one
    page is subscribed, and hands those it had not seen to every page: at most `BACKLOG` a poll,
    what the page shows, so its cost does not grow with the request rate (the stats count
    every request; the page shows the latest). Without one,
    the gateway's own decisions are kept in a short ring (`publish`) and numbered here."""

    def __init__(self, ledger: Ledger | None) -> None:
        self.ledger = ledger
        self.pages: set[asyncio.Queue[list[dict[str, Any]] | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._last = 0  # the last ledger row id handed out
        self._ring: list[dict[str, Any]] = []  # without a ledger: the last BACKLOG decisions
        self._seq = 0

    @contextlib.asynccontextmanager
    async def watch(
        self, after: int | None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], asyncio.Queue[list[dict[str, Any]] | None]]]:
        """`(backlog, queue)`: what the page missed (after id `after`, else the last BACKLOG),
        then the queue of new batches (None: the gateway is stopping). Registered before the
        backlog is read, so nothing falls between; the page skips ids it has seen."""
        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(maxsize=256)
        self.pages.add(queue)
        try:
            backlog, last = await self._backlog(after)
            if self.ledger is not None and (self._task is None or self._task.done()):
                self._last = last  # the poll goes on from what this page has
                self._task = asyncio.create_task(self._poll(), name="stellwerk-feed")
            yield backlog, queue
        finally:
            self.pages.discard(queue)

    async def _backlog(self, after: int | None) -> tuple[list[dict[str, Any]], int]:
        """The page's backlog and the last row id it covers."""
        if self.ledger is None:
            return [e for e in self._ring if after is None or e["id"] > after], self._seq
        if after is None:
            rows = await self.ledger.tail(BACKLOG)
        else:
            rows = await self.ledger.after(after, 1000)
        if rows:
            return [event(row) for row in rows], rows[-1].id or 0
        newest = await self.ledger.tail(1)  # an id from before a new ledger file counts as none
        return [], min(after or 0, (newest[-1].id or 0) if newest else 0)

    async def _poll(self) -> None:
        assert self.ledger is not None
        try:
            while self.pages:
                await asyncio.sleep(POLL_EVERY)
                rows = [r for r in await self.ledger.tail(BACKLOG) if (r.id or 0) > self._last]
                if rows:
                    self._last = rows[-1].id or self._last
                    self._hand_out([event(r) for r in rows])
        except Exception:  # the feed must never take the gateway down
            log.exception("dashboard feed stopped")

    def publish(self, decision: Decision) -> None:
        """Without a ledger: the gateway's own decision, for the pages."""
        if self.ledger is not None:
            return
        self._seq += 1
        row = dataclasses.replace(row_from(decision), id=self._seq)
        entry = event(row)
        self._ring = [*self._ring[-(BACKLOG - 1) :], entry]
        if self.pages:
            self._hand_out([entry])

    def _hand_out(self, batch: list[dict[str, Any]]) -> None:
        for queue in list(self.pages):
            with contextlib.suppress(asyncio.QueueFull):  # a stuck page misses, never blocks
                queue.put_nowait(batch)

    async def close(self) -> None:
        for queue in list(self.pages):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
