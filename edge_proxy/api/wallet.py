"""`/v1/wallet` (ours): the merchant's own balance, which pays for its requests and funds its customers, and its
history of transfers. Funding a wallet is the operator's (`POST /admin/merchants/{merchant_id}/credit`, or
`edge-proxy merchants credit` on the host): money comes in only from outside."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..billing import ledger
from ..billing.payer import Payer
from ..errors import Forbidden
from ..money import usd
from .common import decode_cursor, encode_cursor, limit_param, query, reply

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services


async def get_wallet(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    reply(proto, 200, {"merchant_id": mid, "balance": usd(await svc.balances.balance(Payer("merchant", mid)))})


async def credit_wallet(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    """`POST /v1/wallet/credit` was a merchant crediting its own wallet: money from nowhere. It stays only to say so."""
    raise Forbidden("a merchant cannot fund its own wallet: funding comes from the gateway's operator "
                    "(POST /admin/merchants/{merchant_id}/credit with the admin token, or `edge-proxy merchants "
                    "credit` on the host)")


def transfer_to_api(row: tuple[Any, ...]) -> dict[str, Any]:
    transfer_id, debit, credit, amount, kind, request_id, created_at = row
    return {"transfer_id": transfer_id, "from": debit, "to": credit, "amount": usd(int(amount)), "kind": kind,
            "request_id": request_id, "created_at": created_at}


async def list_transfers(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    """`GET /v1/wallet/transfers?limit=&cursor=`: the wallet's transfers, newest first."""
    q = query(scope)
    limit = limit_param(q)
    rows = await ledger.history(svc.store.db, Payer("merchant", caller.merchant_id), decode_cursor(q.get("cursor")),
                                limit)
    more = len(rows) > limit
    rows = rows[:limit]
    reply(proto, 200, {"data": [transfer_to_api(r) for r in rows], "has_more": more,
                       "next_cursor": encode_cursor(rows[-1][6], rows[-1][0]) if more and rows else None})
