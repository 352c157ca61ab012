"""`/dashboard/meters`, `/spend-keys`, `/secret-keys` and `/webhooks`: what a merchant has configured.

Spend keys and secret keys are created, rotated and revoked here through the functions their REST handlers call;
a new key is shown once, on the page that answers the form, and never again. Revoking a secret key also ends the
dashboard sessions opened with it (the session check would refuse them at their next request anyway).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dataclasses
import importlib
import importlib.util

import msgspec

from ..api import meters as meters_api
from ..api import secret_keys as secret_keys_api
from ..api import spend_keys as spend_keys_api
from ..api import webhooks as webhooks_api
from ..api.common import decode_cursor, encode_cursor
from ..api.customers import text
from ..billing import accounts, spend_counters, spend_key_store
from ..errors import InvalidRequest, NotFound
from .sign_in import sessions_of
from .web import PREFIX, Request, redirect, render, send_html

PAGE = 25
DELIVERIES = 10  # recent deliveries shown per webhook
# where the webhook-deliveries work puts `recent_deliveries(db, merchant_id, webhook_id, limit)`; the section is
# shown only when one of these modules has it
DELIVERY_MODULES = ("edge_proxy.billing.webhook_deliveries", "edge_proxy.billing.webhooks",
                    "edge_proxy.webhooks.deliveries", "edge_proxy.webhooks")
_HIDDEN_DELIVERY_FIELDS = {"merchant_id", "body", "payload", "secret", "webhook_secret", "claimed_until"}


def _page(items: list[Any], limit: int, cursor_of: Callable[[Any], tuple[str, ...]]) -> tuple[list[Any], str | None]:
    more = len(items) > limit
    items = items[:limit]
    return items, encode_cursor(*cursor_of(items[-1])) if more else None


# -- meters ------------------------------------------------------------------------------------------------------
async def meter_list(req: Request) -> None:
    q = req.query
    items = await accounts.list_meters(req.svc.store.db, req.merchant_id, decode_cursor(q.get("cursor")), PAGE)
    items, next_cursor = _page(items, PAGE, lambda m: (m.created_at, m.meter_id))
    send_html(req.proto, 200, render("meters.html", req, meters=[meters_api.to_api(m) for m in items],
                                     next_cursor=next_cursor, paged=bool(q.get("cursor"))))


# -- spend keys --------------------------------------------------------------------------------------------------
def _names(raw: str) -> list[str] | None:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return names or None


def spend_key_body(form: dict[str, str]) -> dict[str, Any]:
    """The create form as the REST body (`POST /v1/spend_keys`): empty fields are absent."""
    def get(name: str) -> str:
        return form.get(name, "").strip()
    body: dict[str, Any] = {"name": get("name") or None}
    for field in ("allowed_models", "allowed_providers"):
        if get(field):
            body[field] = _names(get(field))
    if get("spend_limit"):
        body["spend_limit"] = {"amount": get("spend_limit"), "cycle": get("spend_limit_cycle") or "monthly"}
    if get("request_limit"):
        count = get("request_limit")
        body["request_limit"] = {"count": _whole(count),
                                 "cycle": get("request_limit_cycle") or "monthly"}
    if get("rate_limit"):
        rpm = get("rate_limit")
        body["rate_limit"] = {"rpm": _whole(rpm)}
    return body


def _whole(raw: str) -> int | str:
    """A form's whole number as the REST body's int; anything else as typed, for the API to refuse by name ("²" is
    a digit to `str.isdigit` that `int` refuses)."""
    return int(raw) if raw.isascii() and raw.isdigit() else raw


async def spend_key_list(req: Request, new_key: str | None = None, error: str | None = None,
                         status: int = 200) -> None:
    svc, q = req.svc, req.query
    items = await spend_key_store.list_keys(svc.store.db, req.merchant_id, decode_cursor(q.get("cursor")), PAGE)
    items, next_cursor = _page(items, PAGE, lambda k: (k.created_at, k.spend_key_id))
    current = await spend_counters.current(svc.store.db, svc.spend_keys.redis, items)
    keys = [spend_keys_api.to_api(k, None, current.get(k.spend_key_id)) for k in items]
    send_html(req.proto, status, render("spend_keys.html", req, keys=keys, new_key=new_key, error=error,
                                        next_cursor=next_cursor, paged=bool(q.get("cursor"))))


async def spend_key_create(req: Request) -> None:
    form = await req.check_csrf()
    try:
        fields = spend_keys_api.policy(spend_key_body(form), creating=True)
    except InvalidRequest as exc:
        await spend_key_list(req, error=exc.message, status=400)
        return
    _, secret = await spend_key_store.create(req.svc.store.db, req.merchant_id, fields)
    await spend_key_list(req, new_key=secret)


async def spend_key_revoke(req: Request, spend_key_id: str) -> None:
    await req.check_csrf()
    if not await spend_key_store.revoke(req.svc.store.db, req.merchant_id, spend_key_id):
        raise NotFound(f"no spend key {spend_key_id!r}")
    redirect(req.proto, PREFIX + "/spend-keys")


async def spend_key_rotate(req: Request, spend_key_id: str) -> None:
    await req.check_csrf()
    rotated = await spend_key_store.rotate(req.svc.store.db, req.merchant_id, spend_key_id)
    if rotated is None:
        raise NotFound(f"no spend key {spend_key_id!r}")
    await spend_key_list(req, new_key=rotated[1])


# -- secret keys -------------------------------------------------------------------------------------------------
async def secret_key_list(req: Request, new_key: str | None = None, error: str | None = None,
                          status: int = 200) -> None:
    """Active keys, newest first; the store returns them all (a merchant has few), as `GET /v1/secret_keys`."""
    keys = sorted(await req.svc.store.list_secret_keys(req.merchant_id),
                  key=lambda k: (k.created_at, k.secret_key_id), reverse=True)
    assert req.session is not None
    send_html(req.proto, status, render("secret_keys.html", req, keys=[secret_keys_api.to_api(k) for k in keys],
                                        current=req.session.secret_key_id, new_key=new_key, error=error))


async def secret_key_create(req: Request) -> None:
    form = await req.check_csrf()
    try:
        name = text({"name": form.get("name", "").strip() or None}, "name", required=True)
    except InvalidRequest as exc:
        await secret_key_list(req, error=exc.message, status=400)
        return
    assert name is not None
    _, secret = await req.svc.store.create_secret_key(req.merchant_id, name)
    await secret_key_list(req, new_key=secret)


async def secret_key_revoke(req: Request, secret_key_id: str) -> None:
    """As `DELETE /v1/secret_keys/{id}`: never the merchant's last active key."""
    await req.check_csrf()
    store, mid = req.svc.store, req.merchant_id
    active = await store.list_secret_keys(mid)
    if not any(k.secret_key_id == secret_key_id for k in active):
        raise NotFound(f"no secret key {secret_key_id!r}")
    if len(active) == 1:
        await secret_key_list(req, error="this is your last active secret key: create another first", status=400)
        return
    if not await store.revoke_secret_key(mid, secret_key_id):
        raise NotFound(f"no secret key {secret_key_id!r}")
    await sessions_of(req.svc).end_for_key(secret_key_id)
    assert req.session is not None
    redirect(req.proto, PREFIX + ("/login" if secret_key_id == req.session.secret_key_id else "/secret-keys"))


