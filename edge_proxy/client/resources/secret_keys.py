"""`gw.secret_keys`: the merchant's secret keys (Node: secretKeys). `secret_key` is in the create answer only."""
from __future__ import annotations

from ..transport import path_segment
from ._base import R, Resource, page


class SecretKeys(Resource[R]):
    def create(self, *, name: str) -> R:
        return self._call("POST", "secret_keys", {"name": name})

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> R:
        return self._call("GET", "secret_keys", query=page(limit, cursor))

    def delete(self, secret_key_id: str) -> R:
        return self._call("DELETE", f"secret_keys/{path_segment(secret_key_id)}")
