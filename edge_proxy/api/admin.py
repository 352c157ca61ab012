"""`/admin/...` (ours): the operator's API, guarded by `Authorization: Bearer <EDGE_PROXY_ADMIN_TOKEN>` (the router
checks it: access.py). With no admin token set, the admin API is off: every call is a 403 that says how to turn it
on."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..money import usd
from .common import json_body, reply
from .customers import money, text

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..services import Services


async def create_merchant(svc: Services, scope: Scope, proto: HTTPProtocol, caller: None) -> None:
    """`POST /admin/merchants {name, balance?}`: a merchant and its first secret key (shown once)."""
    body = await json_body(proto, headers=scope.headers)
    name = text(body, "name", required=True)
    nanos = money(body["balance"], "balance") if body.get("balance") is not None else 0
    merchant, secret = await svc.store.create_merchant(name, nanos)
    reply(proto, 201, {"merchant_id": merchant.merchant_id, "secret_key": secret, "name": merchant.name,
                       "balance": usd(merchant.balance_nanos)})
