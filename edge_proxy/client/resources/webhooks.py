"""`gw.webhooks`: where the gateway posts events. `webhook_secret` is in the create answer only."""
from __future__ import annotations

from typing import Any

from ..forward_tokens import UNSET
from ..transport import path_segment
from ._base import R, Resource, body, page


class Webhooks(Resource[R]):
    def create(self, *, name: str, url: str) -> R:
        return self._call("POST", "webhooks", {"name": name, "url": url})

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> R:
        return self._call("GET", "webhooks", query=page(limit, cursor))

    def retrieve(self, webhook_id: str) -> R:
        return self._call("GET", f"webhooks/{path_segment(webhook_id)}")

    def update(self, webhook_id: str, *, name: Any = UNSET, url: Any = UNSET) -> R:
        return self._call("PATCH", f"webhooks/{path_segment(webhook_id)}", body(name=name, url=url))

    def delete(self, webhook_id: str) -> R:
        return self._call("DELETE", f"webhooks/{path_segment(webhook_id)}")