# -- webhooks ----------------------------------------------------------------------------------------------------
def deliveries_reader() -> Callable[..., Any] | None:
    """`recent_deliveries(db, merchant_id, webhook_id, limit)` where the deliveries table is, or None without it."""
    for name in DELIVERY_MODULES:
        parent = name.rsplit(".", 1)[0]
        if parent != "edge_proxy" and importlib.util.find_spec(parent) is None:
            continue
        if importlib.util.find_spec(name) is None:
            continue
        reader: Callable[..., Any] | None = getattr(importlib.import_module(name), "recent_deliveries", None)
        if reader is not None:
            return reader
    return None


def delivery_fields(item: Any) -> dict[str, Any]:
    """One delivery as a flat dict, whatever record type the deliveries module returns; never a body or secret."""
    if isinstance(item, msgspec.Struct):
        data = msgspec.structs.asdict(item)
    elif dataclasses.is_dataclass(item) and not isinstance(item, type):
        data = dataclasses.asdict(item)
    elif hasattr(item, "_asdict"):
        data = item._asdict()
    elif isinstance(item, dict):
        data = dict(item)
    else:
        data = {"delivery": item}
    return {k: v for k, v in data.items() if k not in _HIDDEN_DELIVERY_FIELDS}


async def webhook_list(req: Request) -> None:
    svc, q, mid = req.svc, req.query, req.merchant_id
    items = await accounts.list_webhooks(svc.store.db, mid, decode_cursor(q.get("cursor")), PAGE)
    items, next_cursor = _page(items, PAGE, lambda w: (w.created_at, w.webhook_id))
    reader = deliveries_reader()
    hooks = []
    for w in items:
        deliveries = None
        if reader is not None:
            deliveries = [delivery_fields(d) for d in await reader(svc.store.db, mid, w.webhook_id, DELIVERIES)]
        hooks.append({**webhooks_api.to_api(w), "deliveries": deliveries})
    send_html(req.proto, 200, render("webhooks.html", req, hooks=hooks, deliveries_known=reader is not None,
                                     next_cursor=next_cursor, paged=bool(q.get("cursor"))))
