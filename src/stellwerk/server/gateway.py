"""What every handler of one gateway app shares: the `Gateway` object under `GATEWAY`.

It holds the router, the metrics, the client keys and the settings that follow a config reload,
and it is the router's decision sink: each decision is counted once and handed back to the
request that is waiting for it, so even an error answer carries the notice headers.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import msgspec
from aiohttp import web

from ..decision import Decision
from ..policy import Policy
from ..router import Router
from .feed import Feed
from .metrics import Metrics

log = logging.getLogger("stellwerk.server")


class Gateway:
    """What every handler of one app shares: the router, the metrics and the client settings.

    `api_keys` and `inline_notice` left as None follow the router's policy, also after a reload.
    """

    def __init__(
        self,
        router: Router,
        *,
        api_keys: Iterable[str] | None = None,
        admin_keys: Iterable[str] | None = None,
        max_body: int | None = None,
        inline_notice: bool | None = None,
    ) -> None:
        self.router = router
        self.metrics = Metrics()
        self._api_keys = None if api_keys is None else tuple(k for k in api_keys if k)
        self._admin_keys = None if admin_keys is None else tuple(k for k in admin_keys if k)
        self.config_path: str | os.PathLike[str] | None = None  # `serve` sets it (reload)
        self.host = router.policy.gateway.host  # where it listens (`serve --host`)
        self.supervised = False  # one of `serve --workers N`: a reload goes to the supervisor
        self.feed = Feed(router.ledger)  # the dashboard's decision feed
        self._inline_notice = inline_notice
        self.max_body = max_body or router.policy.gateway.max_body
        self.decisions: dict[str, Decision | None] = {}  # request id -> its decision, in flight
        self.reading = 0  # requests whose bodies are still arriving (`limits.MAX_READING`)
        self._policy_keys: tuple[object, tuple[str, ...], tuple[str, ...]] = (None, (), ())

    @property
    def api_keys(self) -> tuple[str, ...]:
        """The client keys: `$STELLWERK_API_KEYS` or `gateway.api_keys`."""
        return self._api_keys if self._api_keys is not None else self._from_policy()[0]

    @property
    def admin_keys(self) -> tuple[str, ...]:
        """The keys for the dashboard's actions: `$STELLWERK_ADMIN_KEYS` or
        `gateway.admin_keys`. An admin key also reads what a client key reads."""
        return self._admin_keys if self._admin_keys is not None else self._from_policy()[1]

    def _from_policy(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        policy = self.router.policy
        if self._policy_keys[0] is not policy:  # read again only after a config reload
            gateway = policy.gateway
            api = tuple(s.reveal() for s in gateway.api_keys)
            self._policy_keys = (policy, api, tuple(s.reveal() for s in gateway.admin_keys))
        return self._policy_keys[1], self._policy_keys[2]

    @property
    def inline_notice(self) -> bool:
        if self._inline_notice is not None:
            return self._inline_notice
        return self.router.policy.gateway.inline_notice

    def authorized(self, request: web.Request) -> bool:
        """Whether the request may pass: it carries a client or admin key, or needs none.

        The model endpoints need a key when client keys are configured; the status and
        dashboard API (`/api/...`) also when only admin keys are."""
        if not self.api_keys and not (self.admin_keys and request.path.startswith("/api/")):
            return True
        return self.role(request) is not None

    def role(self, request: web.Request) -> str | None:
        """`admin` or `client` for the key the request carries (bearer or `x-api-key`), or
        None. Every key is compared in full, in constant time."""
        given = [_bearer(request.headers.get("authorization", ""))]
        given.append(request.headers.get("x-api-key", ""))
        client = admin = False
        # aiohttp keeps bytes that are not UTF-8 as surrogates; such a key matches no key.
        for candidate in (g.encode("utf-8", "surrogateescape") for g in given if g):
            for key in self.api_keys:
                client |= hmac.compare_digest(candidate, key.encode())
            for key in self.admin_keys:
                admin |= hmac.compare_digest(candidate, key.encode())
        return "admin" if admin else "client" if client else None

    def secrets(self) -> list[str]:
        """Every secret value this gateway knows, to be masked in anything it sends out."""
        providers = self.router.policy.providers.values()
        upstream = [c.secret.reveal() for p in providers for c in p.credentials]
        return [*upstream, *self.api_keys, *self.admin_keys]

    async def capture(self, decision: Decision) -> None:
        """Decision sink: metrics, and the decision for the request still waiting for it."""
        self.metrics.observe(decision)
        self.feed.publish(decision)
        if decision.request_id in self.decisions:
            self.decisions[decision.request_id] = decision

    def reload(self, policy: Policy) -> None:
        """Swap in a new policy for new requests; what needs a restart is logged."""
        old = self.router.policy
        self.router.swap_policy(policy)
        if policy.state != old.state:
            log.warning("config reload: state changes take effect after a restart")
        if policy.ledger != old.ledger:
            log.warning("config reload: ledger changes take effect after a restart")
        if (policy.gateway.host, policy.gateway.port) != (old.gateway.host, old.gateway.port):
            log.warning("config reload: gateway.host and gateway.port need a restart")


GATEWAY = web.AppKey("gateway", Gateway)
REQUEST_ID: ContextVar[str] = ContextVar("stellwerk_request_id", default="")
"""The id of the request being served (set by the middleware, read by handlers and logs)."""


def json_response(body: Any, *, status: int = 200, headers: Any = None) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
