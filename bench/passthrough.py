"""The floor: a bare pass-through proxy on the same stack as the gateway (aiohttp server and
client, uvloop when installed), doing nothing but parse the JSON body and forward it.

    .venv/bin/python bench/passthrough.py --upstream URL [--port 0]

Measured in the same run, it shows how much of the gateway's cost is the HTTP stack itself and
how much is Stellwerk's own work (classify, plan, state, budgets, ledger, metrics); the floor
moves with the machine just as the gateway does, so the difference is steadier than either.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import aiohttp
from aiohttp import web

FORWARD = ("authorization", "x-api-key", "anthropic-version", "content-type")
UPSTREAM = web.AppKey("upstream", str)
CLIENT = web.AppKey("client", aiohttp.ClientSession)


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    data = json.loads(body)
    headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARD}
    url = request.app[UPSTREAM] + request.path
    client = request.app[CLIENT]
    async with client.post(url, data=json.dumps(data).encode(), headers=headers) as upstream:
        if not data.get("stream"):
            answer = await upstream.read()
            return web.Response(
                body=answer, status=upstream.status, content_type="application/json"
            )
        response = web.StreamResponse(status=upstream.status)
        response.content_type = "text/event-stream"
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def main(upstream: str, port: int) -> None:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=64)
    app[CLIENT] = aiohttp.ClientSession(connector=connector)
    app.router.add_post("/{path:.*}", forward)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await app[CLIENT].close()
        await runner.cleanup()


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a bare aiohttp pass-through proxy")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main(args.upstream, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(run())
