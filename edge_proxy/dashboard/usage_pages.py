"""`/dashboard/usage`: cost and charge per day, stacked by model, provider or customer, with totals.

It reads what `GET /v1/usage?group_by=` serves (api/usage.py's range rules, the log sink's `usage_by`): one scan
of the log for the range, from which the per-day bars, the per-series table and the totals all come.
"""
from __future__ import annotations

from ..api import usage as usage_api
from ..errors import InvalidRequest
from . import chart
from .web import PREFIX, Request, redirect, render, send_html

SPLITS = {"model": "Model", "provider": "Provider", "customer": "Customer"}
DEFAULT_DAYS = 30
NONE_LABEL = "(none)"
TABLE_ROWS = 50  # series listed under the chart (largest first); the chart draws every series


async def home(req: Request) -> None:
    redirect(req.proto, PREFIX + "/usage")


async def usage(req: Request) -> None:
    q = req.query
    split = q.get("split") or "model"
    if split not in SPLITS:
        raise InvalidRequest(f"split: one of {', '.join(SPLITS)}")
    start, end = usage_api.date_range(q, DEFAULT_DAYS)
    filters = usage_api.filters_for(req.merchant_id, {}, start, end)
    rows = await req.svc.log_sink.usage_by(filters, split)
    days = usage_api.days(start, end)
    cost: dict[str, dict[str, int]] = {}
    charge: dict[str, dict[str, int]] = {}
    series: dict[str, list[int]] = {}  # name -> [requests, tokens, cost, charge]
    totals = [0, 0, 0, 0]
    for day, key, requests, tokens, cost_nanos, charge_nanos in rows:
        name = key if key is not None else NONE_LABEL
        cost.setdefault(day, {})[name] = cost_nanos
        charge.setdefault(day, {})[name] = charge_nanos
        sums = series.setdefault(name, [0, 0, 0, 0])
        for i, v in enumerate((requests, tokens, cost_nanos, charge_nanos)):
            sums[i] += v
            totals[i] += v
    names = chart.top_series({n: s[2] + s[3] for n, s in series.items()})
    body = render(
        "usage.html", req, start=start.isoformat(), end=end.isoformat(), split=split, splits=SPLITS,
        cost_chart=chart.stacked_bars("Cost per day", days, cost, names),
        charge_chart=chart.stacked_bars("Charge per day", days, charge, names),
        legend=chart.legend(names, len(series) > len(names)),
        series=sorted(series.items(), key=lambda kv: (-kv[1][2], kv[0]))[:TABLE_ROWS],
        more_series=max(0, len(series) - TABLE_ROWS), totals=totals,
        split_label=SPLITS[split])
    send_html(req.proto, 200, body)
