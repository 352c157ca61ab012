"""`/dashboard/requests`: the request log, newest first, filtered and paged with the API's cursors, and one
request in detail. Both read what `GET /v1/requests` and `GET /v1/requests/{id}` serve, in the same shape."""
from __future__ import annotations

import msgspec

from ..api import requests as requests_api
from ..api.common import decode_cursor, encode_cursor
from ..errors import InvalidRequest, NotFound
from .web import Request, render, send_html

PAGE = 50
FILTERS = ("customer_id", "meter_id", "model", "status", "metadata")


def api_query(q: dict[str, str]) -> dict[str, str]:
    """The page's filter fields as the REST query: `metadata` (key=value) becomes `metadata_filters`."""
    out = {k: q[k].strip() for k in FILTERS if q.get(k, "").strip()}
    meta = out.pop("metadata", None)
    if meta is not None:
        key, sep, value = meta.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest("metadata: write the filter as key=value")
        out["metadata_filters"] = msgspec.json.encode([[key.strip(), value.strip()]]).decode()
    return out


async def request_list(req: Request) -> None:
    q = req.query
    filters = requests_api.filters_of(req.merchant_id, api_query(q))
    rows = await req.svc.log_sink.list(filters, decode_cursor(q.get("cursor")), PAGE + 1)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    shown = {k: q.get(k, "") for k in FILTERS}
    send_html(req.proto, 200, render(
        "requests.html", req, requests=[requests_api.to_api(r) for r in rows], filters=shown,
        next_cursor=encode_cursor(rows[-1].created_at, rows[-1].request_id) if more else None,
        paged=bool(q.get("cursor"))))


async def request_detail(req: Request, request_id: str) -> None:
    record = await req.svc.log_sink.get(req.merchant_id, request_id)
    if record is None:
        raise NotFound(f"no request {request_id!r}")
    send_html(req.proto, 200, render("request.html", req, r=requests_api.to_api(record)))
