"""`/v1/webhooks`: where a merchant wants events sent. The signing secret (`whsec_...`) is shown once, on create.

A URL is checked against the operator's outbound policy when it is registered (edge_proxy.outbound: https,
a web port, no credentials, no name or IP literal that is always inside the network, at most 2,048 bytes;
400 with the reason), and again before every delivery. A merchant has at most EDGE_PROXY_WEBHOOKS_PER_MERCHANT
webhooks (409 past it). `GET /v1/webhooks/{id}/deliveries` shows the latest deliveries and why they failed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import secrets

from ..billing import accounts
from ..billing.webhook_deliveries import recent_deliveries
from ..errors import Conflict, NotFound
from ..outbound import MAX_URL_BYTES, OutboundPolicy, check_url
from .common import decode_cursor, json_body, limit_param, query, reply
from .customers import list_reply, text

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services


def to_api(w: accounts.Webhook, secret: str | None = None) -> dict[str, Any]:
    out = {"webhook_id": w.webhook_id, "name": w.name, "url": w.url, "created_at": w.created_at}
    if secret is not None:
        out["webhook_secret"] = secret
    return out


def url_of(svc: Services, body: dict[str, Any], *, required: bool) -> str | None:
    """A URL the gateway may deliver to under the operator's policy (UnsafeURL, 400, says why not)."""
    value = text(body, "url", required=required, most=4 * MAX_URL_BYTES)  # check_url counts bytes, and says so
    if value is not None:
        check_url(value, OutboundPolicy.from_settings(svc.settings))
    return value


async def create_webhook(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    body = await json_body(proto, headers=scope.headers)
    name = text(body, "name", required=True) or ""   # required: never None
    url = url_of(svc, body, required=True) or ""
    secret = "whsec_" + secrets.token_urlsafe(32)
    most = svc.settings.webhooks_per_merchant
    created = await accounts.create_webhook(svc.store.db, mid, name, url, secret, most)
    if created is None:
        raise Conflict(f"a merchant may have at most {most} webhooks: delete one first")
    reply(proto, 201, to_api(created, secret))


async def list_webhooks(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    q = query(scope)
    limit = limit_param(q)
    items = await accounts.list_webhooks(svc.store.db, mid, decode_cursor(q.get("cursor")), limit)
    list_reply(proto, items, limit, to_api, lambda w: (w.created_at, w.webhook_id))


async def get_webhook(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal, webhook_id: str) -> None:
    mid = caller.merchant_id
    w = await accounts.webhook(svc.store.db, mid, webhook_id)
    if w is None:
        raise NotFound(f"no webhook {webhook_id!r}")
    reply(proto, 200, to_api(w))


async def update_webhook(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal, webhook_id: str) -> None:
    mid = caller.merchant_id
    body = await json_body(proto, headers=scope.headers)
    name = text(body, "name")
    url = url_of(svc, body, required=False)
    w = await accounts.update_webhook(svc.store.db, mid, webhook_id, name, url)
    if w is None:
        raise NotFound(f"no webhook {webhook_id!r}")
    reply(proto, 200, to_api(w))


async def delete_webhook(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal, webhook_id: str) -> None:
    mid = caller.merchant_id
    if not await accounts.delete_webhook(svc.store.db, mid, webhook_id):
        raise NotFound(f"no webhook {webhook_id!r}")
    reply(proto, 200, {"id": webhook_id, "deleted": True})


async def list_deliveries(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal, webhook_id: str) -> None:
    """`GET /v1/webhooks/{id}/deliveries?limit=N`: the webhook's latest deliveries, newest first."""
    mid = caller.merchant_id
    if await accounts.webhook(svc.store.db, mid, webhook_id) is None:
        raise NotFound(f"no webhook {webhook_id!r}")
    limit = limit_param(query(scope), default=20)
    reply(proto, 200, {"data": await recent_deliveries(svc.store.db, mid, webhook_id, limit)})
