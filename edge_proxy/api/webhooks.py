"""`/v1/webhooks`: where a merchant wants events sent. The signing secret (`whsec_...`) is shown once, on create."""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..billing import accounts
from ..errors import InvalidRequest, NotFound
from .common import decode_cursor, json_body, limit_param, query, reply
from .customers import list_reply, text

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services

MAX_URL = 2000


def to_api(w: accounts.Webhook, secret: str | None = None) -> dict:
    out = {"webhook_id": w.webhook_id, "name": w.name, "url": w.url, "created_at": w.created_at}
    if secret is not None:
        out["webhook_secret"] = secret
    return out


def url_of(body: dict, *, required: bool) -> str | None:
    """An absolute http or https URL with a host, no credentials and no whitespace."""
    value = text(body, "url", required=required, most=MAX_URL)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc
            or any(c.isspace() for c in value)):
        raise InvalidRequest("url: must be an http:// or https:// URL with a host")
    return value


async def create_webhook(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    body = await json_body(proto)
    name = text(body, "name", required=True)
    url = url_of(body, required=True)
    secret = "whsec_" + secrets.token_urlsafe(32)
    reply(proto, 201, to_api(await accounts.create_webhook(svc.store.db, mid, name, url, secret), secret))


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
    body = await json_body(proto)
    name = text(body, "name")
    url = url_of(body, required=False)
    w = await accounts.update_webhook(svc.store.db, mid, webhook_id, name, url)
    if w is None:
        raise NotFound(f"no webhook {webhook_id!r}")
    reply(proto, 200, to_api(w))


async def delete_webhook(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal, webhook_id: str) -> None:
    mid = caller.merchant_id
    if not await accounts.delete_webhook(svc.store.db, mid, webhook_id):
        raise NotFound(f"no webhook {webhook_id!r}")
    reply(proto, 200, {"id": webhook_id, "deleted": True})
