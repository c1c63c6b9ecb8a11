"""The Redis half of `RedisStore`: the key layout, the Lua scripts and one method per operation.

Every operation that must be atomic across replicas runs on the server, as one Lua script
(registered with `register_script`, sent as EVALSHA and reloaded by the client if Redis lost its
script cache) or one MULTI transaction. The one exception is `strike`, whose duration is a
Python function of the strike count: it is an optimistic transaction (WATCH the key, read it,
apply `cooldown.next_cooldown` exactly as every other backend does, MULTI/EXEC; again if another
replica wrote the key in between).

Time is the caller's `now`, never Redis's clock: every record keeps its own end (`until`,
`expires`), and snapshots compare it with `now`, as the memory and SQLite stores do. Redis TTLs
only collect garbage: a cooldown key lives until `until + STRIKE_MEMORY` (FOREVER: no TTL), a
budget counter until the end of its window, a reservation until it lapses, a warn flag until its
window ends, an event list for its window. TTLs are relative (`PEXPIRE end - now`).

Keys, under the configured prefix P (default `stellwerk:`):

    P cooldowns            set     the keys that have a cooldown record
    P cd:<key>             string  JSON [key, until, reason, strikes, since, detail]
    P mode                 hash    on, since, reason (emergency mode)
    P events:<name>        zset    event id -> time (recent rate limits)
    P budgets              set     the budget counter keys
    P budget:<key>         hash    tokens, micros, expires
    P holds                zset    reservation id -> when it lapses
    P hold:<id>            string  JSON {i: id, t: tokens, m: micros, e: lapses, k: {key: end}}
    P warned:<key>|<level> string  the end of the flag's window
    P settled:<id>         string  a reservation settled by a replay (so a replay counts once)
    P turn:<turn id>       string  JSON [target, expires]: the model an agent turn keeps
    P version              string  a new random token after every write a snapshot would see

Floats travel as `repr` strings, which round-trip exactly; Lua only compares them. All keys share
the prefix, so Redis Cluster needs a hash tag in it (`{stellwerk}:`); one Redis (with replicas or
Sentinel for failover) is the supported setup.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import WatchError

from ..failures import FailureClass
from ..redaction import scrub
from .base import Cooldown, Snapshot
from .cooldown import STRIKE_MEMORY, next_cooldown
from .events import MAX_EVENTS
from .tally import Counter, Reservation, usage

if TYPE_CHECKING:
    from redis.asyncio import Redis

SETTLED_MEMORY_MS = 86_400_000
"""How long a replayed settle is remembered, so replaying it again cannot count it twice."""

# Nothing changed since the version the caller last read (no write set a new one): "=". Else one
# reply, one JSON text: a reply of many small strings costs more to parse than the round trip.
# Cooldowns and reservations are stored as JSON already (each with its own key or id): they are
# read with one MGET each and spliced in as they are. Index entries whose key has expired are
# dropped on the way. (Keys that expire change nothing a snapshot shows: every record carries its
# own end, which the caller compares with `now`, so an unchanged version is still the truth.)
_SNAPSHOT = """
local p, now = ARGV[1], ARGV[2]
local version = redis.call('GET', p .. 'version') or ''
if version ~= '' and version == ARGV[3] then return '=' end
local function spliced(ids, kind, index)
  local out, names = {}, {}
  for i, id in ipairs(ids) do names[i] = p .. kind .. id end
  for first = 1, #names, 1000 do
    local chunk = redis.call('MGET', unpack(names, first, math.min(first + 999, #names)))
    for i, v in ipairs(chunk) do
      if v then
        out[#out + 1] = v
      elseif index then
        redis.call('SREM', index, ids[first + i - 1])
      end
    end
  end
  return table.concat(out, ',')
end
local cooldowns = spliced(redis.call('SMEMBERS', p .. 'cooldowns'), 'cd:', p .. 'cooldowns')
local holds = spliced(redis.call('ZRANGEBYSCORE', p .. 'holds', '(' .. now, '+inf'), 'hold:', nil)
local budgets = {}
for _, k in ipairs(redis.call('SMEMBERS', p .. 'budgets')) do
  local v = redis.call('HMGET', p .. 'budget:' .. k, 'tokens', 'micros', 'expires')
  if v[3] then
    budgets[#budgets + 1] = cjson.encode({k, v[1] or '0', v[2] or '0', v[3]})
  else
    redis.call('SREM', p .. 'budgets', k)
  end
end
local mode = cjson.encode(redis.call('HMGET', p .. 'mode', 'on', 'since', 'reason'))
return '{"v":' .. cjson.encode(version) .. ',"c":[' .. cooldowns .. '],"h":[' .. holds ..
  '],"m":' .. mode .. ',"b":[' .. table.concat(budgets, ',') .. ']}'
"""

_RESET = """
local p, prefix, n = ARGV[1], ARGV[2], 0
for _, k in ipairs(redis.call('SMEMBERS', p .. 'cooldowns')) do
  if string.sub(k, 1, #prefix) == prefix then
    n = n + redis.call('DEL', p .. 'cd:' .. k)
    redis.call('SREM', p .. 'cooldowns', k)
  end
end
if n > 0 then redis.call('SET', p .. 'version', ARGV[3]) end
return n
"""

_EMERGENCY = """
local on = ARGV[1]
if (redis.call('HGET', KEYS[1], 'on') or '0') == on then return 0 end
redis.call('HSET', KEYS[1], 'on', on, 'since', ARGV[2], 'reason', ARGV[3])
redis.call('SET', KEYS[2], ARGV[4])
return 1
"""

# Events newer than `now` are kept (another replica's clock may be ahead), not counted.
_COUNT = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -1 - tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return redis.call('ZCOUNT', KEYS[1], ARGV[4], ARGV[1])
"""

# A reservation is one JSON string: {"i": id, "t": tokens, "m": micros, "e": lapse,
# "k": {counter: window end}}.
_RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('SET', KEYS[3], ARGV[6])
return 1
"""

# ARGV: prefix, id, tokens, micros, now, mode, version, then (counter key, window end) pairs.
# mode 'live': settle a reservation that is still live (the normal case).
# mode 'held': settle it if it is still held, lapsed or not; if it is gone, an earlier try of
#              this very call got through (a replay of a settle whose answer was lost).
# mode 'sure': a settle made while Redis was away: settle the reservation if held, else add to
#              the given counters; remember it was done, so a second replay counts nothing.
_SETTLE = """
local p, id, now, mode = ARGV[1], ARGV[2], tonumber(ARGV[5]), ARGV[6]
local done = p .. 'settled:' .. id
if mode == 'sure' and redis.call('EXISTS', done) == 1 then return 0 end
local raw = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], id)
local targets = {}
if raw then
  local held = cjson.decode(raw)
  if mode == 'live' and tonumber(held.e) <= now then return 0 end
  for k, e in pairs(held.k) do targets[#targets + 1] = {k, e} end
elseif mode == 'sure' then
  for i = 8, #ARGV, 2 do targets[#targets + 1] = {ARGV[i], ARGV[i + 1]} end
else
  return 0
end
for _, t in ipairs(targets) do
  local ttl = math.floor((tonumber(t[2]) - now) * 1000)
  if ttl > 0 then
    local key = p .. 'budget:' .. t[1]
    redis.call('HINCRBY', key, 'tokens', ARGV[3])
    redis.call('HINCRBY', key, 'micros', ARGV[4])
    redis.call('HSET', key, 'expires', t[2])
    redis.call('PEXPIRE', key, string.format('%d', ttl))
    redis.call('SADD', p .. 'budgets', t[1])
  end
end
if mode == 'sure' then redis.call('SET', done, '1', 'PX', 'SETTLED_MEMORY_MS') end
redis.call('SET', KEYS[3], ARGV[7])
return 1
""".replace("SETTLED_MEMORY_MS", str(SETTLED_MEMORY_MS))

_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
local n = redis.call('DEL', KEYS[2])
if n > 0 then redis.call('SET', KEYS[3], ARGV[2]) end
return n
"""

_WARN = """
local ends = redis.call('GET', KEYS[1])
if ends and tonumber(ends) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


@dataclass(frozen=True, slots=True)
class Mode:
    """Emergency mode as stored: on or off, since when and why it last changed."""

    on: bool = False
    since: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Known:
    """Everything one snapshot read: the last known state when Redis becomes unreachable."""

    cooldowns: Mapping[str, Cooldown] = field(default_factory=dict)  # expired ones included
    mode: Mode = Mode()
    counters: Sequence[Counter] = ()
    holds: Sequence[Reservation] = ()

    def snapshot(self, now: float, degraded: str = "") -> Snapshot:
        active = {k: c for k, c in self.cooldowns.items() if c.active(now)}
        budgets = usage(self.counters, self.holds, now) if self.counters or self.holds else {}
        return Snapshot(
            now=now,
            cooldowns=active,
            emergency=self.mode.on,
            emergency_since=self.mode.since,
            emergency_reason=self.mode.reason,
            budgets=budgets,
            degraded=degraded,
        )


class Remote:
    """The state operations as Redis commands; raises the client's errors as they come."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._snapshot = client.register_script(_SNAPSHOT)
        self._reset = client.register_script(_RESET)
        self._emergency = client.register_script(_EMERGENCY)
        self._count = client.register_script(_COUNT)
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._release = client.register_script(_RELEASE)
        self._warn = client.register_script(_WARN)
        self._last: tuple[str, Known] = ("", Known())  # the version last read, decoded

    async def ping(self) -> None:
        await self.client.ping()

    async def read(self, now: float) -> Known:
        """Everything routing needs, in one round trip; just "=" when nothing changed since."""
        raw = await self._snapshot(args=[self.prefix, _f(now), self._last[0]])
        if raw != "=":
            data = json.loads(raw)
            self._last = (data["v"], _known(data))
        return self._last[1]

    async def strike(
        self,
        key: str,
        reason: FailureClass,
        now: float,
        duration: Callable[[int], float],
        detail: str,
    ) -> Cooldown:
        name = self.prefix + "cd:" + key
        async with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(name)
                    previous = decode_cooldown(await pipe.get(name))
                    cooldown = next_cooldown(previous, key, reason, now, duration, detail)
                    if not cooldown.until > now:
                        return cooldown  # nothing to record; leaving the block unwatches
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(name, encode_cooldown(cooldown), px=_cooldown_ttl(cooldown, now))
                    pipe.sadd(self.prefix + "cooldowns", key)
                    pipe.set(self.prefix + "version", _version())
                    await pipe.execute()
                    return cooldown
                except WatchError:
                    continue

    async def recover(self, key: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.prefix + "cd:" + key)
            pipe.srem(self.prefix + "cooldowns", key)
            pipe.set(self.prefix + "version", _version())
            await pipe.execute()

    async def reset(self, prefix: str) -> int:
        return int(await self._reset(args=[self.prefix, prefix, _version()]))

    async def set_emergency(self, on: bool, now: float, reason: str) -> bool:
        keys = [self.prefix + "mode", self.prefix + "version"]
        args = ["1" if on else "0", _f(now), reason, _version()]
        return bool(await self._emergency(keys=keys, args=args))

    async def count_recent(self, name: str, now: float, window: float, event: str) -> int:
        """Add event `event` (an id, so a replay adds it once) and count the recent ones."""
        if window > 0:  # drop up to now - window; count after it
            drop, low = _f(now - window), f"({_f(now - window)}"
        else:  # only `now` itself counts
            drop, low = f"({_f(now)}", _f(now)
        args: list[str | int] = [_f(now), event, drop, low, MAX_EVENTS, _ms(max(window, 1.0))]
        return int(await self._count(keys=[self.prefix + "events:" + name], args=args))

    async def reserve(
        self, rid: str, keys: Mapping[str, float], tokens: int, micros: int, now: float, ttl: float
    ) -> None:
        ends = {key: _f(end) for key, end in keys.items()}
        held = {"i": rid, "t": tokens, "m": micros, "e": _f(now + ttl), "k": ends}
        args: list[str | int] = [
            rid,
            _f(now),
            _f(now + ttl),
            _ms(ttl),
            json.dumps(held),
            _version(),
        ]
        await self._reserve(keys=self._hold(rid), args=args)

    async def settle(
        self,
        rid: str,
        tokens: int,
        micros: int,
        now: float,
        mode: str = "live",
        keys: Mapping[str, float] | None = None,
    ) -> bool:
        pairs = [x for key, end in (keys or {}).items() for x in (key, _f(end))]
        args: list[str | int] = [
            self.prefix,
            rid,
            tokens,
            micros,
            _f(now),
            mode,
            _version(),
            *pairs,
        ]
        return bool(await self._settle(keys=self._hold(rid), args=args))

    async def release(self, rid: str) -> bool:
        return bool(await self._release(keys=self._hold(rid), args=[rid, _version()]))

    async def mark_warned(self, key: str, threshold: str, now: float, expires: float) -> bool:
        name = f"{self.prefix}warned:{key}|{threshold}"
        args: list[str | int] = [_f(now), _f(expires), _ms(max(expires - now, 0.001))]
        return bool(await self._warn(keys=[name], args=args))

    async def remember_turn(self, turn: str, target: str, now: float, ttl: float) -> None:
        """One SET with a TTL: snapshots never read turns, so no new version."""
        value = json.dumps([target, _f(now + ttl)])
        await self.client.set(self.prefix + "turn:" + turn, value, px=_ms(ttl))

    async def turn_target(self, turn: str, now: float) -> str | None:
        raw = await self.client.get(self.prefix + "turn:" + turn)
        if raw is None:
            return None
        try:
            target, expires = _loads(raw)
            return str(target) if float(expires) > now else None
        except (TypeError, ValueError):  # unreadable: as if there were none
            return None

    def _hold(self, rid: str) -> list[str]:
        return [self.prefix + "holds", self.prefix + "hold:" + rid, self.prefix + "version"]


# -- encoding ------------------------------------------------------------------------------


def _known(data: Mapping[str, Any]) -> Known:
    cooldowns = (_cooldown(value) for value in data["c"])
    return Known(
        {c.key: c for c in cooldowns if c is not None},
        _mode(data["m"]),
        _counters(data["b"]),
        _holds(data["h"]),
    )


def encode_cooldown(c: Cooldown) -> str:
    return json.dumps([c.key, c.until, c.reason.value, c.strikes, c.since, c.detail])


def decode_cooldown(raw: str | bytes | None) -> Cooldown | None:
    """A stored cooldown; None if there is none, or it cannot be read."""
    return None if raw is None else _cooldown(_loads(raw))


def _cooldown(value: Any) -> Cooldown | None:
    try:
        key, until, reason, strikes, since, detail = value
        detail = scrub(str(detail))  # scrubbed on read: what an older Stellwerk stored, too
        return Cooldown(key, float(until), FailureClass(reason), int(strikes), float(since), detail)
    except (ValueError, TypeError):  # a newer Stellwerk's failure class, or damage
        return None


def _loads(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _mode(raw: Sequence[str | bool]) -> Mode:
    on, since, reason = raw
    if not isinstance(since, str):
        return Mode()
    return Mode(on == "1", float(since), reason if isinstance(reason, str) else "")


def _counters(rows: Sequence[Sequence[str]]) -> list[Counter]:
    return [Counter(k, int(t), int(m), float(e)) for k, t, m, e in rows]


def _holds(held: Sequence[Mapping[str, Any]]) -> list[Reservation]:
    return [
        Reservation(h["i"], key, int(h["t"]), int(h["m"]), float(h["e"]), float(end))
        for h in held
        for key, end in h["k"].items()
    ]


def _cooldown_ttl(cooldown: Cooldown, now: float) -> int | None:
    """Milliseconds to keep a cooldown record: past its end for the strike memory; or forever."""
    if math.isinf(cooldown.until):
        return None
    return _ms(cooldown.until + STRIKE_MEMORY - now)


def _version() -> str:
    """A new version token: every write that changes what a snapshot reads sets one."""
    return uuid.uuid4().hex


def _f(value: float) -> str:
    return repr(float(value))


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
