"""The table of REST routes under /v1/: (method, path pattern) -> handler(gw, scope, proto, **params).

A pattern segment in braces (`{customer_id}`) matches one path segment and is passed by that name.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..errors import MethodNotAllowed, NotFound
from . import requests as requests_api
from . import usage as usage_api

Handler = Callable[..., Awaitable[None]]

ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "requests", requests_api.list_requests),
    ("POST", "requests", requests_api.create_request),
    ("GET", "requests/{request_id}", requests_api.get_request),
    ("GET", "usage", usage_api.get_usage),
]

# /admin/...: the operator's, guarded by EDGE_PROXY_ADMIN_TOKEN
ADMIN_ROUTES: list[tuple[str, str, Handler]] = []


class Router:
    def __init__(self, routes: list[tuple[str, str, Handler]]) -> None:
        self._routes = [(method, pattern.split("/"), handler) for method, pattern, handler in routes]

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        parts = path.split("/")
        allowed = []
        for m, pattern, handler in self._routes:
            if len(pattern) != len(parts):
                continue
            params = {}
            for want, got in zip(pattern, parts):
                if want.startswith("{"):
                    if not got:
                        break
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                if m == method:
                    return handler, params
                allowed.append(m)
        if allowed:
            raise MethodNotAllowed(f"{method} is not allowed here; use {' or '.join(sorted(set(allowed)))}")
        raise NotFound(f"no route for /v1/{path}")
