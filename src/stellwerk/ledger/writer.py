"""Recording decisions off the hot path: a buffer in memory, flushed in batches.

`Ledger.record(decision)` is the router's sink. It appends the finished decision to a list and
returns; it never waits for the disk, and the request does not even pay for turning the decision
into a row. A background task, started by the first record, writes what has gathered every
`flush_every` seconds (sooner once `batch` rows wait) in one transaction, in a worker thread that
also builds the rows. So a request never pays for a write, and under load one commit carries many
rows. `close()` stops the task and writes the rest: a clean shutdown loses nothing, a crash at
most the rows of the last fraction of a second. A write that fails (disk full, a lock held too
long) keeps its rows for the next try, up to `MAX_PENDING` of them.

The same task deletes rows older than the retention when it starts and once a day after.

Why every 50 ms: the writer thread builds each row in Python (~25 µs), holding the GIL, and a
request the event loop is ready to answer waits until the thread lets go of it. A quarter
second's rows at some hundred requests a second held it for ~4 ms, which every request in
flight at that moment waited out; a twentieth of a second's hold it for well under one. The
transactions this adds cost the thread a few hundred µs a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from ..decision import Decision
from .base import LedgerBackend, Row, row_from

log = logging.getLogger("stellwerk.ledger")

FLUSH_EVERY = 0.05  # seconds between writes while records arrive (see below)
BATCH = 200  # rows that trigger a write before the interval is up
MAX_PENDING = 100_000  # rows kept while writes fail; older ones are dropped beyond that
PRUNE_EVERY = 86400.0


class Ledger:
    """Buffers decision rows and writes them to a `LedgerBackend` in batches."""

    def __init__(
        self,
        backend: LedgerBackend,
        *,
        store_content: bool = False,
        retention: float = 0.0,
        clock: Callable[[], float] = time.time,
        flush_every: float = FLUSH_EVERY,
        batch: int = BATCH,
    ) -> None:
        self.backend = backend
        self.store_content = store_content
        self.retention = retention  # seconds; 0 keeps everything
        self.clock = clock
        self.flush_every = flush_every
        self.batch = batch
        self.dropped = 0  # rows lost because writes kept failing or came after close()
        self._pending: list[Decision] = []  # finished: nothing changes a decision once recorded
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closed = False
        self._failing = False
        self._prune_due = 0.0

    @property
    def pending(self) -> int:
        """Rows recorded but not written yet."""
        return len(self._pending)

    @property
    def failing(self) -> bool:
        """Whether the last write failed (its rows wait for the next one)."""
        return self._failing

    async def record(self, decision: Decision) -> None:
        """Queue the decision's row (the router's sink); returns at once."""
        if self._closed:
            self.dropped += 1
            log.warning("ledger closed: decision %s not recorded", decision.request_id)
            return
        self._pending.append(decision)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger")
        if len(self._pending) >= self.batch:
            self._wake.set()

    async def flush(self) -> int:
        """Write every queued row now, in one transaction; return how many were written."""
        async with self._lock:
            rows, self._pending = self._pending, []
            if not rows:
                return 0
            try:
                await asyncio.to_thread(self._write, rows)
            except Exception as exc:
                self._keep(rows, exc)
                return 0
            self._failing = False
            return len(rows)

    async def prune(self) -> int:
        """Delete rows older than the retention now; return how many."""
        if self.retention <= 0:
            return 0
        removed = await asyncio.to_thread(self.backend.prune, self.clock() - self.retention)
        if removed:
            log.info("ledger: deleted %d records older than the retention", removed)
        return removed

    async def close(self) -> None:
        """Stop the background task, write everything queued, close the backend."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)  # ends after its flush
        await self.flush()
        if self._pending:
            self.dropped += len(self._pending)
            log.error("ledger: %d records could not be written", len(self._pending))
        await asyncio.to_thread(self.backend.close)

    # -- reading (flushes first, so a process reads its own records) --------------------------

    async def since(self, start: float, end: float | None = None) -> list[Row]:
        """Rows with `start <= ts < end`, oldest first (for the reports)."""
        await self.flush()
        return await asyncio.to_thread(self.backend.since, start, end)

    async def tail(self, count: int) -> list[Row]:
        """The last `count` rows, oldest first."""
        await self.flush()
        return await asyncio.to_thread(self.backend.tail, count)

    async def after(self, row_id: int, limit: int = 1000) -> list[Row]:
        """Rows written after row `row_id`, oldest first."""
        await self.flush()
        return await asyncio.to_thread(self.backend.after, row_id, limit)

    # -- the background task --------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closed:
            await self._prune_if_due()
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_every)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def _prune_if_due(self) -> None:
        now = self.clock()
        if now < self._prune_due:
            return
        self._prune_due = now + PRUNE_EVERY
        try:
            await self.prune()
        except Exception:
            log.exception("ledger: deleting old records failed")

    def _write(self, decisions: Sequence[Decision]) -> None:
        self.backend.write([row_from(d, store_content=self.store_content) for d in decisions])

    def _keep(self, rows: Sequence[Decision], exc: Exception) -> None:
        """A failed write: put its rows back in front, within MAX_PENDING."""
        if not self._failing:
            log.error("ledger write failed, will retry: %s", exc)
        self._failing = True
        self._pending[:0] = rows
        excess = len(self._pending) - MAX_PENDING
        if excess > 0:
            del self._pending[:excess]
            self.dropped += excess
            log.error("ledger: dropped the %d oldest unwritten records", excess)
