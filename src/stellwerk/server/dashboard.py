"""The dashboard: one page at `/ui/`, the JSON it reads and the actions it offers.

The page (`ui/`: HTML, CSS and a script, shipped in the package, no build step, no CDN) reads:

- `GET /api/dashboard`: the mode, providers with masked keys and local health, cooldowns with
  their end as a timestamp (the page counts down against the server's clock), budgets with the
  marks where they warn and downgrade, and what the caller may do;
- `GET /api/stats?window=24h|7d`: `stellwerk stats` over the window, and per-bucket requests,
  cost and the all-premium baseline for the chart (computed at most every `STATS_TTL` seconds);
- `GET /api/events`: the decisions as server-sent events, read from the ledger, so a page sees
  every worker's and every replica's requests, and a reconnect with `Last-Event-ID` gets what it
  missed (under load a poll hands out the latest 50, what the page shows).
  One reader per process polls the ledger while a page watches, however many pages do; the
  request path pays nothing for an open page. Polling the JSON would do for the rest, but a
  decision feed wants push: SSE is plain HTTP, and resumes where it stopped.

The actions: `POST /api/cooldowns/reset`, `/api/emergency`, `/api/config/reload`, `/api/probe`.

Who may do what: reading needs a client or admin key whenever keys are configured; actions need
an admin key (`gateway.admin_keys`), never a client key, and are open only on a loopback gateway
with no keys at all. The page sends its key in a header on every request; there are no cookies,
so a cross-site page has no authority to borrow. Actions also take JSON only (a cross-site form
cannot send it without a preflight that is never granted) and refuse a foreign `Origin` or
`Sec-Fetch-Site`. A keyless loopback gateway answers browsers only under a loopback `Host`,
which stops DNS rebinding, and refuses cross-site requests on every path, the model endpoints
included (`foreign`, called by the middleware). Keys are masked and stored texts scrubbed, as
in `status`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache
from importlib import metadata, resources
from typing import Any
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from ..chat import reset_target_error
from ..config import load_policy
from ..errors import ConfigError, RequestError
from ..health import watched
from ..state.base import Snapshot, credential_parts, health_key
from ..stats import aggregate, series, stats_json
from ..status import status_data
from .chat import read_json
from .errors import HTTPProblem, Problem
from .gateway import GATEWAY, Gateway, json_response

log = logging.getLogger("stellwerk.server")

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}
WINDOWS = {"24h": (86400.0, 3600.0), "7d": (7 * 86400.0, 6 * 3600.0)}  # span, bucket
STATS_TTL = {"24h": 20.0, "7d": 120.0}  # seconds a window's stats are reused: each computation
# reads the window's rows (~20 ms per 1,000 on a small VM), and the page asks every 30 s
PING_EVERY = 15.0  # seconds between keep-alive comments on a quiet feed
MAX_ACTION_BODY = 4096
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


def add_routes(app: web.Application) -> None:
    """The page, its assets and its API (the caller decides whether the page is on)."""
    get, post = app.router.add_get, app.router.add_post
    get("/", _to_page)
    get("/ui", _to_page)
    get("/ui/", page)
    get("/ui/{name}", asset)
    get("/api/dashboard", api_dashboard)
    get("/api/stats", api_stats)
    get("/api/events", api_events)
    post("/api/cooldowns/reset", api_reset)
    post("/api/config/reload", api_reload)
    post("/api/probe", api_probe)
    app[STATS] = StatsCache()
    app.on_shutdown.append(_close_feed)


def is_page(path: str) -> bool:
    """The page and its assets need no key: they hold no data."""
    return path == "/" or path == "/ui" or path.startswith("/ui/")


# -- the page --------------------------------------------------------------------------------


async def _to_page(request: web.Request) -> web.Response:
    _page_on(request)
    return web.Response(status=302, headers={"location": "/ui/"})


async def page(request: web.Request) -> web.Response:
    return _asset(request, "index.html")


async def asset(request: web.Request) -> web.Response:
    return _asset(request, request.match_info["name"])


def _asset(request: web.Request, name: str) -> web.Response:
    _page_on(request)
    if name not in ASSETS:
        raise web.HTTPNotFound()
    body = _read_asset(name)
    return web.Response(body=body, headers={"content-type": ASSETS[name], **PAGE_HEADERS})


@cache
def _read_asset(name: str) -> bytes:
    return (resources.files(__package__) / "ui" / name).read_bytes()


def _page_on(request: web.Request) -> None:
    if not request.app[GATEWAY].router.policy.gateway.dashboard:
        raise web.HTTPNotFound()


# -- who may do what -------------------------------------------------------------------------


def foreign(gateway: Gateway, request: web.Request) -> Problem | None:
    """Why a request that a web page of another site made a browser send is refused, on a
    gateway everyone on this machine may use (no keys, bound to loopback); None otherwise.

    Such a page can make the browser send a plain POST to `127.0.0.1` (no preflight for a
    `text/plain` body) and spend the user's tokens; with DNS rebinding it can read the answers
    too. So a keyless loopback gateway refuses a cross-site `Origin` or `Sec-Fetch-Site`, and
    answers a browser (a request with `Origin` or `Sec-Fetch-Site`) only under a loopback `Host`.
    Other clients (SDKs, curl, a local reverse proxy's own requests) are not asked for either;
    Node's fetch sends `Sec-Fetch-Mode: cors` on every request, so that one tells nothing."""
    if gateway.api_keys or gateway.admin_keys or not loopback(gateway.host):
        return None
    headers = request.headers
    browser = "origin" in headers or "sec-fetch-site" in headers
    if browser and not loopback_name(request.host):
        text = (
            f"this gateway has no keys and answers on loopback names only (localhost,"
            f" 127.0.0.1, [::1]), not {request.host[:100]!r}; set gateway.api_keys to reach it"
            f" under another name"
        )
        return _forbidden(text, "host_refused")
    if _cross_site(request):
        text = (
            "this gateway has no keys: it refuses requests a web page of another site makes a"
            " browser send; set gateway.api_keys to serve such clients"
        )
        return _forbidden(text, "cross_origin_refused")
    return None


def _cross_site(request: web.Request) -> bool:
    site = request.headers.get("sec-fetch-site", "").lower()
    origin = request.headers.get("origin")
    return site not in ("", "same-origin", "none") or (
        origin is not None and not _same_origin(origin, request.host)
    )


def may_act(gateway: Gateway, request: web.Request) -> bool:
    """Whether the request's key (or the lack of keys) allows the admin actions."""
    if gateway.admin_keys:
        return gateway.role(request) == "admin"
    return not gateway.api_keys and loopback(gateway.host)


def admin(request: web.Request) -> Gateway:
    """The gateway, when the request may take an admin action; else a 403 (or 415) that says
    what is missing."""
    gateway = request.app[GATEWAY]  # the middleware checked the key and `foreign`
    if _cross_site(request):
        text = "admin actions are taken from the gateway's own page only (cross-site refused)"
        raise HTTPProblem(_forbidden(text, "cross_origin_refused"))
    if request.content_type != "application/json":
        text = f"admin actions take a JSON body (Content-Type: application/json), not {request.content_type!r}"  # noqa: E501
        raise HTTPProblem(Problem(415, text[:300], code="unsupported_media_type"))
    if may_act(gateway, request):
        return gateway
    if gateway.admin_keys:
        text = "this action needs an admin key (gateway.admin_keys); a client key only reads"
    elif gateway.api_keys:
        text = (
            "this action needs an admin key, and none is configured: set gateway.admin_keys"
            " (or $STELLWERK_ADMIN_KEYS); a client key only reads"
        )
    else:
        text = (
            f"this gateway listens on {gateway.host} without keys: set gateway.admin_keys"
            " (or $STELLWERK_ADMIN_KEYS) to use the admin actions"
        )
    raise HTTPProblem(_forbidden(text, "admin_key_required"))


def _forbidden(text: str, code: str) -> Problem:
    return Problem(403, text, openai_type="permission_error", code=code)


def _same_origin(origin: str, host: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


@lru_cache(maxsize=64)
def loopback(host: str) -> bool:
    """Whether a bind address reaches this machine only (remembered: `foreign` asks on every
    request, and `ipaddress` takes ~4 µs to answer)."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def loopback_name(host: str) -> bool:
    """Whether a `Host` header names this machine by a loopback name or any IP address (DNS
    rebinding needs a name that resolves elsewhere first)."""
    name = urlsplit(f"//{host}").hostname or ""
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


# -- reading ---------------------------------------------------------------------------------


async def api_dashboard(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    router = gateway.router
    snapshot = await router.store.snapshot(router.clock())
    return json_response(dashboard_data(gateway, snapshot, request))


def dashboard_data(gateway: Gateway, snapshot: Snapshot, request: web.Request) -> dict[str, Any]:
    """`/api/dashboard`: `status --json` with timestamps for the page's clocks, the budgets'
    marks, local health and what the caller may do."""
    policy = gateway.router.policy
    data = status_data(policy, snapshot, gateway.router.tz, live=False)
    for row in data["cooldowns"]:  # the active ones
        until = snapshot.cooldowns[row["key"]].until
        row["until_ts"] = None if math.isinf(until) else until
        row["provider"] = provider_of_key(row["key"], gateway)
    active = {row["key"] for row in data["cooldowns"]}
    watching = {p.name for p in watched(policy)}
    for provider in data["providers"]:
        name = provider["name"]
        provider["healthy"] = (health_key(name) not in active) if name in watching else None
    marks = {"warn_percent": _percent(policy.budgets.warn_at)}
    marks["downgrade_percent"] = _percent(policy.budgets.downgrade_at)
    return {
        "now": snapshot.now,
        "version": version(),
        "access": {
            "read": True,
            "admin": may_act(gateway, request),
            "keys_required": bool(gateway.api_keys or gateway.admin_keys),
            "admin_keys_configured": bool(gateway.admin_keys),
        },
        "mode": data["mode"],
        "routing_mode": str(policy.routing.mode),
        "emergency": {
            "on": snapshot.emergency,
            "since": data["emergency_since"],
            "since_ts": snapshot.emergency_since,
            "reason": data["emergency_reason"],
        },
        "degraded": data["degraded"],
        "config": data["config"],
        "providers": data["providers"],
        "cooldowns": data["cooldowns"],
        "budgets": [
            row | marks | {"resets_ts": datetime.fromisoformat(row["resets"]).timestamp()}
            for row in data["budgets"]
        ],
    }


@cache
def version() -> str:
    try:
        return metadata.version("stellwerk")
    except metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def _percent(fraction: float) -> int:
    return round(fraction * 100)


def provider_of_key(key: str, gateway: Gateway) -> str | None:
    """The provider a state key belongs to: `cred:openai#2|model`, `model:ID`, `health:NAME`."""
    policy = gateway.router.policy
    if (parts := credential_parts(key)) is not None:
        name = parts[0] or parts[1]
        return name if name in policy.providers else None
    kind, _, body = key.partition(":")
    if kind == "health":
        return body
    if kind == "model" and (spec := policy.models.get(body)) is not None:
        return spec.provider
    return None


async def api_stats(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    window = request.query.get("window", "24h")
    if window not in WINDOWS:
        raise RequestError(f"window must be one of {', '.join(WINDOWS)}, not {window[:20]!r}")
    cache = request.app[STATS]
    async with cache.locks[window]:  # one computation per window, however many pages ask
        cached = cache.bodies.get(window)  # None, not "computed at 0.0": the monotonic clock
        if cached is None or time.monotonic() - cached[0] >= STATS_TTL[window]:  # starts at boot
            cached = (time.monotonic(), await _stats_body(gateway, window))
            cache.bodies[window] = cached
    return web.Response(body=cached[1], content_type="application/json")


@dataclass
class StatsCache:
    """Each window's stats as sent (when computed, the JSON), and a lock per window."""

    locks: dict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    bodies: dict[str, tuple[float, bytes]] = field(default_factory=dict)


STATS = web.AppKey("dashboard_stats", StatsCache)


async def _stats_body(gateway: Gateway, window: str) -> bytes:
    router = gateway.router
    span, bucket = WINDOWS[window]
    end = router.clock()
    start = end - span
    rows = await router.ledger.since(start, end) if router.ledger is not None else []
    policy = router.policy

    def build() -> bytes:
        data = {
            "window": window,
            "start": start,
            "end": end,
            "ledger": router.ledger is not None,
            "stats": stats_json(aggregate(rows, policy, start, end)),
            "series": series(rows, policy, start, end, bucket),
        }
        return msgspec.json.encode(data)

    return await asyncio.to_thread(build)  # a week of rows must not stall the requests


# -- the decision feed -----------------------------------------------------------------------


async def _close_feed(app: web.Application) -> None:
    await app[GATEWAY].feed.close()


async def api_events(request: web.Request) -> web.StreamResponse:
    """The decisions as server-sent events: the backlog, then each new one as it is recorded."""
    gateway = request.app[GATEWAY]
    after = _last_event_id(request)
    response = web.StreamResponse(
        headers={
            "content-type": "text/event-stream",
            "cache-control": "no-store",
            "x-accel-buffering": "no",  # a proxy in front must not hold events back
        }
    )
    seen = -1  # the last id sent: a poll that lags the backlog repeats nothing
    async with gateway.feed.watch(after) as (backlog, queue):
        await response.prepare(request)
        try:
            batch: list[dict[str, Any]] | None = backlog
            while batch is not None:
                fresh = [e for e in batch if e["id"] > seen]
                if fresh:
                    seen = fresh[-1]["id"]
                    await response.write(b"".join(_sse(e, msgspec.json.encode) for e in fresh))
                try:
                    batch = await asyncio.wait_for(queue.get(), PING_EVERY)
                except TimeoutError:
                    await response.write(b": ping\n\n")
                    batch = []
        except (ConnectionResetError, ConnectionError):
            pass  # the page went away
    return response


def _sse(entry: dict[str, Any], encode: Callable[[Any], bytes]) -> bytes:
    return b"event: decision\nid: %d\ndata: %s\n\n" % (entry["id"], encode(entry))


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query.get("after")
    if raw is None or not raw.strip():
        return None
    try:
        return max(int(raw.strip()), 0)
    except ValueError:
        raise RequestError(f"Last-Event-ID must be a decision id, not {raw[:20]!r}") from None


# -- the actions -----------------------------------------------------------------------------


async def api_reset(request: web.Request) -> web.Response:
    """Clear a cooldown: a state key from `/api/dashboard`, a provider, key id or model, or
    every cooldown for `""`."""
    gateway = admin(request)
    data = await read_json(request, MAX_ACTION_BODY)
    target = data.get("target") if isinstance(data, dict) else None
    if not isinstance(target, str):
        raise RequestError('expected {"target": "<cooldown key, provider, key id or model>"}')
    router = gateway.router
    snapshot = await router.store.snapshot(router.clock())
    if target in snapshot.cooldowns:
        await router.store.recover(target)
        count = 1
    elif (problem := reset_target_error(router.policy, target)) is not None:
        raise RequestError(problem)
    else:
        count = await router.reset(target)
    log.info("dashboard: reset %s (%d cooldowns)", target or "every cooldown", count)
    return json_response({"reset": count})


async def api_reload(request: web.Request) -> web.Response:
    """Read the config file again; a file that does not load leaves the running config."""
    gateway = admin(request)
    await read_json(request, MAX_ACTION_BODY)
    try:
        policy = await asyncio.to_thread(load_policy, gateway.config_path)
    except ConfigError as exc:
        raise RequestError(f"config not reloaded, the running config stays: {exc}") from None
    if gateway.supervised:  # `serve --workers N`: the supervisor tells every worker
        log.info("dashboard: reload asked for; the supervisor tells every worker")
        os.kill(os.getppid(), signal.SIGHUP)
    else:
        gateway.reload(policy)
        log.info("config reloaded from %s (dashboard)", policy.source)
    return json_response({"reloaded": True, "config": policy.source})


async def api_probe(request: web.Request) -> web.Response:
    """Probe every cooled key now (one token each): those that work again are usable at once."""
    gateway = admin(request)
    await read_json(request, MAX_ACTION_BODY)
    results = await gateway.router.probe(all_cooled=True)
    return json_response({"probed": [{"key": k, "outcome": o} for k, o in results]})
