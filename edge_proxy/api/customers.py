"""`/v1/customers`: a merchant's customers in Lava's shape, with our `balance` and `autopay` beside it.

Also home of the small field validators every billing resource uses (meters, spend keys, webhooks, wallet, admin
and the CLI import them): each raises InvalidRequest with a one-line message that names the field.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from ..billing import accounts
from ..billing.ledger import MAX_AMOUNT_NANOS
from ..billing.balances import Balances, UnknownPayer, transfer_id
from ..errors import Conflict, InsufficientBalance, InvalidRequest, NotFound
from ..money import parse_usd, usd
from .common import decode_cursor, encode_cursor, json_body, limit_param, query, reply

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services
    from ..store.db import Database

MAX_TEXT = 200
MAX_NANOS = MAX_AMOUNT_NANOS  # one billion USD: any one amount (ledger.py keeps balances inside 64-bit integers)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_PHONE = re.compile(r"\+?[0-9 ().\-]{3,40}")


# -- field validators --------------------------------------------------------------------------------------------
@overload
def text(body: dict[str, Any], name: str, *, required: Literal[True], most: int = MAX_TEXT) -> str: ...
@overload
def text(body: dict[str, Any], name: str, *, required: bool = False, most: int = MAX_TEXT) -> str | None: ...
def text(body: dict[str, Any], name: str, *, required: bool = False, most: int = MAX_TEXT) -> str | None:
    """A string field of 1 to `most` characters; None when absent or null (unless required)."""
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{name}: required, a string of 1 to {most} characters")
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= most:
        raise InvalidRequest(f"{name}: must be a string of 1 to {most} characters")
    return value


def email(body: dict[str, Any], name: str = "email") -> str | None:
    value = text(body, name, most=254)
    if value is not None and not _EMAIL.fullmatch(value):
        raise InvalidRequest(f"{name}: not an email address")
    return value


def phone(body: dict[str, Any], name: str = "phone") -> str | None:
    value = text(body, name, most=40)
    if value is not None and not _PHONE.fullmatch(value):
        raise InvalidRequest(f"{name}: not a phone number (digits, spaces, + ( ) . -)")
    return value


def metadata(body: dict[str, Any], name: str = "metadata") -> dict[str, str] | None:
    """An object of at most 50 string values, keys of 1 to 40 characters, values of at most 500."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 50:
        raise InvalidRequest(f"{name}: must be an object of at most 50 string values")
    for key, item in value.items():
        if not 1 <= len(key) <= 40:
            raise InvalidRequest(f"{name}: keys must be 1 to 40 characters")
        if not isinstance(item, str) or len(item) > 500:
            raise InvalidRequest(f"{name}: the value of {key!r} must be a string of at most 500 characters")
    return value


def money(value: object, name: str, *, positive: bool = False) -> int:
    """A USD amount (decimal string or number) as nano-dollars."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidRequest(f"{name}: required, a decimal USD amount as a string")
    try:
        nanos = parse_usd(value, name)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if nanos > MAX_NANOS:
        raise InvalidRequest(f"{name}: at most 1000000000 USD")
    if positive and nanos <= 0:
        raise InvalidRequest(f"{name}: must be more than zero")
    return nanos


def autopay(value: object, name: str = "autopay") -> tuple[int | None, int | None]:
    """{threshold, amount} in USD (refill by `amount` when the balance falls below `threshold`), or null."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name}: must be an object {{threshold, amount}} or null")
    return (money(value.get("threshold"), f"{name}.threshold"),
            money(value.get("amount"), f"{name}.amount", positive=True))


_Item = TypeVar("_Item")


def list_reply(proto: HTTPProtocol, items: Sequence[_Item], limit: int, shape: Callable[[_Item], object],
               cursor_of: Callable[[_Item], tuple[str, ...]]) -> None:
    """Answer a page of up to limit + 1 items as {data, has_more, next_cursor}."""
    more = len(items) > limit
    items = items[:limit]
    reply(proto, 200, {"data": [shape(i) for i in items], "has_more": more,
                       "next_cursor": encode_cursor(*cursor_of(items[-1])) if more else None})


# -- shape -------------------------------------------------------------------------------------------------------
def to_api(c: accounts.Customer) -> dict[str, Any]:
    first, _, last = (c.name or "").partition(" ")
    return {
        "customer_id": c.customer_id,
        "reference_id": c.reference_id,
        "contact": {"name": c.name, "email": c.email, "phone": c.phone,
                    "first_name": first or None, "last_name": last or None},
        "subscription": None,
        "metadata": c.metadata,
        "created_at": c.created_at,
        # ours
        "balance": usd(c.balance_nanos),
        "autopay": None if c.autopay_amount_nanos is None else {
            "threshold": usd(c.autopay_threshold_nanos or 0), "amount": usd(c.autopay_amount_nanos)},
    }


