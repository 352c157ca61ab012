"""`gw.spend_keys`: drop-in provider keys that spend from the merchant's wallet under limits (Node: spendKeys).

The key itself (`key`) is in the answers of `create` and `rotate` only.
"""
from __future__ import annotations

from typing import Any

from ..forward_tokens import UNSET
from ..transport import path_segment
from ._base import R, Resource, body, page


class SpendKeys(Resource[R]):
    def create(self, *, name: str, status: Any = UNSET, request_shape: Any = UNSET, allowed_models: Any = UNSET,
               allowed_providers: Any = UNSET, spend_limit: Any = UNSET, request_limit: Any = UNSET,
               rate_limit: Any = UNSET, expires_at: Any = UNSET) -> R:
        """`POST spend_keys`. spend_limit `{amount, cycle}`, request_limit `{count, cycle}`, rate_limit
        `{rpm, burst}`."""
        return self._call("POST", "spend_keys", body(
            name=name, status=status, request_shape=request_shape, allowed_models=allowed_models,
            allowed_providers=allowed_providers, spend_limit=spend_limit, request_limit=request_limit,
            rate_limit=rate_limit, expires_at=expires_at))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> R:
        return self._call("GET", "spend_keys", query=page(limit, cursor))

    def retrieve(self, spend_key_id: str) -> R:
        return self._call("GET", f"spend_keys/{path_segment(spend_key_id)}")

    def update(self, spend_key_id: str, *, name: Any = UNSET, status: Any = UNSET, request_shape: Any = UNSET,
               allowed_models: Any = UNSET, allowed_providers: Any = UNSET, spend_limit: Any = UNSET,
               request_limit: Any = UNSET, rate_limit: Any = UNSET, expires_at: Any = UNSET) -> R:
        """`PUT spend_keys/{id}`, partial as the Node SDK sends it: only the fields given change; None clears one."""
        return self._call("PUT", f"spend_keys/{path_segment(spend_key_id)}", body(
            name=name, status=status, request_shape=request_shape, allowed_models=allowed_models,
            allowed_providers=allowed_providers, spend_limit=spend_limit, request_limit=request_limit,
            rate_limit=rate_limit, expires_at=expires_at))

    def revoke(self, spend_key_id: str) -> R:
        """`DELETE spend_keys/{id}`: `{"success": true}`; the key stops working."""
        return self._call("DELETE", f"spend_keys/{path_segment(spend_key_id)}")

    def rotate(self, spend_key_id: str) -> R:
        """`POST spend_keys/{id}/rotate`: a new key (in `key`) replaces the old one."""
        return self._call("POST", f"spend_keys/{path_segment(spend_key_id)}/rotate")
