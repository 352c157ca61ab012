"""The table of REST routes under /v1/: (method, path pattern) -> handler(gw, scope, proto, **params).

A pattern segment in braces (`{customer_id}`) matches one path segment and is passed by that name.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..errors import MethodNotAllowed, NotFound
from ..unified import routes as unified_api
from . import admin as admin_api
from . import customers as customers_api
from . import meters as meters_api
from . import requests as requests_api
from . import secret_keys as secret_keys_api
from . import spend_keys as spend_keys_api
from . import usage as usage_api
from . import wallet as wallet_api
from . import webhooks as webhooks_api

Handler = Callable[..., Awaitable[None]]

ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "requests", requests_api.list_requests),
    ("POST", "requests", requests_api.create_request),
    ("GET", "requests/{request_id}", requests_api.get_request),
    ("GET", "usage", usage_api.get_usage),
    ("POST", "customers", customers_api.create_customer),
    ("GET", "customers", customers_api.list_customers),
    ("GET", "customers/{customer_id}", customers_api.get_customer),
    ("PATCH", "customers/{customer_id}", customers_api.update_customer),
    ("DELETE", "customers/{customer_id}", customers_api.delete_customer),
    ("GET", "customers/{customer_id}/subscription", customers_api.get_subscription),
    ("POST", "customers/{customer_id}/credit", customers_api.credit),
    ("POST", "meters", meters_api.create_meter),
    ("GET", "meters", meters_api.list_meters),
    ("GET", "meters/{meter_id}", meters_api.get_meter),
    ("PATCH", "meters/{meter_id}", meters_api.update_meter),
    ("DELETE", "meters/{meter_id}", meters_api.delete_meter),
    ("POST", "spend_keys", spend_keys_api.create_spend_key),
    ("GET", "spend_keys", spend_keys_api.list_spend_keys),
    ("GET", "spend_keys/{spend_key_id}", spend_keys_api.get_spend_key),
    ("PUT", "spend_keys/{spend_key_id}", spend_keys_api.update_spend_key),
    ("DELETE", "spend_keys/{spend_key_id}", spend_keys_api.revoke_spend_key),
    ("POST", "spend_keys/{spend_key_id}/rotate", spend_keys_api.rotate_spend_key),
    ("POST", "secret_keys", secret_keys_api.create_secret_key),
    ("GET", "secret_keys", secret_keys_api.list_secret_keys),
    ("DELETE", "secret_keys/{secret_key_id}", secret_keys_api.delete_secret_key),
    ("POST", "webhooks", webhooks_api.create_webhook),
    ("GET", "webhooks", webhooks_api.list_webhooks),
    ("GET", "webhooks/{webhook_id}", webhooks_api.get_webhook),
    ("PATCH", "webhooks/{webhook_id}", webhooks_api.update_webhook),
    ("DELETE", "webhooks/{webhook_id}", webhooks_api.delete_webhook),
    ("GET", "wallet", wallet_api.get_wallet),
    ("POST", "wallet/credit", wallet_api.credit_wallet),
    ("POST", "chat/completions", unified_api.chat_completions),
    ("POST", "messages", unified_api.messages),
    ("GET", "models", unified_api.list_models),
]

# /admin/...: the operator's, guarded by EDGE_PROXY_ADMIN_TOKEN
ADMIN_ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "merchants", admin_api.create_merchant),
]


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
