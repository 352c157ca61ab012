"""`/v1/secret_keys`: a merchant's own secret keys (create, list, revoke), through the store.

A new key is shown once, on create. A merchant can never revoke its last active key: it would lock itself out.
A revoked key stops working on every worker within a second (store/key_events.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest, NotFound
from ..store.base import SecretKey
from .common import decode_cursor, json_body, limit_param, query, reply
from .customers import list_reply, text

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services


def to_api(k: SecretKey, secret: str | None = None) -> dict[str, Any]:
    out = {"secret_key_id": k.secret_key_id, "name": k.name, "secret_key_hint": k.hint, "created_at": k.created_at}
    if secret is not None:
        out["secret_key"] = secret
    return out


async def create_secret_key(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    name = text(await json_body(proto, headers=scope.headers), "name", required=True)
    key, secret = await svc.store.create_secret_key(mid, name)
    reply(proto, 201, to_api(key, secret))


async def list_secret_keys(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    """Active keys, newest first, paged like every list (the store returns them all, oldest first)."""
    mid = caller.merchant_id
    q = query(scope)
    limit = limit_param(q)
    cursor = decode_cursor(q.get("cursor"))
    keys = sorted(await svc.store.list_secret_keys(mid), key=lambda k: (k.created_at, k.secret_key_id), reverse=True)
    if cursor is not None:
        keys = [k for k in keys if (k.created_at, k.secret_key_id) < cursor]
    list_reply(proto, keys[:limit + 1], limit, to_api, lambda k: (k.created_at, k.secret_key_id))


async def delete_secret_key(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal,
                            secret_key_id: str) -> None:
    mid = caller.merchant_id
    active = await svc.store.list_secret_keys(mid)
    if not any(k.secret_key_id == secret_key_id for k in active):
        raise NotFound(f"no secret key {secret_key_id!r}")
    if len(active) == 1:
        raise InvalidRequest("secret_key_id: this is the merchant's last active secret key; create another first")
    if not await svc.store.revoke_secret_key(mid, secret_key_id):
        raise NotFound(f"no secret key {secret_key_id!r}")
    reply(proto, 200, {"id": secret_key_id, "deleted": True})
