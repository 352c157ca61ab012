"""`/v1/wallet` (ours): the merchant's own balance, which pays for requests billed to the merchant."""
from __future__ import annotations

from ..billing.payer import Payer
from ..money import usd
from .common import json_body, merchant_id, reply
from .customers import money


async def get_wallet(gw, scope, proto) -> None:
    mid = await merchant_id(gw, scope)
    reply(proto, 200, {"merchant_id": mid, "balance": usd(await gw.balances.balance(Payer("merchant", mid)))})


async def credit_wallet(gw, scope, proto) -> None:
    """`POST wallet/credit {"amount": "USD"}`: add funds; answers the wallet with its new balance."""
    mid = await merchant_id(gw, scope)
    nanos = money((await json_body(proto)).get("amount"), "amount", positive=True)
    balance = await gw.balances.credit(mid, Payer("merchant", mid), nanos, "api")
    reply(proto, 200, {"merchant_id": mid, "balance": usd(balance)})
