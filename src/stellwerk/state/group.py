"""Group commit: the writes made in one turn of the event loop, committed in one transaction.

A routed request writes the state file two to four times (a budget reservation, its settlement,
the turn and the warm caches it answered), and at 32 requests in flight dozens of writes wait for
the same lock. Each transaction's fixed cost (taking the write lock, appending and syncing the
WAL frames of the pages it changed) is most of a small write's cost, so the writes made while the
loop runs are queued and committed together as soon as it is free again (`loop.call_soon`): a
write that fails is rolled back alone (the batch is run again with a savepoint per write) and
raises for its caller alone; the others commit.

Nothing is acknowledged before it is committed: `write()` returns (or raises) only once the
transaction holding the write has committed (or failed), and a write's change to the store's
mirror (`then`) is made right after that commit, in commit order, whether its caller still waits
or not. Exactly-once accounting is therefore unchanged, and the loss window is the one every
write already had: a crash loses only writes whose callers have not returned yet, rolled back as
a whole (a reservation never written reserves nothing; a settlement never written leaves its
reservation to lapse, as a crash between the answer and the settlement always did). What it costs
is latency: a write waits for the rest of the loop turn it was made in (microseconds).

The commit runs inline on a connection that never waits; when another process holds the write
lock, the batch goes to a worker thread whose connection waits (`busy_timeout`) without stalling
the event loop. So does the WAL's checkpoint (copying the pages the log holds back into the
database file, and syncing it): SQLite runs one inside the commit that lets the log pass 1,000
pages, which was a commit of several milliseconds on the loop every few hundred requests, what
every request in flight waited out (the p99 at one request at a time). The inline connection
makes none; every `CHECKPOINT_EVERY` commits a passive checkpoint runs on a connection of its
own in a worker thread, beside the loop's commits. A checkpoint never copies the frames written
while it runs, so under load the log was never found whole in the database, never started over,
and grew by megabytes a second: a second pass copies what came meanwhile (little) holding the
write lock, the loop's commits of that moment going to the waiting connection's thread. (Holding
the lock through the whole checkpoint cost 14 % more CPU per request at 64 in flight, and p99s
of 120 ms.) Another process's commits (`--workers N`) can keep it from copying the whole log
too; then the next comes after an eighth of the interval.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
CHECKPOINT_EVERY = 200  # inline commits between two checkpoints (a few pages each)
_CHECKPOINT = "stellwerk-state-checkpoint"

log = logging.getLogger("stellwerk.state")


class _Write(NamedTuple):
    fn: Callable[..., Any]  # fn(conn, *args), inside the transaction
    args: tuple[Any, ...]
    then: Callable[[Any], object] | None  # with fn's result, right after the commit
    future: asyncio.Future[Any]


class GroupCommit:
    """Queues writes and commits each loop turn's in one transaction (see the module)."""

    def __init__(
        self,
        inline: sqlite3.Connection,
        waiting: sqlite3.Connection,
        lock: threading.Lock,
        checkpointer: sqlite3.Connection | None = None,
    ) -> None:
        self._inline = inline  # busy_timeout 0: never blocks the loop
        self._waiting = waiting  # busy_timeout set: used in a worker thread
        self._lock = lock  # one transaction at a time across both connections
        self._checkpointer = checkpointer  # used in a worker thread only, one at a time
        if checkpointer is not None:
            inline.execute("PRAGMA wal_autocheckpoint = 0")
        self._since_checkpoint = 0  # inline commits
        self._queue: list[_Write] = []
        self._threads: set[asyncio.Task[None]] = set()

    async def write(
        self, fn: Callable[..., T], *args: Any, then: Callable[[T], object] | None = None
    ) -> T:
        """`fn(conn, *args)` in the next group transaction; its result once that committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append(_Write(fn, args, then, future))
        if len(self._queue) == 1:
            loop.call_soon(self._commit)
        return await future

    async def drain(self) -> None:
        """Commit what is queued and wait for batches in worker threads (before closing)."""
        if self._queue:
            self._commit()
        while self._threads:
            await asyncio.gather(*self._threads)

    def _commit(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        if self._lock.acquire(blocking=False):
            try:
                done = _run(self._inline, batch)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in _BUSY:  # rolled back: retrying is safe
                    _fail(batch, exc)
                    return
            except Exception as exc:
                _fail(batch, exc)
                return
            else:
                _finish(batch, done)
                self._checkpoint_if_due()
                return
            finally:
                self._lock.release()
        task = asyncio.get_running_loop().create_task(self._in_thread(batch))
        self._threads.add(task)
        task.add_done_callback(self._threads.discard)

    def _checkpoint_if_due(self) -> None:
        """Every `CHECKPOINT_EVERY` inline commits, a passive checkpoint in a worker thread
        (one at a time; it skips pages a reader still needs)."""
        self._since_checkpoint += 1
        if self._checkpointer is None or self._since_checkpoint < CHECKPOINT_EVERY:
            return
        self._since_checkpoint = 0
        if any(task.get_name() == _CHECKPOINT for task in self._threads):
            return
        task = asyncio.get_running_loop().create_task(self._checkpoint(), name=_CHECKPOINT)
        self._threads.add(task)
        task.add_done_callback(self._threads.discard)

    async def _checkpoint(self) -> None:
        def checkpoint() -> bool:
            assert self._checkpointer is not None
            sql = "PRAGMA wal_checkpoint(PASSIVE)"
            self._checkpointer.execute(sql).fetchone()  # the bulk, beside our commits
            with self._lock:  # what they wrote meanwhile, with them held off (see the module)
                _, frames, copied = self._checkpointer.execute(sql).fetchone()
            return bool(copied < frames)

        try:
            behind = await asyncio.to_thread(checkpoint)
        except sqlite3.Error as exc:  # the next one copies what this one could not
            log.warning("state: checkpointing the WAL failed: %s", exc)
            return
        if behind:  # another process wrote meanwhile, or a reader held pages: try again soon
            self._since_checkpoint = max(self._since_checkpoint, CHECKPOINT_EVERY * 7 // 8)

    async def _in_thread(self, batch: list[_Write]) -> None:
        def locked() -> list[tuple[bool, Any]]:
            with self._lock:
                return _run(self._waiting, batch)

        try:
            done = await asyncio.to_thread(locked)
        except Exception as exc:
            _fail(batch, exc)
            return
        _finish(batch, done)


def _run(conn: sqlite3.Connection, batch: list[_Write]) -> list[tuple[bool, Any]]:
    """Every write of `batch` in one transaction: (True, result) or (False, the exception).

    The writes run one after the other as they are (two statements fewer per write than a
    savepoint each). Only if one of them raises is the transaction rolled back and the batch run
    again, each write in its own savepoint, so that the failing one is rolled back alone: a write
    is a function of the connection and its arguments, and nothing outside the database sees it
    before the commit, so running it twice is running it once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        try:
            done = [(True, write.fn(conn, *write.args)) for write in batch]
        except Exception:
            if len(batch) == 1:  # alone: its own failure rolls back the transaction
                raise
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            done = [_savepoint(conn, write) for write in batch]
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return done


def _savepoint(conn: sqlite3.Connection, write: _Write) -> tuple[bool, Any]:
    conn.execute("SAVEPOINT one")
    try:
        result = write.fn(conn, *write.args)
    except Exception as exc:
        conn.execute("ROLLBACK TO one")
        conn.execute("RELEASE one")
        return False, exc
    conn.execute("RELEASE one")
    return True, result


def _finish(batch: list[_Write], done: list[tuple[bool, Any]]) -> None:
    """Committed: mirror each write in order, then hand each caller its result or error."""
    for write, (ok, value) in zip(batch, done, strict=True):
        if ok and write.then is not None:
            try:
                write.then(value)
            except Exception:  # the write stands, committed
                log.exception("state: applying a committed write to the mirror failed")
        if write.future.done():  # its caller went away (cancelled): the write stands
            continue
        if ok:
            write.future.set_result(value)
        else:
            write.future.set_exception(value)


def _fail(batch: list[_Write], exc: Exception) -> None:
    for write in batch:
        if not write.future.done():
            write.future.set_exception(exc)
