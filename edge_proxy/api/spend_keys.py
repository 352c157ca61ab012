"""`/v1/spend_keys`: create, list, read, update (PUT, partial as the SDK sends it), revoke and rotate spend keys.

The key itself (`ep_spk_...`) is shown once, on create and rotate; only its hash is stored. Enforcing a key's
policy is the request path's job (billing/spend_key_store.find_by_hash); this module only manages it.

`current_spend` / `current_requests` are the spend and admitted requests in the current cycle of the key's spend
and request limits (billing/spend_counters.py); a key without that limit shows its total.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..billing import spend_counters
from ..billing import spend_key_store as store
from ..billing.spend_key_store import CYCLES, REQUEST_SHAPES, STATUSES, RateLimit, RequestLimit, SpendKey, SpendLimit
from ..errors import InvalidRequest, NotFound
from ..money import usd
from .common import decode_cursor, json_body, limit_param, query, reply
from .customers import list_reply, money, text

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services

MAX_LIST = 200


def to_api(k: SpendKey, key: str | None = None, current: tuple[int, int] | None = None) -> dict[str, Any]:
    spend, requests = current or (k.total_spend_nanos, k.total_requests)
    out: dict[str, Any] = {
        "spend_key_id": k.spend_key_id,
        "key_preview": k.key_preview,
        "name": k.name,
        "status": k.status,
        "request_shape": k.request_shape,
        "wallet_id": k.merchant_id,
        "allowed_models": k.allowed_models,
        "allowed_providers": k.allowed_providers,
        "spend_limit": None if k.spend_limit is None else {
            "amount": usd(k.spend_limit.amount_nanos), "cycle": k.spend_limit.cycle},
        "current_spend": usd(spend),
        "total_spend": usd(k.total_spend_nanos),
        "request_limit": None if k.request_limit is None else {
            "count": k.request_limit.count, "cycle": k.request_limit.cycle},
        "current_requests": requests,
        "total_requests": k.total_requests,
        "rate_limit": None if k.rate_limit is None else {"rpm": k.rate_limit.rpm, "burst": k.rate_limit.burst},
        "expires_at": k.expires_at,
        "last_used_at": k.last_used_at,
        "created_at": k.created_at,
    }
    if key is not None:
        out["key"] = key
    return out


# -- validation --------------------------------------------------------------------------------------------------
def _one_of(value: object, name: str, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise InvalidRequest(f"{name}: must be one of {', '.join(options)}")
    return value


def _count(value: object, name: str, least: int = 1, most: int = 10**12) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise InvalidRequest(f"{name}: must be a whole number from {least} to {most}")
    return value


def _names(value: object, name: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_LIST or not all(
            isinstance(v, str) and 1 <= len(v) <= 200 for v in value):
        raise InvalidRequest(f"{name}: must be null or a list of at most {MAX_LIST} strings of 1 to 200 characters")
    return list(dict.fromkeys(value))


def _object(value: object, name: str, fields: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name}: must be null or an object {{{fields}}}")
    return value


def _expires_at(value: object) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidRequest("expires_at: must be null or an ISO 8601 date-time string")
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest("expires_at: must be null or an ISO 8601 date-time string") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    when = when.astimezone(dt.UTC)
    if when <= dt.datetime.now(dt.UTC):
        raise InvalidRequest("expires_at: must be in the future")
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


_CHECKS: dict[str, Callable[[Any], object]] = {
    "status": lambda v: _one_of(v, "status", STATUSES),
    "request_shape": lambda v: _one_of(v, "request_shape", REQUEST_SHAPES),
    "allowed_models": lambda v: _names(v, "allowed_models"),
    "allowed_providers": lambda v: _names(v, "allowed_providers"),
    "spend_limit": lambda v: SpendLimit(
        money(_object(v, "spend_limit", "amount, cycle").get("amount"), "spend_limit.amount"),
        _one_of(v.get("cycle"), "spend_limit.cycle", CYCLES)),
    "request_limit": lambda v: RequestLimit(
        _count(_object(v, "request_limit", "count, cycle").get("count"), "request_limit.count"),
        _one_of(v.get("cycle"), "request_limit.cycle", CYCLES)),
    "rate_limit": lambda v: RateLimit(
        _count(_object(v, "rate_limit", "rpm, burst?").get("rpm"), "rate_limit.rpm", 1, 1_000_000),
        None if v.get("burst") is None else _count(v["burst"], "rate_limit.burst", 1, 1_000_000)),
    "expires_at": _expires_at,
}
_NOT_NULL = ("status", "request_shape")  # these have a value always; null means "leave as is"


def policy(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The policy fields present in a body, validated; null clears a restriction."""
    out: dict[str, Any] = {}
    name = text(body, "name", required=creating)
    if name is not None:
        out["name"] = name
    for field, check in _CHECKS.items():
        if field not in body or (body[field] is None and field in _NOT_NULL):
            continue
        out[field] = None if body[field] is None else check(body[field])
    return out


# -- handlers ----------------------------------------------------------------------------------------------------
async def _shaped(svc: Services, keys: list[SpendKey]) -> Callable[..., dict[str, Any]]:
    """to_api with each key's current-cycle counters: shape(key) or shape(key, secret)."""
    current = await spend_counters.current(svc.store.db, svc.redis, keys)

    def shape(k: SpendKey, secret: str | None = None) -> dict[str, Any]:
        return to_api(k, secret, current.get(k.spend_key_id))
    return shape


async def create_spend_key(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    fields = policy(await json_body(proto, headers=scope.headers), creating=True)
    key, secret = await store.create(svc.store.db, mid, fields)
    reply(proto, 201, to_api(key, secret))  # a new key's counters are its totals: zero


async def list_spend_keys(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    q = query(scope)
    limit = limit_param(q)
    items = await store.list_keys(svc.store.db, mid, decode_cursor(q.get("cursor")), limit)
    list_reply(proto, items, limit, await _shaped(svc, items[:limit]), lambda k: (k.created_at, k.spend_key_id))


async def get_spend_key(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal, spend_key_id: str) -> None:
    mid = caller.merchant_id
    key = await store.get(svc.store.db, mid, spend_key_id)
    if key is None:
        raise NotFound(f"no spend key {spend_key_id!r}")
    reply(proto, 200, (await _shaped(svc, [key]))(key))


async def update_spend_key(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal,
                           spend_key_id: str) -> None:
    mid = caller.merchant_id
    fields = policy(await json_body(proto, headers=scope.headers), creating=False)
    key = await store.update(svc.store.db, mid, spend_key_id, fields)
    if key is None:
        raise NotFound(f"no spend key {spend_key_id!r}")
    reply(proto, 200, (await _shaped(svc, [key]))(key))


async def revoke_spend_key(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal,
                           spend_key_id: str) -> None:
    mid = caller.merchant_id
    if not await store.revoke(svc.store.db, mid, spend_key_id):
        raise NotFound(f"no spend key {spend_key_id!r}")
    reply(proto, 200, {"success": True})


async def rotate_spend_key(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal,
                           spend_key_id: str) -> None:
    mid = caller.merchant_id
    rotated = await store.rotate(svc.store.db, mid, spend_key_id)
    if rotated is None:
        raise NotFound(f"no spend key {spend_key_id!r}")
    reply(proto, 200, (await _shaped(svc, [rotated[0]]))(*rotated))
