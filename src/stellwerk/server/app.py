"""The gateway application: one aiohttp app in front of one Router.

`create_app(router)` wires the endpoints, one middleware that gives every request an id, checks the
client key and turns every exception into an answer in the caller's own format, and a decision
sink that feeds the metrics and hands the decision back to the request that caused it (so even an
error answer carries the notice headers). The chat endpoints live in `chat.py`; everything here
is small and synchronous in spirit: health, readiness, the model list, status and metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

from aiohttp import HttpVersion11, web

from ..decision import Decision, new_request_id
from ..plan import RoutePlan
from ..policy import Policy
from ..readiness import unusable_reason
from ..router import Router
from ..status import status_data
from ..types import TEXT_CLASSES
from ..wire.hop import HOP_HEADER, INCOMING, loop_reason
from ..wire.hop import parse as parse_hops
from ..wire.limits import cap, cap_message
from . import chat, control, dashboard
from .errors import HTTPProblem, Problem, loop_detected, problem_for, too_large, unauthorized
from .formats import ANTHROPIC, OPENAI, Format
from .gateway import GATEWAY, REQUEST_ID, Gateway, json_response
from .limits import handler_args
from .metrics import content_type
from .notice import notice_headers

log = logging.getLogger("stellwerk.server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # no client key needed
CHAT_PATHS = frozenset({"/v1/chat/completions", "/v1/messages"})  # each ends in a ledger record


def create_app(
    router: Router,
    *,
    api_keys: Iterable[str] | None = None,
    admin_keys: Iterable[str] | None = None,
    max_body: int | None = None,
    inline_notice: bool | None = None,
) -> web.Application:
    """The gateway app for `router` (which stays the caller's to close).

    Settings left as None come from `router.policy.gateway`. The router's decision sink is
    wrapped so every decision also reaches this app's metrics.
    """
    gateway = Gateway(
        router,
        api_keys=api_keys,
        admin_keys=admin_keys,
        max_body=max_body,
        inline_notice=inline_notice,
    )
    router.sink = _tee(gateway.capture, router.sink)
    app = web.Application(
        middlewares=[_guard], client_max_size=gateway.max_body, handler_args=handler_args()
    )
    app[GATEWAY] = gateway
    app.on_response_prepare.append(_request_id_header)
    post, get = app.router.add_post, app.router.add_get
    post("/v1/chat/completions", chat.chat_completions, expect_handler=expect)
    post("/v1/messages", chat.messages, expect_handler=expect)
    post("/v1/messages/count_tokens", chat.count_tokens, expect_handler=expect)
    get("/v1/models", list_models, expect_handler=expect)
    get("/v1/models/{model:.+}", get_model, expect_handler=expect)
    get("/healthz", healthz, expect_handler=expect)
    get("/readyz", readyz, expect_handler=expect)
    get("/metrics", metrics, expect_handler=expect)
    get("/api/status", api_status, expect_handler=expect)
    post("/api/emergency", control.api_emergency, expect_handler=expect)
    dashboard.add_routes(app)
    app.cleanup_ctx.append(control.health_watch)
    return app


def _tee(*sinks: Callable[[Decision], Awaitable[None]]) -> Callable[[Decision], Awaitable[None]]:
    async def sink(decision: Decision) -> None:
        for each in sinks:
            await each(decision)

    return sink


# -- the middleware --------------------------------------------------------------------------


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, client key, and every error as an answer in the caller's format."""
    gateway = request.app[GATEWAY]
    request_id = new_request_id()
    REQUEST_ID.set(request_id)
    problem: Problem | None = None
    marker = request.headers.get(HOP_HEADER, "")
    INCOMING.set(parse_hops(marker))  # carried on in the marker of every upstream request
    try:
        if marker and (reason := loop_reason(marker)) is not None:
            raise HTTPProblem(loop_detected(reason))
        open_path = request.path in OPEN_PATHS or dashboard.is_page(request.path)
        if not open_path and (refused := dashboard.foreign(gateway, request)) is not None:
            raise HTTPProblem(refused)  # a browser sent it for another site's page
        if not open_path and not gateway.authorized(request):
            raise HTTPProblem(unauthorized())
        response = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404, 405 and 413
        problem = capped(_http_problem(request, exc))
        response = _error_response(request, problem)
    except Exception as exc:
        problem = capped(problem_for(exc, request_id))
        response = _error_response(request, problem)
    finally:
        decision = gateway.decisions.pop(request_id, None)
    if problem is not None and decision is None and request.path in CHAT_PATHS:
        await _record_rejection(request, request_id, problem)
    if response.status >= 400 and not response.prepared:
        response.headers.update(notice_headers(decision))
    gateway.metrics.response(_endpoint(request), response.status)
    return response


async def _record_rejection(request: web.Request, request_id: str, problem: Problem) -> None:
    """A chat request refused before routing (bad JSON, bad key, unknown model, too large) still
    ends in exactly one ledger record; the metrics count it by its HTTP status."""
    router = request.app[GATEWAY].router
    if router.ledger is None:
        return
    policy = router.policy
    route = RoutePlan(policy.routing.default_task, policy.routing.mode, (), (), why="rejected")
    message = problem.redacted(request.app[GATEWAY].secrets()).message
    client = "anthropic" if wire_format(request) is ANTHROPIC else "openai"
    text = f"{problem.status}: {message}"
    await router.ledger.record(Decision.rejected(request_id, route, client, text, router.clock()))


def _error_response(request: web.Request, problem: Problem) -> web.Response:
    gateway = request.app[GATEWAY]
    problem = problem.redacted(gateway.secrets())
    body = wire_format(request).error(problem)
    response = json_response(body, status=problem.status)
    if not problem.retry:
        response.headers["x-should-retry"] = "false"
    response.headers.update(problem.headers)  # x-stellwerk-upstream*: the caller's own 400
    if problem.status == 408:  # the rest of a slow body is not waited for
        response.force_close()
    return response


async def expect(request: web.Request) -> web.Response | None:
    """The `Expect` header: `100-continue` as aiohttp answers it, anything else a 417 in the
    caller's format (aiohttp's own answer is plain text). Runs before the middleware."""
    value = request.headers.get("expect", "")
    if value.strip().lower() == "100-continue":
        if request.version == HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None
    text = f"unsupported Expect header {cap(value)!r}: only 100-continue is understood"
    response = _error_response(request, Problem(417, text, code="expectation_failed"))
    response.force_close()
    return response


def _http_problem(request: web.Request, exc: web.HTTPException) -> Problem:
    if exc.status == 413:
        return too_large(request.app[GATEWAY].max_body)
    return Problem(exc.status, f"{exc.reason}: {cap(request.method)} {cap(request.path)}")


def capped(problem: Problem) -> Problem:
    """The problem with what it echoes of the request cut (`cap_message`): a 1 MB model name
    must not come back whole, nor go into the ledger."""
    message = cap_message(problem.message)
    return problem if message is problem.message else replace(problem, message=message)


def wire_format(request: web.Request) -> Format:
    """The caller's format: Anthropic's on `/v1/messages` and for clients that send
    `anthropic-version` (the Anthropic SDKs, on every path), OpenAI's everywhere else."""
    if request.path.startswith("/v1/messages") or "anthropic-version" in request.headers:
        return ANTHROPIC
    return OPENAI


def _endpoint(request: web.Request) -> str:
    """The route's template (bounded label values), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


async def _request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    if request_id := REQUEST_ID.get():
        response.headers["x-stellwerk-request-id"] = request_id


# -- the small endpoints ---------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The config is loaded, the state store answers and a provider is usable.

    No usable provider (no API key set, and no local model server running) gives 503 with the
    reason and the variables to set (`readiness.unusable_reason`).

    A shared store (Redis) that is unreachable gives 200 with `"status": "degraded"` and the
    reason: the gateway still routes (fail open), and every replica shares that store, so a 503
    would take all of them out of the load balancer at once."""
    router = request.app[GATEWAY].router
    try:
        snapshot = await router.store.snapshot(router.clock())
    except Exception as exc:
        log.warning("readiness: state store unreachable: %s", exc)
        body = {"status": "unavailable", "reason": f"state store unreachable: {exc}"}
        return json_response(body, status=503)
    if (why := unusable_reason(router.policy, snapshot)) is not None:
        body = {"status": "unavailable", "reason": why, "config": router.policy.source}
        return json_response(body, status=503)
    if snapshot.degraded:
        body = {"status": "degraded", "reason": snapshot.degraded, "config": router.policy.source}
        return json_response(body)
    return json_response({"status": "ready", "config": router.policy.source})


async def metrics(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    snapshot = await gateway.router.store.snapshot(gateway.router.clock())
    body = gateway.metrics.render(snapshot, gateway.router.ledger)
    return web.Response(body=body, headers={"content-type": content_type()})


async def api_status(request: web.Request) -> web.Response:
    """What `stellwerk status --json` prints: providers (keys masked), cooldowns, mode."""
    router = request.app[GATEWAY].router
    snapshot = await router.store.snapshot(router.clock())
    return json_response(status_data(router.policy, snapshot, router.tz))


async def list_models(request: web.Request) -> web.Response:
    """`auto`, `auto:<class>`, the aliases and the catalog, in OpenAI's list format."""
    entries = model_entries(request.app[GATEWAY].router.policy)
    return json_response(
        {
            "object": "list",
            "data": entries,
            "has_more": False,  # the Anthropic SDK pages with these three
            "first_id": entries[0]["id"] if entries else None,
            "last_id": entries[-1]["id"] if entries else None,
        }
    )


async def get_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    for entry in model_entries(request.app[GATEWAY].router.policy):
        if entry["id"] == name:
            return json_response(entry)
    text = f"model {cap(name)!r} does not exist"
    problem = Problem(404, text, code="model_not_found", param="model")
    raise HTTPProblem(problem)


def model_entries(policy: Policy) -> list[dict[str, Any]]:
    """One entry per name a client may send as `model` (`stellwerk models` lists the same models;
    any other `provider/model` of a configured provider passes through)."""
    names = [("auto", "stellwerk")]
    names += [(f"auto:{task}", "stellwerk") for task in TEXT_CLASSES]
    names += [(a, spec.provider) for spec in policy.models.values() for a in spec.aliases]
    names += [(spec.id, spec.provider) for spec in policy.models.values()]
    return [_entry(name, owner) for name, owner in dict(names).items()]


def _entry(name: str, owner: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": owner,
        "type": "model",  # Anthropic's list shape, next to OpenAI's
        "display_name": name,
        "created_at": "1970-01-01T00:00:00Z",
    }
