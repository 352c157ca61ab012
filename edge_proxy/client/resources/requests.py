"""`gw.requests`: the request log, one record per request through the gateway or reported after the fact."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..forward_tokens import UNSET
from ..transport import path_segment
from ._base import R, Resource, body, encode_filters, page


class Requests(Resource[R]):
    def list(self, *, limit: int | None = None, cursor: str | None = None, customer_id: str | None = None,
             meter_id: str | None = None, metadata_filters: Mapping[str, str] | None = None) -> R:
        """`GET requests`: `{data, has_more, next_cursor}`, newest first; filters as in the Node SDK."""
        return self._call("GET", "requests", query={**page(limit, cursor), "customer_id": customer_id or None,
                                                    "meter_id": meter_id or None,
                                                    "metadata_filters": encode_filters(metadata_filters)})

    def retrieve(self, request_id: str) -> R:
        return self._call("GET", f"requests/{path_segment(request_id)}")

    def create(self, *, request_id: str, customer_id: Any = UNSET, meter_slug: Any = UNSET, metadata: Any = UNSET,
               input_tokens: Any = UNSET, output_tokens: Any = UNSET, input_characters: Any = UNSET,
               output_characters: Any = UNSET, input_seconds: Any = UNSET, output_seconds: Any = UNSET,
               **extra: Any) -> R:
        """`POST requests`: post-request reporting, idempotent by request_id. `extra`: our `provider`, `model`,
        `disable_billing`."""
        return self._call("POST", "requests", body(
            request_id=request_id, customer_id=customer_id, meter_slug=meter_slug, metadata=metadata,
            input_tokens=input_tokens, output_tokens=output_tokens, input_characters=input_characters,
            output_characters=output_characters, input_seconds=input_seconds, output_seconds=output_seconds,
            **extra))

