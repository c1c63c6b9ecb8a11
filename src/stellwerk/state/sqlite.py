"""Routing state in one SQLite file: the embedded default, shared by processes on one machine.

Cooldowns must survive a restart (a billing lockout lasts hours) and be seen by every gateway,
CLI and library process on the machine (`stellwerk reset` in a shell must reach a running
gateway). SQLite in WAL mode gives both with the standard library alone.

Costs, measured on a 2-core machine:
- `snapshot()` runs on every request, so it never touches the tables when nothing changed: an
  in-memory mirror of all rows is kept, and the check is `PRAGMA data_version` on the connection
  this store writes with, which moves only when another connection (another process) commits.
  Then one small query reads two generations, kept in the same transactions as the writes: a
  counter in `kv` that triggers count up on every change to the cooldowns and the mode, and the
  last row of `budget_log`, to which every budget write appends one; only what changed is read
  again. In WAL mode a reader never waits for a writer. Median `snapshot()`: ~8 µs (no rows) to
  ~20 µs (20 cooldowns, 3 budget counters, 64 reservations in flight) when nothing changed or
  after this store's own budget write. After another process's budget writes the mirror replays
  them from the log, whatever the number in flight: ~70 µs after one write, ~13 µs more per
  further write. A store more than `LOG_KEPT` writes behind reads the budget tables whole
  instead: ~80 µs (one reservation in flight) to ~750 µs (64), about what replaying `LOG_KEPT`
  writes costs. After another process changed the cooldowns or the mode, ~140 µs (20 rows) to
  ~850 µs (200 rows).
- Every write goes through a group commit (`group.py`): the writes made in one turn of the
  event loop (concurrent requests' budget writes, the turn and warm map a request leaves) commit
  in one transaction (a failing write is rolled back alone), on a connection that never waits
  (~0.07 ms per transaction) and, only when another process holds the write lock, in a worker
  thread (`asyncio.to_thread`) whose `busy_timeout` wait never stalls the event loop; the thread
  hop alone costs more than a write (overhead benchmark). A write returns only once committed.
  That connection makes no WAL checkpoint: a fourth one does, every few hundred commits, in a
  worker thread (a checkpoint inside a commit held the loop for milliseconds).
  `strike` is one transaction, so concurrent strikes on one key from several processes all count.
- `recover(key)` runs after every successful attempt; it writes only when the mirror holds a row
  for the key, so the healthy path stays read-only.
- Budgets are the exception, and only when limits are configured: each attempt is one `reserve`
  and one `settle` (or `release`) transaction (~0.06-0.08 ms each). Each also appends what it did
  to `budget_log` (~10 µs of that), its rowid the write's generation, so the store applies its
  own writes to the mirror (a `Tally`, whose usage costs O(counters), not O(requests in flight))
  and replays other processes' writes from the log. Every `LOG_KEPT` writes one of them trims
  the log to the last `LOG_KEPT`. Settled usage lives in `budget_counters`, estimates in flight in
  `budget_reservations` (one row per counter; both WITHOUT ROWID, so a write changes one b-tree
  each), so settling is "delete the reservation, add the actual" and happens at most once.
  Ended windows and lapsed reservations no longer count when read; a reserve deletes their rows
  every `SWEEP_EVERY` seconds, and a warn mark deletes ended flags.

- Agent turns (`remember_turn`, after every answer with a human turn): one small write
  transaction (the turn's row, and deleting expired turns through the `expires` index); every
  few writes it also trims the table to `turns_kept`. `turn_target` (continuations only) is one
  primary-key lookup on the reader. Turns are not mirrored: snapshots never read them.

`until` is stored as a REAL; FOREVER is IEEE infinity, which SQLite stores and returns unchanged.
Rows are kept STRIKE_MEMORY seconds past their expiry so repeated failures keep counting strikes;
older rows are deleted by the next strike. The schema is versioned with `PRAGMA user_version`.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgspec

from ..failures import FailureClass
from ..redaction import install, scrubbed_column
from ..sqlite_file import connect, migrate
from .base import TURNS_KEPT, Cooldown, Snapshot
from .cooldown import STRIKE_MEMORY, next_cooldown
from .events import recent
from .group import GroupCommit
from .tally import Counter, Reservation, Tally, new_reservation_id

T = TypeVar("T")

SWEEP_EVERY = 5.0  # seconds between deletions of ended budget rows (reads skip them anyway)
LOG_KEPT = 64  # budget writes the log keeps at least; a store further behind reads the tables
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}

_STATE = "state_generation"  # kv row counting changes to cooldowns and the mode (triggers)


def _counted(table: str, event: str, row: str = "") -> str:
    """A trigger that counts `state_generation` up whenever `event` changes `table` (or the rows
    of it that match `row`), inside the writing transaction, whichever process writes."""
    when = f" WHEN {row}" if row else ""
    return (
        f"CREATE TRIGGER {table}_{event.lower()} AFTER {event} ON {table}{when} BEGIN "
        f"UPDATE kv SET value = CAST(value AS INTEGER) + 1 WHERE name = '{_STATE}'; END"
    )


def _clustered(table: str, columns: str) -> tuple[str, ...]:
    """`table` rebuilt as a WITHOUT ROWID table, rows kept: stored in its primary key's b-tree
    alone, a budget write changes one page of it instead of two (table and key index)."""
    return (
        f"CREATE TABLE {table}_new ({columns}) WITHOUT ROWID",
        f"INSERT INTO {table}_new SELECT * FROM {table}",
        f"DROP TABLE {table}",
        f"ALTER TABLE {table}_new RENAME TO {table}",
    )


_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE cooldowns (
            key TEXT PRIMARY KEY, until REAL NOT NULL, reason TEXT NOT NULL,
            strikes INTEGER NOT NULL, since REAL NOT NULL, detail TEXT NOT NULL DEFAULT '')""",
        """CREATE TABLE kv (
            name TEXT PRIMARY KEY, value TEXT NOT NULL, changed_at REAL NOT NULL,
            reason TEXT NOT NULL DEFAULT '')""",
    ),
    (
        """CREATE TABLE budget_counters (
            key TEXT PRIMARY KEY, tokens INTEGER NOT NULL, micros INTEGER NOT NULL,
            expires REAL NOT NULL)""",
        """CREATE TABLE budget_reservations (
            id TEXT NOT NULL, key TEXT NOT NULL, tokens INTEGER NOT NULL, micros INTEGER NOT NULL,
            expires REAL NOT NULL, key_expires REAL NOT NULL, PRIMARY KEY (id, key))""",
        """CREATE TABLE budget_flags (
            key TEXT NOT NULL, threshold TEXT NOT NULL, expires REAL NOT NULL,
            PRIMARY KEY (key, threshold))""",
    ),
    (
        f"INSERT OR IGNORE INTO kv (name, value, changed_at) VALUES ('{_STATE}', '0', 0)",
        _counted("cooldowns", "INSERT"),
        _counted("cooldowns", "UPDATE"),
        _counted("cooldowns", "DELETE"),
        _counted("kv", "INSERT", "NEW.name = 'emergency'"),
        _counted("kv", "UPDATE", "NEW.name = 'emergency'"),
        _counted("kv", "DELETE", "OLD.name = 'emergency'"),
        *_clustered(
            "budget_counters",
            """key TEXT PRIMARY KEY, tokens INTEGER NOT NULL, micros INTEGER NOT NULL,
            expires REAL NOT NULL""",
        ),
        *_clustered(
            "budget_reservations",
            """id TEXT NOT NULL, key TEXT NOT NULL, tokens INTEGER NOT NULL,
            micros INTEGER NOT NULL, expires REAL NOT NULL, key_expires REAL NOT NULL,
            PRIMARY KEY (id, key)""",
        ),
    ),
    (
        """CREATE TABLE budget_log (
            generation INTEGER PRIMARY KEY, change TEXT NOT NULL, id TEXT NOT NULL,
            tokens INTEGER, micros INTEGER, expires REAL, keys TEXT)""",
        "DELETE FROM kv WHERE name = 'budget_generation'",  # the log's generations replace it
    ),
    (
        """CREATE TABLE turns (
            turn TEXT PRIMARY KEY, target TEXT NOT NULL, expires REAL NOT NULL) WITHOUT ROWID""",
        "CREATE INDEX turns_expires ON turns (expires)",
    ),
    (  # keys an upstream echoed into a cooldown detail before texts were scrubbed where read
        scrubbed_column("cooldowns", "detail"),
        scrubbed_column("kv", "reason"),
    ),
)
"""Schema steps in order; `PRAGMA user_version` counts how many a database has applied."""

