"""`/v1/wallet` (ours): the merchant's own balance, which pays for requests billed to the merchant."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..billing.payer import Payer
from ..money import usd
from .common import json_body, reply
from .customers import money

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services


async def get_wallet(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    reply(proto, 200, {"merchant_id": mid, "balance": usd(await svc.balances.balance(Payer("merchant", mid)))})


async def credit_wallet(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    """`POST wallet/credit {"amount": "USD"}`: add funds; answers the wallet with its new balance."""
    mid = caller.merchant_id
    nanos = money((await json_body(proto, headers=scope.headers)).get("amount"), "amount", positive=True)
    balance = await svc.balances.credit(mid, Payer("merchant", mid), nanos, "api")
    reply(proto, 200, {"merchant_id": mid, "balance": usd(balance)})
