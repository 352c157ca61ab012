"""`gw.meters`: how usage is priced when a customer pays (rate type, tier type, tiers of decimal-string rates)."""
from __future__ import annotations

from typing import Any

from ..forward_tokens import UNSET
from ..transport import path_segment
from ._base import R, Resource, body, page


class Meters(Resource[R]):
    def create(self, *, name: str, rate_type: str, tier_type: str, tiers: list[dict[str, str]],
               meter_slug: Any = UNSET, **extra: Any) -> R:
        """`POST meters`: rate_type fixed|percentage, tier_type tokens_1m|characters_1m|minutes|requests."""
        return self._call("POST", "meters", body(name=name, meter_slug=meter_slug, rate_type=rate_type,
                                                 tier_type=tier_type, tiers=tiers, **extra))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> R:
        return self._call("GET", "meters", query=page(limit, cursor))

    def retrieve(self, meter_id: str) -> R:
        return self._call("GET", f"meters/{path_segment(meter_id)}")

    def update(self, meter_id: str, *, name: Any = UNSET, tiers: Any = UNSET, **extra: Any) -> R:
        """`PATCH meters/{id}`: only the fields given change."""
        return self._call("PATCH", f"meters/{path_segment(meter_id)}", body(name=name, tiers=tiers, **extra))

    def delete(self, meter_id: str) -> R:
        return self._call("DELETE", f"meters/{path_segment(meter_id)}")
