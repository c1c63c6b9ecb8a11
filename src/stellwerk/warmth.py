"""Cache-aware routing: count the warm prompt cache in the choice of a turn's model.

An agent repeats its session with every request, and a provider's prompt cache makes the part it
has seen recently cost a tenth (Anthropic) to a half (OpenAI) of the input price. So once caching
works, the class table alone is no longer the cheapest policy: a turn routed to its class primary
pays a cold cache there, while another model of the same or a higher tier may hold the whole
session warm.

What Stellwerk knows, it learns from what the providers report: after every answer, the tokens of
the prompt now cached on that target (Anthropic: the cache reads and writes, with their TTL;
OpenAI: the whole prompt, which it caches by itself for a few minutes) are kept per session
(`session_id`: the system prompt, the tools and a client's session id) in the state store, as one
small JSON map per session with a TTL (`StateStore.remember_turn`/`turn_target`, keyed
`warm:<session>`): bounded, expiring, and shared by replicas.

What the plan weighs (`choose`): for the planned first target and every warm target of the same or
a higher tier than the class primary, the expected cost of this request: the warm prefix at the
read price, the rest at the input price (at the write price where Stellwerk places breakpoints),
and an expected answer at the output price. The cheapest goes first; the rest of the chain follows
as fallback. A lower tier never takes a request because it is warm, a cold model never displaces
the planned one, and the choice is made for a turn's first request only (continuations keep the
turn's model: `affinity.py`) and not for classes under minimal context (heartbeats keep their own
cheap chain and one-hour cache).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .affinity import SESSION, system_digest, utf8
from .plan import RoutePlan, Target
from .policy import ModelSpec, Policy
from .types import ChatRequest, TaskClass, Tier, Usage

KEY = "warm:"
EXPECTED_OUTPUT = 400  # tokens: the answer a choice is priced with (its size is not known yet)
OPENAI_TTL = 300.0  # OpenAI keeps a prefix for 5-10 minutes of inactivity: the shorter end
EXTENDED_TTL = 21600.0  # with extended retention ("up to 24 hours"): counted on for a quarter of it
OPENAI_MIN = 1024  # and caches prompts from this many tokens on
CACHEABLE = 1024  # no provider caches a shorter prompt (Anthropic's minimum is 1,024 to 4,096):
# below it (by Stellwerk's estimate, which errs high) the warm map is neither read nor written
_RANK = {Tier.LOCAL: 0, Tier.BUDGET: 1, Tier.MID: 2, Tier.PREMIUM: 3}
_CACHING = {"anthropic": "marks", "openai": "auto", "openai-codex": "auto"}

Warm = dict[str, tuple[int, float, float]]  # target -> (tokens, expires at, ttl)


def session_id(request: ChatRequest) -> str:
    """The session a request's cached prefix belongs to: the client's session id, the system
    prompt and the tools (32 hex digits)."""
    digest = hashlib.sha256(b"warm\x1f")
    if session := request.metadata.get(SESSION):
        digest.update(utf8(session))
    digest.update(b"\x1e")
    if request.system:
        digest.update(system_digest(request.system))
    for tool in request.tools:
        digest.update(b"\x1f" + utf8(tool.name))
    return digest.hexdigest()[:32]


def decode(text: str | None, now: float) -> Warm:
    """The warm map stored for a session, without entries that expired by `now`."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(raw, dict):  # a damaged value: nothing is known warm
        return {}
    return {
        target: (int(entry[0]), float(entry[1]), float(entry[2]))
        for target, entry in raw.items()
        if isinstance(entry, list) and len(entry) == 3 and float(entry[1]) > now
    }


SEEN = "@seen"  # the session's rhythm: (mean gap between its turns in s, expires, last turn at)
RHYTHM = 3600.0  # turns closer than this on average make a 1-hour write pay off
_KEEP = 86400.0  # the rhythm is forgotten after a day without a turn


def seen(warm: Warm, now: float, first: bool) -> Warm:
    """The map, noting a request of the session at `now`; a turn's first request moves the mean
    gap between turns (continuations of a tool loop come seconds apart and do not count)."""
    prev = warm.get(SEEN)
    if prev is None:
        return {**warm, SEEN: (0, now + _KEEP, now)}
    if not first:
        return {**warm, SEEN: (prev[0], now + _KEEP, prev[2])}
    gap = now - prev[2]
    mean = gap if prev[0] == 0 else 0.7 * prev[0] + 0.3 * gap
    return {**warm, SEEN: (round(mean), now + _KEEP, now)}


def ttl(warm: Mapping[str, tuple[int, float, float]]) -> str:
    """The TTL of the breakpoints Stellwerk places under `cache: auto`, from the session's rhythm:
    an hour when its turns come less than an hour apart on average (the next turn, on this model
    or on one that cache-aware routing finds warm, reads what this one writes: a session then
    gathers on one warm model), otherwise five minutes, enough for the turn's own tool loop."""
    rhythm = warm.get(SEEN)
    return "1h" if rhythm is not None and 0 < rhythm[0] <= RHYTHM else "5m"


