"""`/v1/usage`: per-day totals of requests, tokens, cost and charge, as the Lava SDK reads them."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from ..errors import InvalidRequest
from ..log_sinks import Filters
from ..money import usd
from .common import metadata_filters, query, reply

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services

MAX_DAYS = 366


def _day(raw: str | None, name: str) -> dt.date | None:
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw[:10])
    except ValueError:
        raise InvalidRequest(f"{name}: expected a date as YYYY-MM-DD") from None


async def get_usage(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    q = query(scope)
    start = _day(q.get("start"), "start")
    if start is None:
        raise InvalidRequest("start: required, a date as YYYY-MM-DD")
    end = _day(q.get("end"), "end") or dt.datetime.now(dt.UTC).date()
    if end < start:
        raise InvalidRequest("end: must not be before start")
    if (end - start).days >= MAX_DAYS:
        raise InvalidRequest(f"the range is over {MAX_DAYS} days")
    filters = Filters(mid, q.get("customer_id") or None, q.get("meter_id") or None,
                      metadata_filters(q.get("metadata_filters")),
                      start=start.isoformat(), end=(end + dt.timedelta(days=1)).isoformat())
    rows = {r[0]: r for r in await svc.log_sink.usage(filters)}
    items, totals = [], [0, 0, 0, 0]
    day = start
    while day <= end:
        _, requests, tokens, cost, charge = rows.get(day.isoformat(), (None, 0, 0, 0, 0))
        items.append({
            "date": day.isoformat(),
            "start": f"{day.isoformat()}T00:00:00.000Z",
            "end": f"{(day + dt.timedelta(days=1)).isoformat()}T00:00:00.000Z",
            "total_requests": requests, "total_usage_tokens": tokens,
            "total_cost": usd(cost), "total_charge": usd(charge),
        })
        for i, v in enumerate((requests, tokens, cost, charge)):
            totals[i] += v
        day += dt.timedelta(days=1)
    reply(proto, 200, {"items": items, "totals": {
        "total_requests": totals[0], "total_usage_tokens": totals[1],
        "total_cost": usd(totals[2]), "total_charge": usd(totals[3])}})
