"""`/v1/usage`: per-day totals of requests, tokens, cost and charge, as the Lava SDK reads them.

Ours: `group_by=model|provider|customer` adds to each day its `groups`, the same totals per model, provider or
customer (`key` null for requests without one), from the same one scan of the log.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import datetime as dt

from ..errors import InvalidRequest
from ..log_sinks import Filters
from ..log_sinks.sql import USAGE_GROUPS
from ..money import usd
from .common import metadata_filters, query, reply

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services

MAX_DAYS = 366
# The days a range may start or end on: a range's end is queried as the next day's midnight, and a default start is
# up to MAX_DAYS before its end, so neither sum may pass the first or the last date Python holds.
FIRST_DAY, LAST_DAY = dt.date.min + dt.timedelta(days=MAX_DAYS), dt.date.max - dt.timedelta(days=1)


def _day(raw: str | None, name: str) -> dt.date | None:
    if not raw:
        return None
    try:
        day = dt.date.fromisoformat(raw[:10])
    except ValueError:
        raise InvalidRequest(f"{name}: expected a date as YYYY-MM-DD") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidRequest(f"{name}: must be from {FIRST_DAY} to {LAST_DAY}")
    return day


def date_range(q: dict[str, str], default_days: int | None = None) -> tuple[dt.date, dt.date]:
    """`start` and `end` (inclusive, UTC days; `end` defaults to today). Without `start`, the last `default_days`
    days, or an error when there is no default."""
    end = _day(q.get("end"), "end") or dt.datetime.now(dt.UTC).date()
    start = _day(q.get("start"), "start")
    if start is None:
        if default_days is None:
            raise InvalidRequest("start: required, a date as YYYY-MM-DD")
        start = end - dt.timedelta(days=default_days - 1)
    if end < start:
        raise InvalidRequest("end: must not be before start")
    if (end - start).days >= MAX_DAYS:
        raise InvalidRequest(f"the range is over {MAX_DAYS} days")
    return start, end


def group_of(raw: str | None) -> str | None:
    if raw in (None, ""):
        return None
    if raw not in USAGE_GROUPS:
        raise InvalidRequest(f"group_by: one of {', '.join(USAGE_GROUPS)}")
    return raw


def filters_for(mid: str, q: dict[str, str], start: dt.date, end: dt.date) -> Filters:
    return Filters(mid, q.get("customer_id") or None, q.get("meter_id") or None,
                   metadata_filters(q.get("metadata_filters")),
                   start=start.isoformat(), end=(end + dt.timedelta(days=1)).isoformat())


def days(start: dt.date, end: dt.date) -> list[str]:
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _totals(requests: int, tokens: int, cost: int, charge: int) -> dict[str, Any]:
    return {"total_requests": requests, "total_usage_tokens": tokens, "total_cost": usd(cost),
            "total_charge": usd(charge)}


async def get_usage(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    q = query(scope)
    start, end = date_range(q)
    group = group_of(q.get("group_by"))
    filters = filters_for(mid, q, start, end)
    per_day: dict[str, list[int]] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    if group is None:
        for day, *sums in await svc.log_sink.usage(filters):
            per_day[day] = sums
    else:
        for day, key, *sums in await svc.log_sink.usage_by(filters, group):
            per_day[day] = [a + b for a, b in zip(per_day.get(day, [0, 0, 0, 0]), sums)]
            groups.setdefault(day, []).append({"key": key, **_totals(*sums)})
    items, totals = [], [0, 0, 0, 0]
    for day in days(start, end):
        sums = per_day.get(day, [0, 0, 0, 0])
        after = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
        item = {"date": day, "start": f"{day}T00:00:00.000Z", "end": f"{after}T00:00:00.000Z", **_totals(*sums)}
        if group is not None:
            item["groups"] = groups.get(day, [])
        items.append(item)
        totals = [a + b for a, b in zip(totals, sums)]
    reply(proto, 200, {"items": items, "totals": _totals(*totals)})