def encode(warm: Warm) -> str:
    return json.dumps({t: list(e) for t, e in warm.items()}, separators=(",", ":"))


def learned(
    warm: Warm,
    target: str,
    kind: str,
    usage: Usage,
    now: float,
    estimate: int,
    retention: str | None = None,
) -> Warm | None:
    """The map after `target` answered with `usage` a prompt Stellwerk estimated at `estimate`
    tokens; None when the answer taught nothing (an estimate, or a provider whose cache Stellwerk
    does not model). Warm tokens are kept in Stellwerk's own estimate (which errs high), so that
    they compare with the next prompt's estimate."""
    caching = _CACHING.get(kind)
    if caching is None or usage.estimated or not usage.input_tokens:
        return None
    known = warm.get(target)
    if caching == "auto":
        tokens = usage.input_tokens if usage.input_tokens >= OPENAI_MIN else 0
        ttl = EXTENDED_TTL if retention == "24h" else OPENAI_TTL
    else:
        tokens = usage.cache_read_tokens + usage.cache_write_tokens
        if usage.cache_write_1h_tokens:
            ttl = 3600.0
        elif usage.cache_write_tokens or known is None:
            ttl = 300.0
        else:
            ttl = known[2]  # a read refreshes the entry it read, with its own lifetime
    updated = {t: e for t, e in warm.items() if t != target}
    if tokens:
        scaled = round(tokens * estimate / usage.input_tokens) if estimate else tokens
        updated[target] = (scaled, now + ttl, ttl)
    return updated


@dataclass(frozen=True, slots=True)
class Choice:
    """What the cache changed: the target taken, the one planned, their expected costs."""

    chosen: str
    planned: str
    chosen_micros: float
    planned_micros: float
    warm_tokens: int
    warm_until: float

    @property
    def changed(self) -> bool:
        return self.chosen != self.planned

    def explain(self) -> str:
        until = time.strftime("%H:%M", time.localtime(self.warm_until))
        warm = f"{self.warm_tokens / 1000:.0f}k tokens warm until {until}"
        costs = f"${self.chosen_micros / 1e6:.4f} against ${self.planned_micros / 1e6:.4f}"
        if self.changed:
            return f"cache: {self.chosen} ({warm}) {costs} cold on {self.planned}"
        return f"cache: stayed on {self.chosen} ({warm})"

    def to_json(self) -> dict[str, object]:
        return {
            "chosen": self.chosen,
            "planned": self.planned,
            "chosen_micros": round(self.chosen_micros),
            "planned_micros": round(self.planned_micros),
            "warm_tokens": self.warm_tokens,
            "warm_until": self.warm_until,
        }


def expected_micros(
    model: ModelSpec, kind: str, prompt: int, warm: int, marks: str | None
) -> float:
    """The expected cost of a request on `model`: `warm` tokens read from its cache, the rest as
    input (written to the cache where Stellwerk places breakpoints: `marks` is their TTL), and
    `EXPECTED_OUTPUT` tokens of answer."""
    cold = max(prompt - warm, 0)
    if _CACHING.get(kind) == "marks" and marks:
        cold_price = model.cache_write_1h_price if marks == "1h" else model.cache_write_price
    else:
        cold_price = model.input_price
    total = warm * model.cache_read_price + cold * cold_price
    return (total + EXPECTED_OUTPUT * model.output_price) / 1_000_000


def choose(
    route: RoutePlan,
    task: TaskClass,
    policy: Policy,
    warm: Mapping[str, tuple[int, float, float]],
    prompt: int,
    new: int,
    marks: str | None,
) -> Choice | None:
    """The cheapest target for this request, warm cache counted: the planned first target or a
    warm one of at least the class primary's tier. `new` is the part of the prompt no cache can
    hold yet (the human's latest turn and what follows). None when nothing is warm."""
    if not route.targets or not warm:
        return None
    floor = _RANK.get(policy.models[policy.tasks[task].primary].tier, 0)
    planned = route.targets[0]
    known = prompt - new

    def cost(target: Target) -> tuple[float, int]:
        entry = warm.get(target.id)
        tokens = min(entry[0], known) if entry is not None else 0
        kind = target.provider.type
        writes = ttl(warm) if marks == "auto" else marks
        return expected_micros(target.model, kind, prompt, max(tokens, 0), writes), tokens

    best, (best_cost, best_warm) = planned, cost(planned)
    planned_cost = best_cost
    for target in route.targets[1:]:
        if target.id not in warm or _RANK.get(target.model.tier, -1) < floor:
            continue
        candidate, tokens = cost(target)
        if tokens > 0 and candidate < best_cost:
            best, best_cost, best_warm = target, candidate, tokens
    if best_warm <= 0:
        return None
    return Choice(best.id, planned.id, best_cost, planned_cost, best_warm, warm[best.id][1])
