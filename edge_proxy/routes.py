"""Every route the gateway answers, who may call it, and the router that reads this one table.

A route is (methods, path, handler, access). A path is exact, has `{name}` segments (each matches one segment and
is passed to the handler by that name), or is a prefix (`prefix=True`: the path itself and everything under it).
`access` is the permission table (access.py): the router authorizes the caller before the handler runs, so a
route cannot be added without saying who may call it. A `retired` route refuses every caller it admits with 403
and says why (it stays so that old clients get an answer). A handler is `handler(svc, scope, proto, caller,
**params)`.
Browser requests (an `Origin` header, or OPTIONS) are refused on every route but the ones marked `browser`.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from . import dashboard
from .access import Access
from .api import admin, customers, meters, models, requests, secret_keys, spend_keys, usage, wallet, webhooks
from .errors import MethodNotAllowed, NotFound
from .request_path.plan import forward_plan, providers_plan
from .unified.planner import chat_completions_plan, messages_plan, responses_plan, rewrite_plan

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope
    from granian.rsgi import Headers as RSGIHeaders

    from .request_path.pipeline import Planner
    from .request_path.plan import Plan
    from .services import Services

Handler = Callable[..., Awaitable[None]]
PROXY, MERCHANT, OPERATOR, PUBLIC, DASHBOARD = (Access.PROXY, Access.MERCHANT, Access.OPERATOR, Access.PUBLIC,
                                               Access.DASHBOARD)
ANY = None  # every method

_JSON = [("content-type", "application/json")]
_HEALTHY = msgspec.json.encode({"status": "ok"})
_PROMETHEUS = [("content-type", "text/plain; version=0.0.4; charset=utf-8")]


@dataclass(frozen=True, slots=True)
class Route:
    """`handler` answers the route; a proxied route has a `planner` instead, and the request path
    (request_path/pipeline.py) tells its story with that plan."""

    methods: tuple[str, ...] | None
    path: str
    handler: Handler | None
    access: Access
    prefix: bool = False
    browser: bool = False
    planner: Planner | None = None
    retired: bool = False


def proxied(methods: tuple[str, ...] | None, path: str, planner: Planner, *, prefix: bool = False) -> Route:
    """A route told by the request path, with its own plan; every proxied route is a PROXY route."""
    return Route(methods, path, None, Access.PROXY, prefix=prefix, planner=planner)


async def healthz(svc: Services, scope: Scope, proto: HTTPProtocol, caller: None) -> None:
    proto.response_bytes(200, _JSON, _HEALTHY)


async def metrics(svc: Services, scope: Scope, proto: HTTPProtocol, caller: None) -> None:
    proto.response_bytes(200, _PROMETHEUS, await svc.observability.render())


def count_tokens_plan(svc: Services, scope: Scope, headers: RSGIHeaders, query: str, raw: bytes) -> Plan:
    # The token-count and embeddings planners import the format translators: they load with the first request
    # to their route, not in every worker at start (unified/planner.py loads its translators the same way).
    from .unified.count_tokens_plan import count_tokens_plan as plan
    return plan(svc, scope, headers, query, raw)


def embeddings_plan(svc: Services, scope: Scope, headers: RSGIHeaders, query: str, raw: bytes) -> Plan:
    from .unified.embeddings_plan import embeddings_plan as plan  # loaded when first used: see count_tokens_plan
    return plan(svc, scope, headers, query, raw)


async def dashboard_pages(svc: Services, scope: Scope, proto: HTTPProtocol, caller: None) -> None:
    """The merchant dashboard signs its users in itself (a session cookie, CSRF tokens): dashboard/."""
    await dashboard.handle(svc, scope, proto)


GET, POST, PUT, PATCH, DELETE = ("GET",), ("POST",), ("PUT",), ("PATCH",), ("DELETE",)

ROUTES: list[Route] = [
    # the request path: proxied to a provider
    proxied(ANY, "/v1/forward", forward_plan, prefix=True),
    proxied(ANY, "/providers/", providers_plan, prefix=True),
    proxied(POST, "/v1/chat/completions", chat_completions_plan),
    proxied(POST, "/v1/messages", messages_plan),
    proxied(POST, "/v1/messages/count_tokens", count_tokens_plan),
    proxied(POST, "/v1/responses", responses_plan),
    proxied(POST, "/v1/embeddings", embeddings_plan),
    proxied(POST, "/v1/rewrite/", rewrite_plan, prefix=True),
    Route(GET, "/v1/models", models.list_models, PROXY),
    # Lava's REST resources: the merchant's own
    Route(GET, "/v1/requests", requests.list_requests, MERCHANT),
    Route(POST, "/v1/requests", requests.create_request, MERCHANT),
    Route(GET, "/v1/requests/{request_id}", requests.get_request, MERCHANT),
    Route(GET, "/v1/usage", usage.get_usage, MERCHANT),
    Route(POST, "/v1/customers", customers.create_customer, MERCHANT),
    Route(GET, "/v1/customers", customers.list_customers, MERCHANT),
    Route(GET, "/v1/customers/{customer_id}", customers.get_customer, MERCHANT),
    Route(PATCH, "/v1/customers/{customer_id}", customers.update_customer, MERCHANT),
    Route(DELETE, "/v1/customers/{customer_id}", customers.delete_customer, MERCHANT),
    Route(GET, "/v1/customers/{customer_id}/subscription", customers.get_subscription, MERCHANT),
    Route(POST, "/v1/customers/{customer_id}/credit", customers.credit, MERCHANT),
    Route(POST, "/v1/meters", meters.create_meter, MERCHANT),
    Route(GET, "/v1/meters", meters.list_meters, MERCHANT),
    Route(GET, "/v1/meters/{meter_id}", meters.get_meter, MERCHANT),
    Route(PATCH, "/v1/meters/{meter_id}", meters.update_meter, MERCHANT),
    Route(DELETE, "/v1/meters/{meter_id}", meters.delete_meter, MERCHANT),
    Route(POST, "/v1/spend_keys", spend_keys.create_spend_key, MERCHANT),
    Route(GET, "/v1/spend_keys", spend_keys.list_spend_keys, MERCHANT),
    Route(GET, "/v1/spend_keys/{spend_key_id}", spend_keys.get_spend_key, MERCHANT),
    Route(PUT, "/v1/spend_keys/{spend_key_id}", spend_keys.update_spend_key, MERCHANT),
    Route(DELETE, "/v1/spend_keys/{spend_key_id}", spend_keys.revoke_spend_key, MERCHANT),
    Route(POST, "/v1/spend_keys/{spend_key_id}/rotate", spend_keys.rotate_spend_key, MERCHANT),
    Route(POST, "/v1/secret_keys", secret_keys.create_secret_key, MERCHANT),
    Route(GET, "/v1/secret_keys", secret_keys.list_secret_keys, MERCHANT),
    Route(DELETE, "/v1/secret_keys/{secret_key_id}", secret_keys.delete_secret_key, MERCHANT),
    Route(POST, "/v1/webhooks", webhooks.create_webhook, MERCHANT),
    Route(GET, "/v1/webhooks", webhooks.list_webhooks, MERCHANT),
    Route(GET, "/v1/webhooks/{webhook_id}", webhooks.get_webhook, MERCHANT),
    Route(PATCH, "/v1/webhooks/{webhook_id}", webhooks.update_webhook, MERCHANT),
    Route(DELETE, "/v1/webhooks/{webhook_id}", webhooks.delete_webhook, MERCHANT),
    Route(GET, "/v1/webhooks/{webhook_id}/deliveries", webhooks.list_deliveries, MERCHANT),
    Route(GET, "/v1/wallet", wallet.get_wallet, MERCHANT),
    Route(GET, "/v1/wallet/transfers", wallet.list_transfers, MERCHANT),
    Route(POST, "/v1/wallet/credit", wallet.credit_wallet, MERCHANT, retired=True),  # funding is the operator's
    # the operator's
    Route(POST, "/admin/merchants", admin.create_merchant, OPERATOR),
    Route(POST, "/admin/merchants/{merchant_id}/credit", admin.credit_merchant, OPERATOR),
    Route(POST, "/admin/transfers", admin.create_transfer, OPERATOR),
    Route(GET, "/admin/ledger", admin.verify_ledger, OPERATOR),
    # for load balancers and Prometheus
    Route(("GET", "HEAD"), "/healthz", healthz, PUBLIC),
    Route(GET, "/metrics", metrics, PUBLIC),
    # the merchant dashboard, for browsers: its page table says page by page who may see it (a merchant signed in
    # with its secret key, on a session of the dashboard's own), dashboard/routes.py
    Route(ANY, "/dashboard", dashboard_pages, DASHBOARD, prefix=True, browser=True),
]


class Router:
    """Exact paths by dict, then prefixes, then `{name}` patterns, in table order."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self._exact: dict[str, list[Route]] = {}
        self._prefixes: list[Route] = []
        self._patterns: list[tuple[list[str], Route]] = []
        for route in routes:
            if route.prefix:
                self._prefixes.append(route)
            elif "{" in route.path:
                self._patterns.append((route.path.split("/"), route))
            else:
                self._exact.setdefault(route.path, []).append(route)
        self._browser = tuple(r.path for r in routes if r.browser)
        # (what a path under it starts with, the path itself when it is a route too, the route)
        self._prefix_checks = [(r.path if r.path.endswith("/") else r.path + "/",
                                None if r.path.endswith("/") else r.path, r) for r in self._prefixes]

    def allows_browser(self, path: str) -> bool:
        return any(_under(path, prefix) for prefix in self._browser)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, Any]]:
        exact = self._exact.get(path)
        if exact is None:
            for prefix, whole, route in self._prefix_checks:  # the proxied routes, without building anything
                if path.startswith(prefix) or path == whole:
                    if route.methods is None or method in route.methods:
                        return route, _NO_PARAMS
                    break
        candidates: list[tuple[Route, dict[str, Any]]] = [(r, {}) for r in exact or ()]
        if not candidates:
            candidates = [(r, {}) for r in self._prefixes if _under(path, r.path)]
        if not candidates:
            parts = path.split("/")
            for pattern, route in self._patterns:
                params = _bind(pattern, parts)
                if params is not None:
                    candidates.append((route, params))
        for route, params in candidates:
            if route.methods is None or method in route.methods:
                return route, params
        if candidates:
            allowed = sorted({m for r, _ in candidates for m in r.methods or ()})
            raise MethodNotAllowed(f"{method} is not allowed here; use {' or '.join(allowed)}")
        raise NotFound(f"no route for {path}")


_NO_PARAMS: dict[str, Any] = {}


def _under(path: str, prefix: str) -> bool:
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")


def _bind(pattern: list[str], parts: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(parts):
        return None
    params = {}
    for want, got in zip(pattern, parts, strict=True):
        if want.startswith("{"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params
