"""`/v1/meters`: how a merchant prices its customers' usage, in Lava's Meter shape.

A meter has volume tiers: `[{start, rate}]`, sorted by `start`, the first starting at 0. With `rate_type` fixed,
`rate` is USD per unit of `tier_type` (1M tokens, 1M characters, a minute, a request); with percentage it is a
percent of the provider cost. `start` and `rate` arrive as strings (as the SDK types them) or numbers.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from ..billing import accounts
from ..billing.accounts import Tier
from ..errors import InvalidRequest, NotFound
from .common import decode_cursor, json_body, limit_param, query, reply
from .customers import list_reply, text

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services
    from ..store.db import Database

RATE_TYPES = ("fixed", "percentage")
TIER_TYPES = ("tokens_1m", "characters_1m", "minutes", "requests")
MAX_TIERS = 100
_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,199}")
_START = re.compile(r"[0-9]{1,15}")


def to_api(m: accounts.Meter) -> dict[str, Any]:
    return {
        "meter_id": m.meter_id,
        "meter_slug": m.meter_slug,
        "name": m.name,
        "rate_type": m.rate_type,
        "tiers": [{"start": t.start, "rate": format(t.rate, "f"), "type": m.tier_type} for t in m.tiers],
        "created_at": m.created_at,
        "tier_type": m.tier_type,  # ours, beside Lava's per-tier `type`
    }


def slug_of(name: str) -> str:
    """A slug from a name: lowercase, every run of other characters one "-", no "-" at either end."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:200].rstrip("-")


def choice(body: dict[str, Any], name: str, options: tuple[str, ...]) -> str:
    value = body.get(name)
    if not isinstance(value, str) or value not in options:
        raise InvalidRequest(f"{name}: required, one of {', '.join(options)}")
    return value


def _start(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15:
        return value
    if isinstance(value, str) and _START.fullmatch(value.strip()):
        return int(value)
    raise InvalidRequest(f"{where}.start: must be a whole number from 0, as a string or number")


def rate_of(value: object, name: str) -> Decimal:
    """A tier rate: a non-negative decimal of at most 12 decimal places, as a string or number."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            rate = Decimal(str(value).strip())
        except InvalidOperation:
            rate = None
        exponent = rate.as_tuple().exponent if rate is not None else 0  # a letter only for NaN and infinities
        if rate is not None and rate.is_finite() and 0 <= rate < 10**9 and isinstance(exponent, int) \
                and -exponent <= 12:
            return rate.copy_abs()  # "-0" is 0
    raise InvalidRequest(f"{name}: must be a non-negative decimal number with at most 12 decimal places")


def tiers_of(value: object, name: str = "tiers") -> list[Tier]:
    """Validated tiers, sorted by start; the first must start at 0 and no two may share a start."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_TIERS:
        raise InvalidRequest(f"{name}: required, a list of 1 to {MAX_TIERS} tiers {{start, rate}}")
    tiers = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where}: must be an object {{start, rate}}")
        tiers.append(Tier(_start(item.get("start"), where), rate_of(item.get("rate"), f"{where}.rate")))
    tiers.sort(key=lambda t: t.start)
    if tiers[0].start != 0:
        raise InvalidRequest(f"{name}: the first tier must start at 0")
    if len({t.start for t in tiers}) != len(tiers):
        raise InvalidRequest(f"{name}: two tiers have the same start")
    return tiers


def meter_slug(body: dict[str, Any], name: str) -> str:
    """The body's meter_slug, or one derived from the meter's name."""
    given = body.get("meter_slug")
    if given is None:
        slug = slug_of(name)
        if not slug:
            raise InvalidRequest("meter_slug: cannot be derived from name (no letters or digits); give one")
        return slug
    return slug_checked(given, "meter_slug")


def slug_checked(value: object, field: str) -> str:
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise InvalidRequest(f"{field}: 1 to 200 characters of a-z, 0-9, '.', '_' and '-', starting with a "
                             "letter or digit")
    return value


async def create(db: Database, mid: str, name: str, slug: str, rate_type: str, tier_type: str, tiers: list[Tier],
                 slug_field: str = "meter_slug") -> accounts.Meter:
    """Create a meter or raise InvalidRequest when the slug is taken (shared with the CLI)."""
    m = await accounts.create_meter(db, mid, slug, name, rate_type, tier_type, tiers)
    if m is None:
        raise InvalidRequest(f"{slug_field}: {slug!r} is already used by another meter of this merchant")
    return m


async def create_meter(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    body = await json_body(proto, headers=scope.headers)
    name = text(body, "name", required=True)
    slug = meter_slug(body, name)
    rate_type = choice(body, "rate_type", RATE_TYPES)
    tier_type = choice(body, "tier_type", TIER_TYPES)
    tiers = tiers_of(body.get("tiers"))
    reply(proto, 201, to_api(await create(svc.store.db, mid, name, slug, rate_type, tier_type, tiers)))


async def list_meters(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    q = query(scope)
    limit = limit_param(q)
    items = await accounts.list_meters(svc.store.db, mid, decode_cursor(q.get("cursor")), limit)
    list_reply(proto, items, limit, to_api, lambda m: (m.created_at, m.meter_id))


async def get_meter(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal, meter_id: str) -> None:
    mid = caller.merchant_id
    m = await accounts.meter(svc.store.db, mid, meter_id)
    if m is None:
        raise NotFound(f"no meter {meter_id!r}")
    reply(proto, 200, to_api(m))


async def update_meter(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal, meter_id: str) -> None:
    """PATCH {name?, tiers?}: the slug, rate_type and tier_type of a meter never change."""
    mid = caller.merchant_id
    body = await json_body(proto, headers=scope.headers)
    name = text(body, "name")
    tiers = tiers_of(body["tiers"]) if body.get("tiers") is not None else None
    m = await accounts.update_meter(svc.store.db, mid, meter_id, name, tiers)
    if m is None:
        raise NotFound(f"no meter {meter_id!r}")
    reply(proto, 200, to_api(m))


async def delete_meter(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal, meter_id: str) -> None:
    mid = caller.merchant_id
    if not await accounts.delete_meter(svc.store.db, mid, meter_id):
        raise NotFound(f"no meter {meter_id!r}")
    reply(proto, 200, {"id": meter_id, "deleted": True})
