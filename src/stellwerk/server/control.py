"""The gateway's controls beyond routing: emergency mode by hand, and the health watch.

`POST /api/emergency` with `{"on": true}` (or `false`) does what `stellwerk emergency on|off`
does, for gateways whose state the CLI cannot reach (`state.backend: memory`, another machine);
it is an admin action like the dashboard's (`dashboard.admin`: an admin key when keys are
configured, JSON only, same origin only). The health watch (`health.py`) and the probes
(`probe.py`: a one-token request ends a cooldown early once the key works again) run for as long
as the app does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from .. import emergency
from ..errors import RequestError
from ..health import watching
from ..router import Router
from ..status import status_data
from .chat import read_json
from .dashboard import admin
from .gateway import GATEWAY, json_response

MAX_BODY = 4096
log = logging.getLogger("stellwerk.server")


async def api_emergency(request: web.Request) -> web.Response:
    """Switch emergency mode by hand; answers with the mode, whether it changed, since and why."""
    router = admin(request).router
    data = await read_json(request, MAX_BODY)
    on = data.get("on") if isinstance(data, dict) else None
    if not isinstance(on, bool):
        raise RequestError('expected {"on": true} or {"on": false}')
    now = router.clock()
    changed = await emergency.switch(router.store, on, now, f"{emergency.MANUAL} (status API)")
    status = status_data(router.policy, await router.store.snapshot(now), router.tz)
    return json_response(
        {
            "emergency": status["emergency"],
            "changed": changed,
            "since": status["emergency_since"],
            "reason": status["emergency_reason"],
        }
    )


async def health_watch(app: web.Application) -> AsyncIterator[None]:
    """`app.cleanup_ctx` entry: the health watch and the probes while the app runs."""
    router = app[GATEWAY].router
    probes = asyncio.create_task(probe_loop(router), name="stellwerk-probes")
    try:
        async with watching(lambda: router.policy, router.store, router.clock):
            yield
    finally:
        probes.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probes


async def probe_loop(router: Router) -> None:
    """Probe due cooldowns (`Router.probe`) a few times per `cooldowns.probe.every`."""
    while True:
        every = router.policy.cooldowns.probe_every
        await asyncio.sleep(min(max(every / 5, 0.1), 60.0) if every > 0 else 60.0)
        if every <= 0:
            continue
        try:
            for key, outcome in await router.probe():
                log.info("probe %s: %s", key, "usable again" if outcome == "ok" else outcome)
        except Exception:  # a failed probe round must never stop the gateway
            log.exception("probe round failed")
