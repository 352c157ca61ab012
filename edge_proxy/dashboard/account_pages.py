"""`/dashboard/customers` and `/dashboard/wallet`: who pays, how much each has, and the forms that add money.

Reads and writes go through the functions the REST handlers call (billing.accounts, api.customers'
validators and `credit_customer`, Balances), so a rule changed there holds here too.
"""
from __future__ import annotations

from typing import Any

from ..api import customers as customers_api
from ..api import wallet as wallet_api
from ..api.common import decode_cursor, encode_cursor
from ..billing import accounts, ledger
from ..billing.balances import Balances
from ..billing.payer import Payer
from ..errors import Conflict, InsufficientBalance, InvalidRequest, NotFound
from .web import PREFIX, Request, redirect, render, send_html

PAGE = 25
LOW_BALANCE_NANOS = 1_000_000_000  # a customer without an autopay threshold is "low" under $1


def is_low(c: accounts.Customer) -> bool:
    threshold = c.autopay_threshold_nanos if c.autopay_threshold_nanos is not None else LOW_BALANCE_NANOS
    return c.balance_nanos < threshold


def _row(c: accounts.Customer) -> dict[str, Any]:
    return {**customers_api.to_api(c), "balance_nanos": c.balance_nanos, "low": is_low(c)}


async def customer_list(req: Request, error: str | None = None, status: int = 200,
                        form: dict[str, str] | None = None) -> None:
    q = req.query
    items = await accounts.list_customers(req.svc.store.db, req.merchant_id, decode_cursor(q.get("cursor")), PAGE)
    more = len(items) > PAGE
    items = items[:PAGE]
    send_html(req.proto, status, render(
        "customers.html", req, customers=[_row(c) for c in items], error=error, form=form or {},
        next_cursor=encode_cursor(items[-1].created_at, items[-1].customer_id) if more else None,
        paged=bool(q.get("cursor"))))


def _create_body(form: dict[str, str]) -> dict[str, Any]:
    """The create form as the REST body: empty fields are absent; autopay needs both of its fields."""
    body: dict[str, Any] = {k: form[k].strip() for k in ("name", "email", "reference_id") if form.get(k, "").strip()}
    if form.get("balance", "").strip():
        body["balance"] = form["balance"].strip()
    threshold, amount = form.get("autopay_threshold", "").strip(), form.get("autopay_amount", "").strip()
    if threshold or amount:
        body["autopay"] = {"threshold": threshold or None, "amount": amount or None}
    return body


async def customer_create(req: Request) -> None:
    form = await req.check_csrf()
    svc, mid = req.svc, req.merchant_id
    body = _create_body(form)
    try:
        fields = customers_api.customer_fields(body)
        balance = customers_api.money(body["balance"], "balance") if "balance" in body else 0
    except InvalidRequest as exc:
        await customer_list(req, exc.message, 400, form)
        return
    c = await accounts.create_customer(svc.store.db, mid, fields)
    if balance:
        try:  # the opening balance comes from the wallet, as on `POST /v1/customers`
            await customers_api.credit_customer(svc.balances, svc.store.db, mid, c.customer_id, balance,
                                                form.get("idempotency_key") or None)
        except (InsufficientBalance, Conflict) as exc:
            await accounts.delete_customer(svc.store.db, mid, c.customer_id)
            await customer_list(req, exc.message, exc.status, form)
            return
    redirect(req.proto, f"{PREFIX}/customers/{c.customer_id}")


async def _customer(req: Request, customer_id: str) -> accounts.Customer:
    c = await accounts.customer(req.svc.store.db, req.merchant_id, customer_id)
    if c is None:  # another merchant's customer reads exactly like one that does not exist
        raise NotFound(f"no customer {customer_id!r}")
    return c


async def customer_detail(req: Request, customer_id: str, error: str | None = None, status: int = 200) -> None:
    c = await _customer(req, customer_id)
    send_html(req.proto, status, render("customer.html", req, c=_row(c), error=error,
                                        credited=req.query.get("credited") == "1"))


async def customer_credit(req: Request, customer_id: str) -> None:
    """The credit form: the same call as `POST /v1/customers/{id}/credit`."""
    form = await req.check_csrf()
    await _customer(req, customer_id)  # another merchant's customer is a 404, never a credit
    try:
        nanos = customers_api.money(form.get("amount", "").strip() or None, "amount", positive=True)
    except InvalidRequest as exc:
        await customer_detail(req, customer_id, exc.message, 400)
        return
    svc = req.svc
    try:  # a transfer from the wallet; the form's own key makes a double submit credit once
        await customers_api.credit_customer(svc.balances, svc.store.db, req.merchant_id, customer_id, nanos,
                                            form.get("idempotency_key") or None)
    except (InsufficientBalance, Conflict) as exc:
        await customer_detail(req, customer_id, exc.message, exc.status)
        return
    redirect(req.proto, f"{PREFIX}/customers/{customer_id}?credited=1")


async def wallet(req: Request) -> None:
    """The merchant's balance and its transfers, newest first (as `GET /v1/wallet` and `/v1/wallet/transfers`)."""
    svc, mid, q = req.svc, req.merchant_id, req.query
    balances: Balances = svc.balances
    me = Payer("merchant", mid)
    balance = await balances.balance(me)
    rows = await ledger.history(svc.store.db, me, decode_cursor(q.get("cursor")), PAGE)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    items = [{**wallet_api.transfer_to_api(r), "incoming": r[2] == ledger.account_id(me), "amount_nanos": int(r[3])}
             for r in rows]
    send_html(req.proto, 200, render(
        "wallet.html", req, balance=balance, items=items, paged=bool(q.get("cursor")),
        next_cursor=encode_cursor(rows[-1][6], rows[-1][0]) if more else None))
