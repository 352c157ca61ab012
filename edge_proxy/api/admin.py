"""`/admin/...` (ours): the operator's API, guarded by `Authorization: Bearer <EDGE_PROXY_ADMIN_TOKEN>`.

With no admin token set, the admin API is off: every call is a 403 that says how to turn it on.
"""
from __future__ import annotations

import hmac

from ..errors import Forbidden, InvalidToken
from ..money import usd
from .common import json_body, reply
from .customers import money, text


def require_admin(gw, scope) -> None:
    token = gw.settings.admin_token
    if not token:
        raise Forbidden("the admin API is disabled: set EDGE_PROXY_ADMIN_TOKEN to enable it")
    got = scope.headers.get("authorization") or ""
    scheme, _, value = got.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise InvalidToken("admin API: send Authorization: Bearer <EDGE_PROXY_ADMIN_TOKEN>")


async def create_merchant(gw, scope, proto) -> None:
    """`POST /admin/merchants {name, balance?}`: a merchant and its first secret key (shown once)."""
    require_admin(gw, scope)
    body = await json_body(proto)
    name = text(body, "name", required=True)
    nanos = money(body["balance"], "balance") if body.get("balance") is not None else 0
    merchant, secret = await gw.store.create_merchant(name, nanos)
    reply(proto, 201, {"merchant_id": merchant.merchant_id, "secret_key": secret, "name": merchant.name,
                       "balance": usd(merchant.balance_nanos)})
