"""One candidate HTTP stack around Stellwerk's request path, for `stacks.py`.

`python stack_app.py serve SERVER CLIENT CONFIG PORT` serves POST /v1/chat/completions and GET
/healthz.
The handler is the same on every server and does what the gateway's handler does for a
non-streaming OpenAI request, minus the middleware (client keys, request ids, error answers):
decode, parse, route through the real `Router` (classifier, plan, state store, budgets, ledger,
metrics, the decision log line), render, encode, add the notice headers. SERVER is `aiohttp`
(aiohttp.web, as shipped) or `granian` (granian's RSGI server embedded in the asyncio loop);
CLIENT is `aiohttp` (as shipped) or `pyreqwest` (the OpenAI adapter's non-streaming POST goes
through one pyreqwest client instead). It runs in the throwaway virtual environment `stacks.py`
makes, never in Stellwerk's own.

`python stack_app.py floor CONFIG MODEL COUNT` measures the floor instead: the same path in
process, COUNT requests for MODEL, with stub providers (no HTTP at all, no adapter); prints CPU and
wall ms per request as JSON.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from typing import Any

import msgspec

from stellwerk.classify import preload
from stellwerk.decision import new_request_id
from stellwerk.router import Router
from stellwerk.server.app import create_app
from stellwerk.server.formats import OPENAI
from stellwerk.server.gateway import GATEWAY
from stellwerk.server.notice import notice_headers
from stellwerk.server.run import _log_redacted

JSON_TYPE = ("content-type", "application/json")


async def answer(
    router: Router, body: bytes, task: str | None
) -> tuple[list[tuple[str, str]], bytes]:
    """The gateway's non-streaming chat path: headers and body of the answer."""
    request_id = new_request_id()
    chat = OPENAI.parse(msgspec.json.decode(body))
    metadata = {**chat.metadata, "request_id": request_id, "client": "openai"}
    chat = replace(chat, metadata=metadata, task=task or chat.task)
    done = await router.complete(chat)
    headers = [JSON_TYPE, ("x-request-id", request_id), *notice_headers(done.decision).items()]
    return headers, msgspec.json.encode(OPENAI.render(done.response, request_id))


def use_pyreqwest() -> None:
    """Route the OpenAI adapter's non-streaming POST through one pyreqwest client."""
    from pyreqwest.client import ClientBuilder

    from stellwerk.providers import _http, openai

    client = ClientBuilder().build()

    async def post_json(
        session: Any, spec: Any, url: str, payload: Any, headers: Any, target: str
    ) -> Any:
        all_headers = {"content-type": "application/json", **spec.headers, **headers}
        request = client.post(url).headers(all_headers).body_bytes(msgspec.json.encode(payload))
        response = await request.build().send()
        body = bytes(await response.bytes())
        if response.status >= 400:
            raise _http.error_from_response(
                response.status, body, dict(response.headers.items()), target
            )
        return msgspec.json.decode(body)

    openai.post_json = post_json  # type: ignore[assignment]


async def serve_aiohttp(router: Router, port: int) -> None:
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        headers, body = await answer(
            router, await request.read(), request.headers.get("x-stellwerk-task")
        )
        return web.Response(body=body, headers=dict(headers))

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def serve_granian(router: Router, port: int) -> None:
    from granian.constants import Interfaces
    from granian.server.embed import Server

    class App:
        async def __rsgi__(self, scope: Any, proto: Any) -> None:
            if scope.path == "/healthz":
                proto.response_bytes(200, [JSON_TYPE], b'{"ok":true}')
                return
            headers, body = await answer(
                router, await proto(), scope.headers.get("x-stellwerk-task")
            )
            proto.response_bytes(200, headers, body)

    server = Server(
        App(), address="127.0.0.1", port=port, interface=Interfaces.RSGI, log_enabled=False
    )
    await server.serve()


class Stub:
    """A provider that answers at once; the bench's failing keys fail as their upstream does."""

    async def complete(self, request: Any, model: Any, credential: Any) -> Any:
        from stellwerk.errors import ProviderError
        from stellwerk.failures import FailureClass
        from stellwerk.types import ChatResponse, TextPart, Usage

        secret = credential.secret.reveal() if credential is not None else ""
        if secret == "sk-fail-402":
            raise ProviderError(FailureClass.BILLING, "HTTP 402: billing", status=402)
        if secret == "sk-fail-503":
            raise ProviderError(FailureClass.OVERLOADED, "HTTP 503: overloaded", status=503)
        content = (TextPart("Canberra."),)
        return ChatResponse(model.id, content, usage=Usage(14, 3), upstream_model=model.upstream)


async def floor(config: str, model: str, count: int) -> None:
    import json
    import time

    from gateways import ROUTE_PROMPT

    from stellwerk.config import load_policy
    from stellwerk.ledger import open_ledger
    from stellwerk.state import open_store

    policy = load_policy(config)
    stubs = {name: Stub() for name in policy.providers}
    store, ledger = open_store(policy.state), open_ledger(policy)
    router = as_served(Router(policy, store, providers=stubs, ledger=ledger))  # type: ignore[arg-type]
    user = [{"role": "user", "content": ROUTE_PROMPT}]
    body = json.dumps({"model": model, "messages": user, "max_tokens": 64}).encode()
    for _ in range(300):
        await answer(router, body, None)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        await answer(router, body, None)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await router.aclose()
    print(json.dumps({"cpu_ms": 1000 * cpu / count, "wall_ms": 1000 * wall / count}))


def as_served(router: Router) -> Router:
    """The router with what `stellwerk serve` adds: metrics from every decision, the log."""
    _log_redacted(create_app(router)[GATEWAY])  # the app itself goes unused: its sink stays
    return router


async def main(server: str, client: str, config: str, port: int) -> None:
    router = as_served(Router.from_config(config))
    preload()
    if client == "pyreqwest":
        use_pyreqwest()
    await (serve_granian if server == "granian" else serve_aiohttp)(router, port)


if __name__ == "__main__":
    import uvloop

    if sys.argv[1] == "floor":
        uvloop.run(floor(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        uvloop.run(main(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
