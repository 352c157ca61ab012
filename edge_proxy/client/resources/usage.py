"""`gw.usage`: per-day request counts, tokens, cost and charge over a date range."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from ._base import R, Resource, day, encode_filters


class Usage(Resource[R]):
    def retrieve(self, *, start: str | dt.date, end: str | dt.date | None = None, customer_id: str | None = None,
                 meter_id: str | None = None, metadata_filters: Mapping[str, str] | None = None) -> R:
        """`GET usage`: `{items: [{date, ...}], totals}` from `start` (YYYY-MM-DD) to `end` (default today)."""
        return self._call("GET", "usage", query={
            "start": day(start), "end": day(end) if end else None, "customer_id": customer_id or None,
            "meter_id": meter_id or None, "metadata_filters": encode_filters(metadata_filters)})