def customer_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The CUSTOMER_FIELDS present in a create or update body, validated (null clears a field)."""
    checks: dict[str, Callable[[], object]] = {
        "reference_id": lambda: text(body, "reference_id"), "name": lambda: text(body, "name"),
        "email": lambda: email(body), "phone": lambda: phone(body), "metadata": lambda: metadata(body)}
    fields = {name: check() for name, check in checks.items() if name in body}
    if "autopay" in body:
        fields["autopay_threshold_nanos"], fields["autopay_amount_nanos"] = autopay(body["autopay"])
    return fields


async def credit_customer(balances: Balances, db: Database, mid: str, customer_id: str, nanos: int,
                          idempotency_key: str | None = None) -> accounts.Customer:
    """Move funds from the merchant's wallet to its customer (a transfer, once per idempotency key); 402 when the
    wallet cannot cover it."""
    await _get(db, mid, customer_id)  # another merchant's customer is a 404, never a credit
    try:
        await balances.credit_customer(mid, customer_id, nanos, transfer_id(f"credit:{mid}", idempotency_key))
    except UnknownPayer:
        raise NotFound(f"no customer {customer_id!r}") from None
    return await _get(db, mid, customer_id)


async def _get(db: Database, mid: str, customer_id: str) -> accounts.Customer:
    c = await accounts.customer(db, mid, customer_id)
    if c is None:
        raise NotFound(f"no customer {customer_id!r}")
    return c


# -- handlers ----------------------------------------------------------------------------------------------------
async def create_customer(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    body = await json_body(proto, headers=scope.headers)
    fields = customer_fields(body)
    balance = money(body["balance"], "balance") if body.get("balance") is not None else 0
    c = await accounts.create_customer(svc.store.db, mid, fields)
    if balance:
        try:  # the opening balance comes from the merchant's wallet
            c = await credit_customer(svc.balances, svc.store.db, mid, c.customer_id, balance,
                                      scope.headers.get("idempotency-key"))
        except (InsufficientBalance, Conflict):  # a wallet short of it, or an Idempotency-Key another credit used
            await accounts.delete_customer(svc.store.db, mid, c.customer_id)  # all or nothing
            raise
    reply(proto, 201, to_api(c))


async def list_customers(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    q = query(scope)
    limit = limit_param(q)
    items = await accounts.list_customers(svc.store.db, mid, decode_cursor(q.get("cursor")), limit)
    list_reply(proto, items, limit, to_api, lambda c: (c.created_at, c.customer_id))


async def get_customer(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal, customer_id: str) -> None:
    mid = caller.merchant_id
    reply(proto, 200, to_api(await _get(svc.store.db, mid, customer_id)))


async def update_customer(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal,
                          customer_id: str) -> None:
    mid = caller.merchant_id
    fields = customer_fields(await json_body(proto, headers=scope.headers))
    c = await accounts.update_customer(svc.store.db, mid, customer_id, fields)
    if c is None:
        raise NotFound(f"no customer {customer_id!r}")
    reply(proto, 200, to_api(c))


async def delete_customer(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal,
                          customer_id: str) -> None:
    mid = caller.merchant_id
    if not await accounts.delete_customer(svc.store.db, mid, customer_id):
        raise NotFound(f"no customer {customer_id!r}")
    reply(proto, 200, {"success": True})


async def get_subscription(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal,
                           customer_id: str) -> None:
    """Plans and subscriptions need a payment processor; until then no customer has one."""
    mid = caller.merchant_id
    await _get(svc.store.db, mid, customer_id)
    reply(proto, 200, {"subscription": None})


async def credit(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal, customer_id: str) -> None:
    """Ours: `POST customers/{id}/credit {"amount": "USD"}` moves funds from the merchant's wallet to the customer
    (402 when the wallet cannot cover it) and answers the customer. An `Idempotency-Key` header makes it happen
    once however often it is sent."""
    mid = caller.merchant_id
    body = await json_body(proto, headers=scope.headers)
    nanos = money(body.get("amount"), "amount", positive=True)
    reply(proto, 200, to_api(await credit_customer(svc.balances, svc.store.db, mid, customer_id, nanos,
                                                   scope.headers.get("idempotency-key"))))