_COLUMNS = "key, until, reason, strikes, since, detail"
_COUNTER = "key, tokens, micros, expires"
_HELD = "id, key, tokens, micros, expires, key_expires"
_LOGGED = "change, id, tokens, micros, expires, keys"
_RESERVE, _SETTLE, _RELEASE = "reserve", "settle", "release"  # the changes in `budget_log`
_EMERGENCY = "emergency"
_EVENTS = "events:"  # kv rows `events:<name>` hold a JSON list of recent event times


class _Mode(NamedTuple):
    """The emergency row of `kv`: on or off, since when (changed_at) and why."""

    on: bool = False
    since: float | None = None
    reason: str = ""


class _Read(NamedTuple):
    """What one look at the tables found: both generations, and the parts that changed since
    the generations the mirror knew (None: unchanged, not read). Budgets come as the budget
    writes since the mirror's generation (`log`) or, failing that, the tables whole (`tally`)."""

    state: int
    budgets: int
    cooldowns: dict[str, Cooldown] | None
    mode: _Mode | None
    tally: Tally | None
    log: list[tuple[Any, ...]] | None


class SQLiteStore:
    """A `StateStore` in one SQLite file, safe for several processes on one machine."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = connect(self.path)
        self._write_lock = threading.Lock()
        install(self._writer)  # `stellwerk_scrub`, for the step that scrubs stored details
        migrate(self._writer, _MIGRATIONS, "state.path", self.path)
        self._reader = connect(self.path)
        self._inline = connect(self.path, busy_timeout_ms=0)  # fails fast: see `_write`
        self._checkpointer = connect(self.path)  # the WAL's checkpoints, off the loop (group.py)
        self._read_lock = threading.Lock()
        self._version: int | None = None
        self._rows: dict[str, Cooldown] = {}
        self._emergency = _Mode()
        self._state: int | None = None  # of `_rows` and `_emergency`; None: read them again
        self._tally = Tally()  # the budget tables, kept up to date by our own writes
        self._generation: int | None = None  # of `_tally`; None: read the tables again
        self._swept = -math.inf  # when this store last deleted ended budget rows
        self.turns_kept = TURNS_KEPT
        self._turn_writes = 0  # `remember_turn` calls, to trim the table every few of them
        self._commits = GroupCommit(
            self._inline, self._writer, self._write_lock, self._checkpointer
        )

    async def snapshot(self, now: float) -> Snapshot:
        """Active cooldowns and the mode at `now`, from the mirror (re-read only after commits)."""
        rows, mode = self._mirror()
        active = {k: c for k, c in rows.items() if c.active(now)}
        return Snapshot(
            now=now,
            cooldowns=active,
            emergency=mode.on,
            emergency_since=mode.since,
            emergency_reason=mode.reason,
            budgets=self._tally.usage(now),
        )

    async def strike(
        self,
        key: str,
        reason: FailureClass,
        now: float,
        duration: Callable[[int], float],
        detail: str = "",
    ) -> Cooldown:
        """Record one failure on `key` atomically across processes; return its cooldown.

        A first strike that cools nothing down (`breaker: 0s`, a zero billing period) would
        store nothing either, so it costs no transaction."""
        rows, _ = self._mirror()
        if key not in rows:
            first = next_cooldown(None, key, reason, now, duration, detail)
            if not first.until > now:
                return first
        return await self._change(_strike, key, reason, now, duration, detail)

    async def recover(self, key: str) -> None:
        """A success on `key`: forget its strikes and any cooldown (no write if there is none)."""
        rows, _ = self._mirror()
        if key in rows:
            await self._change(_execute, "DELETE FROM cooldowns WHERE key = ?", (key,))

    async def reset(self, prefix: str = "") -> int:
        """Clear every cooldown whose key starts with `prefix` (all when empty); return how many."""
        sql = "DELETE FROM cooldowns WHERE substr(key, 1, ?) = ?"
        return await self._change(_execute, sql, (len(prefix), prefix))

    async def set_emergency(self, on: bool, now: float, reason: str = "") -> bool:
        """Switch emergency mode for every process using this file; True if it changed."""
        return await self._change(_set_emergency, on, now, reason)

    async def count_recent(self, name: str, now: float, window: float) -> int:
        """Record one event `name` at `now` in one transaction; how many in the last `window`."""
        return await self._write(_count_recent, name, now, window)

    async def reserve(
        self, keys: Mapping[str, float], tokens: int, micros: int, now: float, ttl: float
    ) -> str:
        """Add an estimate to every budget counter in `keys` in one transaction; return its id.

        Every `SWEEP_EVERY` seconds the same transaction deletes ended budget rows first."""
        rid = new_reservation_id()
        sweep = abs(now - self._swept) >= SWEEP_EVERY
        if sweep:
            self._swept = now

        def mirror(generation: int) -> None:
            self._apply(generation, lambda t: t.reserve(keys, tokens, micros, now, ttl, rid))

        await self._write(_reserve, rid, keys, tokens, micros, now + ttl, now, sweep, then=mirror)
        return rid

    async def settle(self, reservation: str, tokens: int, micros: int, now: float) -> bool:
        """Replace a live reservation's estimate with the actual usage (once, atomically)."""

        def mirror(done: tuple[dict[str, float] | None, int]) -> None:
            keys, generation = done
            self._apply(generation, lambda tally: tally.settled(reservation, keys, tokens, micros))

        keys, _ = await self._write(_settle, reservation, tokens, micros, now, then=mirror)
        return keys is not None

    async def release(self, reservation: str) -> bool:
        """Drop a reservation's estimate."""

        def mirror(done: tuple[bool, int]) -> None:
            self._apply(done[1], lambda tally: tally.release(reservation))

        released, _ = await self._write(_release, reservation, then=mirror)
        return released

    async def mark_warned(self, key: str, threshold: str, now: float, expires: float) -> bool:
        """True only for the first process to mark (`key`, `threshold`) before `expires`."""
        return await self._write(_mark_warned, key, threshold, now, expires)

    async def remember_turn(self, turn: str, target: str, now: float, ttl: float) -> None:
        """Remember the turn's target until `now + ttl`, in one small transaction that also
        deletes expired turns (through the index: nothing to scan when none expired). Every
        `turns_kept // 16` writes (at most 64) it forgets the oldest turns beyond `turns_kept`,
        so the table stays within a sixteenth of its cap without counting rows on every write."""
        self._turn_writes += 1
        trim = self._turn_writes % max(1, min(64, self.turns_kept // 16)) == 0
        await self._write(_remember_turn, turn, target, now, now + ttl, self.turns_kept, trim)

    async def turn_target(self, turn: str, now: float) -> str | None:
        """The turn's target, None if unknown or expired (one primary-key lookup)."""
        sql = "SELECT target FROM turns WHERE turn = ? AND expires > ?"
        with self._read_lock:
            found = self._reader.execute(sql, (turn, now)).fetchone()
        return None if found is None else str(found[0])

    async def close(self) -> None:
        """Commit what is queued, then close the connections; the store is unusable afterwards."""
        await self._commits.drain()
        with self._write_lock:
            self._writer.close()
            self._inline.close()
            self._checkpointer.close()
        with self._read_lock:
            self._reader.close()

    def _mirror(self) -> tuple[dict[str, Cooldown], _Mode]:
        """Cooldowns and mode, after reading again whatever others changed: their commits move
        the inline writer's `data_version`, and the generations tell which tables changed (a
        budget write, on every request, leaves the cooldowns alone)."""
        with self._read_lock:
            version = self._outside_version()
            if (
                version is None
                or version != self._version
                or self._generation is None
                or self._state is None
            ):
                read = _load(self._reader, self._state, self._generation)
                if read.cooldowns is not None and read.mode is not None:
                    self._rows, self._emergency, self._state = read.cooldowns, read.mode, read.state
                if read.tally is not None:
                    self._tally, self._generation = read.tally, read.budgets
                elif read.log is not None:
                    _replay(self._tally, read.log)
                    self._generation = read.budgets
                self._version = version
            return self._rows, self._emergency

    def _outside_version(self) -> int | None:
        """`PRAGMA data_version` of the inline writer, or None while it is busy.

        A connection's data_version moves only when another connection commits (another
        process, or this store's writer thread), never for its own commits: this store's inline
        writes, already applied to the mirror, cost no read at the next snapshot."""
        if not self._write_lock.acquire(blocking=False):
            return None
        try:
            return int(self._inline.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in _BUSY:
                raise
            return None
        finally:
            self._write_lock.release()

    def _apply(self, generation: int, change: Callable[[Tally], object]) -> None:
        """Our own budget write, made to the mirror as well, right after it committed (reading
        it back costs a read per request). Only when the mirror knew every write before it (the
        generation says); else the next snapshot replays it with the others' from the log
        (their commits moved the `data_version` it watches)."""
        with self._read_lock:
            if self._generation is not None and generation == self._generation + 1:
                change(self._tally)
                self._generation = generation

    async def _change(self, fn: Callable[..., T], *args: Any) -> T:
        """A write to the cooldowns or the mode: the next snapshot reads them again (this
        store's own commits do not move the `data_version` the mirror watches)."""
        try:
            return await self._write(fn, *args)
        finally:
            with self._read_lock:
                self._state = None

    async def _write(
        self, fn: Callable[..., T], *args: Any, then: Callable[[T], object] | None = None
    ) -> T:
        """One write, committed with the others of this loop turn (`group.py`); `then` makes it
        to the mirror right after the commit, whether the caller still waits or not."""
        return await self._commits.write(fn, *args, then=then)


def _load(conn: sqlite3.Connection, state: int | None, budgets: int | None) -> _Read:
    """Both generations, in one read transaction with the cooldowns and the mode when the state
    generation is not `state`, and the budget writes since `budgets` when theirs is not (the
    budget tables whole when the log cannot tell them)."""
    conn.execute("BEGIN")
    try:
        sql = (
            "SELECT (SELECT value FROM kv WHERE name = ?), (SELECT max(generation) FROM budget_log)"
        )
        state_now, budgets_now = conn.execute(sql, (_STATE,)).fetchone()
        read = _Read(int(state_now or 0), budgets_now or 0, None, None, None, None)
        if read.state != state:
            read = read._replace(cooldowns=_load_cooldowns(conn), mode=_load_mode(conn))
        if read.budgets != budgets:
            log = _load_log(conn, budgets, read.budgets)
            read = read._replace(log=log, tally=_load_tally(conn) if log is None else None)
    finally:
        conn.execute("COMMIT")
    return read


def _load_cooldowns(conn: sqlite3.Connection) -> dict[str, Cooldown]:
    parsed = (_cooldown(row) for row in conn.execute(f"SELECT {_COLUMNS} FROM cooldowns"))
    return {c.key: c for c in parsed if c is not None}


def _load_mode(conn: sqlite3.Connection) -> _Mode:
    sql = "SELECT value, changed_at, reason FROM kv WHERE name = ?"
    flag = conn.execute(sql, (_EMERGENCY,)).fetchone()
    return _Mode(flag[0] == "1", float(flag[1]), flag[2]) if flag else _Mode()


def _load_tally(conn: sqlite3.Connection) -> Tally:
    counters = [Counter(*row) for row in conn.execute(f"SELECT {_COUNTER} FROM budget_counters")]
    holds = [Reservation(*row) for row in conn.execute(f"SELECT {_HELD} FROM budget_reservations")]
    return Tally(counters, holds)


def _load_log(
    conn: sqlite3.Connection, known: int | None, current: int
) -> list[tuple[Any, ...]] | None:
    """The budget writes after generation `known` up to `current`, oldest first, if the log
    holds every one; None when the tables must be read whole: the mirror was never read, is
    more than LOG_KEPT writes behind (replaying would cost more, and the log may be trimmed
    past it) or ahead (a new file), or a write is missing from the log (deleted by hand)."""
    if known is None or not 0 < current - known <= LOG_KEPT:
        return None
    sql = f"SELECT {_LOGGED} FROM budget_log WHERE generation > ? ORDER BY generation"
    rows = conn.execute(sql, (known,)).fetchall()
    return rows if len(rows) == current - known else None


def _replay(tally: Tally, log: Iterable[Sequence[Any]]) -> None:
    """Another store's budget writes, made to this store's mirror the way that store made them
    to its own: the same result as reading the tables again, for a few µs per write."""
    for change, rid, tokens, micros, expires, keys in log:
        if change == _RESERVE:
            tally.hold(rid, msgspec.json.decode(keys), tokens, micros, expires)
        elif change == _SETTLE:
            charged = None if keys is None else msgspec.json.decode(keys)
            tally.settled(rid, charged, tokens, micros)
        else:
            tally.release(rid)


def _cooldown(row: Sequence[Any]) -> Cooldown | None:
    key, until, reason, strikes, since, detail = row
    try:
        failure = FailureClass(reason)
    except ValueError:  # written by a newer version: ignore rather than crash
        return None
    return Cooldown(key, float(until), failure, int(strikes), float(since), detail)


def _strike(
    conn: sqlite3.Connection,
    key: str,
    reason: FailureClass,
    now: float,
    duration: Callable[[int], float],
    detail: str,
) -> Cooldown:
    row = conn.execute(f"SELECT {_COLUMNS} FROM cooldowns WHERE key = ?", (key,)).fetchone()
    cooldown = next_cooldown(row and _cooldown(row), key, reason, now, duration, detail)
    if cooldown.until > now:
        conn.execute(
            f"INSERT OR REPLACE INTO cooldowns ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (key, cooldown.until, reason.value, cooldown.strikes, cooldown.since, cooldown.detail),
        )
    conn.execute("DELETE FROM cooldowns WHERE until < ?", (now - STRIKE_MEMORY,))
    return cooldown


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    return conn.execute(sql, params).rowcount


def _set_emergency(conn: sqlite3.Connection, on: bool, now: float, reason: str) -> bool:
    row = conn.execute("SELECT value FROM kv WHERE name = ?", (_EMERGENCY,)).fetchone()
    was_on = bool(row and row[0] == "1")
    if was_on == on:
        return False
    conn.execute(
        "INSERT OR REPLACE INTO kv (name, value, changed_at, reason) VALUES (?, ?, ?, ?)",
        (_EMERGENCY, "1" if on else "0", now, reason),
    )
    return True


def _count_recent(conn: sqlite3.Connection, name: str, now: float, window: float) -> int:
    row = conn.execute("SELECT value FROM kv WHERE name = ?", (_EVENTS + name,)).fetchone()
    try:
        times = [float(t) for t in json.loads(row[0])] if row else []
    except (ValueError, TypeError):  # unreadable: start counting afresh
        times = []
    times = recent([*times, now], now, window)
    conn.execute(
        "INSERT OR REPLACE INTO kv (name, value, changed_at, reason) VALUES (?, ?, ?, '')",
        (_EVENTS + name, json.dumps(times), now),
    )
    return len(times)


def _remember_turn(
    conn: sqlite3.Connection,
    turn: str,
    target: str,
    now: float,
    expires: float,
    kept: int,
    trim: bool,
) -> None:
    sql = "INSERT OR REPLACE INTO turns (turn, target, expires) VALUES (?, ?, ?)"
    conn.execute(sql, (turn, target, expires))
    conn.execute("DELETE FROM turns WHERE expires <= ?", (now,))
    if trim:
        (count,) = conn.execute("SELECT count(*) FROM turns").fetchone()
        if count > kept:
            conn.execute(
                "DELETE FROM turns WHERE turn IN (SELECT turn FROM turns ORDER BY expires LIMIT ?)",
                (count - kept,),
            )


# -- budgets ---------------------------------------------------------------------------------


def _forget_budgets(conn: sqlite3.Connection, now: float) -> None:
    conn.execute("DELETE FROM budget_counters WHERE expires <= ?", (now,))
    conn.execute("DELETE FROM budget_reservations WHERE expires <= ?", (now,))
    conn.execute("DELETE FROM budget_flags WHERE expires <= ?", (now,))


def _logged(
    conn: sqlite3.Connection,
    change: str,
    rid: str,
    tokens: int | None = None,
    micros: int | None = None,
    expires: float | None = None,
    keys: Mapping[str, float] | None = None,
) -> int:
    """Log what a budget write did, inside its transaction; its generation (the log's rowid:
    one more than the last write's, as the log never loses its newest row).

    Other processes replay the log instead of reading the tables whole (`_load_log`). Every
    LOG_KEPT writes, the write that completes them trims the log to the last LOG_KEPT: it stays
    small whatever the request rate (a time-based sweep would delete tens of thousands of rows
    while holding the write lock)."""
    sql = f"INSERT INTO budget_log ({_LOGGED}) VALUES (?, ?, ?, ?, ?, ?) RETURNING generation"
    row = conn.execute(sql, (change, rid, tokens, micros, expires, _encoded(keys))).fetchone()
    generation = int(row[0])
    if generation % LOG_KEPT == 0:
        conn.execute("DELETE FROM budget_log WHERE generation <= ?", (generation - LOG_KEPT,))
    return generation


def _encoded(keys: Mapping[str, float] | None) -> str | None:
    """Counter keys and their window ends as a log column; JSON keeps every float exact
    (msgspec: a sixth of `json.dumps`'s cost, on every budget write)."""
    return None if keys is None else msgspec.json.encode(keys).decode()


def _reserve(
    conn: sqlite3.Connection,
    rid: str,
    keys: Mapping[str, float],
    tokens: int,
    micros: int,
    expires: float,
    now: float,
    sweep: bool,
) -> int:
    """Hold the estimate on every counter in `keys`. A sweep's deletions are not logged: they
    delete only what has stopped counting, which a mirror forgets by itself at that time."""
    if sweep:
        _forget_budgets(conn, now)
    rows = [(rid, key, tokens, micros, expires, end) for key, end in keys.items()]
    conn.executemany(f"INSERT INTO budget_reservations ({_HELD}) VALUES (?, ?, ?, ?, ?, ?)", rows)
    return _logged(conn, _RESERVE, rid, tokens, micros, expires, keys)


def _settle(
    conn: sqlite3.Connection, rid: str, tokens: int, micros: int, now: float
) -> tuple[dict[str, float] | None, int]:
    """Charge a live reservation's counters; which ones (key -> window end), None if it was
    unknown or lapsed."""
    sql = "SELECT key, expires, key_expires FROM budget_reservations WHERE id = ?"
    held = conn.execute(sql, (rid,)).fetchall()
    conn.execute("DELETE FROM budget_reservations WHERE id = ?", (rid,))
    if not held or held[0][1] <= now:
        return None, _logged(conn, _SETTLE, rid, tokens, micros)
    keys = {key: key_expires for key, _, key_expires in held}
    conn.executemany(
        f"""INSERT INTO budget_counters ({_COUNTER}) VALUES (?, ?, ?, ?)
            ON CONFLICT (key) DO UPDATE SET tokens = tokens + excluded.tokens,
            micros = micros + excluded.micros""",
        [(key, tokens, micros, end) for key, end in keys.items()],
    )
    return keys, _logged(conn, _SETTLE, rid, tokens, micros, keys=keys)


def _release(conn: sqlite3.Connection, rid: str) -> tuple[bool, int]:
    removed = conn.execute("DELETE FROM budget_reservations WHERE id = ?", (rid,)).rowcount
    return bool(removed), _logged(conn, _RELEASE, rid)


def _mark_warned(
    conn: sqlite3.Connection, key: str, threshold: str, now: float, expires: float
) -> bool:
    conn.execute("DELETE FROM budget_flags WHERE expires <= ?", (now,))
    sql = "INSERT OR IGNORE INTO budget_flags (key, threshold, expires) VALUES (?, ?, ?)"
    return conn.execute(sql, (key, threshold, expires)).rowcount == 1
