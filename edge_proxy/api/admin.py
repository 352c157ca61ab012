"""`/admin/...` (ours): the operator's API, guarded by `Authorization: Bearer <EDGE_PROXY_ADMIN_TOKEN>` (the router
checks it: access.py). With no admin token set, the admin API is off: every call is a 403 that says how to turn it
on."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..billing import ledger
from ..billing.balances import UnknownPayer, transfer_id
from ..billing.reconcile import verify
from ..errors import InvalidRequest, NotFound
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


async def credit_merchant(svc: Services, scope: Scope, proto: HTTPProtocol, caller: None, merchant_id: str) -> None:
    """`POST /admin/merchants/{merchant_id}/credit {amount}`: fund a merchant's wallet (money from outside: the only
    way it comes in). An `Idempotency-Key` header makes it happen once however often it is sent."""
    body = await json_body(proto, headers=scope.headers)
    nanos = money(body.get("amount"), "amount", positive=True)
    try:
        balance = await svc.balances.fund(merchant_id, nanos, transfer_id(f"funding:{merchant_id}",
                                                                         scope.headers.get("idempotency-key")))
    except UnknownPayer:
        raise NotFound(f"no merchant {merchant_id!r}") from None
    reply(proto, 200, {"merchant_id": merchant_id, "balance": usd(balance)})


async def create_transfer(svc: Services, scope: Scope, proto: HTTPProtocol, caller: None) -> None:
    """`POST /admin/transfers {transfer_id, from, to, amount, kind}`: the operator's refund or correction between
    two accounts (`merchant:<id>`, `customer:<id>`, `operator:revenue`), made once per `transfer_id`; never past a
    balance (402)."""
    body = await json_body(proto, headers=scope.headers)
    tid = text(body, "transfer_id", required=True)
    kind = body.get("kind")
    if kind not in ("refund", "correction"):
        raise InvalidRequest("kind: refund or correction")
    try:
        debit, credit = ledger.parse_account(str(body.get("from"))), ledger.parse_account(str(body.get("to")))
    except ValueError as exc:
        raise InvalidRequest(f"from/to: {exc} (merchant:<id>, customer:<id> or operator:revenue)") from None
    # the operator's only account here is revenue: any other `operator:<name>` is no account of the ledger, and a
    # transfer from or to it made or lost money (funding goes through the merchant's credit route)
    if any(a.kind == "operator" and a != ledger.REVENUE for a in (debit, credit)) or debit == credit:
        raise InvalidRequest("from/to: two different accounts of merchant:<id>, customer:<id> and operator:revenue; "
                             "funding goes through /admin/merchants/{id}/credit")
    nanos = money(body.get("amount"), "amount", positive=True)
    try:
        made = await svc.balances.transfer(ledger.Transfer(f"admin:{tid}", debit, credit, nanos, kind))
    except UnknownPayer as exc:
        raise NotFound(f"no account {ledger.account_id(exc.args[0])}") from None
    reply(proto, 201 if made else 200, {"transfer_id": f"admin:{tid}", "from": ledger.account_id(debit),
                                        "to": ledger.account_id(credit), "amount": usd(nanos), "kind": kind,
                                        "created": made})


async def verify_ledger(svc: Services, scope: Scope, proto: HTTPProtocol, caller: None) -> None:
    """`GET /admin/ledger`: what `edge-proxy ledger verify` prints, with the problems it found."""
    reply(proto, 200, await verify(svc.store.db))
