"""The gateway's controls beyond routing: emergency mode by hand, and the health watch.

`POST /api/emergency` with `{"on": true}` (or `false`) does what `stellwerk emergency on|off`
does, for gateways whose state the CLI cannot reach (`state.backend: memory`, another machine);
it needs a client key like every other endpoint. The health watch (`health.py`) runs for as long
as the app does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .. import emergency
from ..errors import RequestError
from ..health import watching
from ..status import status_data
from .chat import read_json
from .gateway import GATEWAY, json_response

MAX_BODY = 4096


async def api_emergency(request: web.Request) -> web.Response:
    """Switch emergency mode by hand; answers with the mode, whether it changed, since and why."""
    router = request.app[GATEWAY].router
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
    """`app.cleanup_ctx` entry: the health watch on local providers while the app runs."""
    router = app[GATEWAY].router
    async with watching(lambda: router.policy, router.store, router.clock):
        yield
