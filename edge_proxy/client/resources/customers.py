"""`gw.customers`: the customers who pay for their own usage (Lava's customers resource, plus our `credit`)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..forward_tokens import UNSET
from ..transport import path_segment
from ._base import R, Resource, body, page, usd


class Customers(Resource[R]):
    def create(self, *, reference_id: Any = UNSET, email: Any = UNSET, phone: Any = UNSET, name: Any = UNSET,
               metadata: Any = UNSET, **extra: Any) -> R:
        """`POST customers`. `extra` passes our own fields through: `balance` (USD string), `autopay`."""
        return self._call("POST", "customers", body(reference_id=reference_id, email=email, phone=phone, name=name,
                                                    metadata=metadata, **extra))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> R:
        """`GET customers`: `{data, has_more, next_cursor}`, newest first."""
        return self._call("GET", "customers", query=page(limit, cursor))

    def retrieve(self, customer_id: str) -> R:
        return self._call("GET", f"customers/{path_segment(customer_id)}")

    def update(self, customer_id: str, *, name: Any = UNSET, email: Any = UNSET, phone: Any = UNSET,
               reference_id: Any = UNSET, metadata: Any = UNSET, **extra: Any) -> R:
        """`PATCH customers/{id}`: only the fields given change; None clears one."""
        return self._call("PATCH", f"customers/{path_segment(customer_id)}",
                          body(name=name, email=email, phone=phone, reference_id=reference_id, metadata=metadata,
                               **extra))

    def delete(self, customer_id: str) -> R:
        return self._call("DELETE", f"customers/{path_segment(customer_id)}")

    def get_subscription(self, customer_id: str) -> R:
        """`GET customers/{id}/subscription` (Node: getSubscription)."""
        return self._call("GET", f"customers/{path_segment(customer_id)}/subscription")

    def credit(self, customer_id: str, amount: str | int | Decimal) -> R:
        """Ours: `POST customers/{id}/credit {"amount": "USD"}` adds funds; answers the customer with its balance."""
        return self._call("POST", f"customers/{path_segment(customer_id)}/credit", {"amount": usd(amount)})
