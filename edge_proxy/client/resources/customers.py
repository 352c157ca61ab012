"""`gw.customers`: the customers who pay for their own usage (Lava's customers resource, plus our `credit`)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..forward_tokens import UNSET
from ..transport import path_segment
from ._base import R, Resource, body, page, usd


class Customers(Resource[R]):
    def create(self, *, reference_id: Any = UNSET, email: Any = UNSET, phone: Any = UNSET, name: Any = UNSET,
               metadata: Any = UNSET, idempotency_key: str | None = None, **extra: Any) -> R:
        """`POST customers`. `extra` passes our own fields through: `balance` (USD string), `autopay`.

        An opening `balance` is a transfer from the merchant's wallet: see credit() for `idempotency_key`."""
        return self._call("POST", "customers", body(reference_id=reference_id, email=email, phone=phone, name=name,
                                                    metadata=metadata, **extra), idempotency_key=idempotency_key)

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

    def credit(self, customer_id: str, amount: str | int | Decimal, *, idempotency_key: str | None = None) -> R:
        """Ours: `POST customers/{id}/credit {"amount": "USD"}` moves funds from the merchant's wallet to the
        customer; answers the customer with its balance.

        The client never retries it. A credit that failed without an answer (a timeout, a broken connection) may
        have happened: send it again with the same `idempotency_key` (the `Idempotency-Key` header) and it moves
        the money once; the same key for another customer or amount is a 409."""
        return self._call("POST", f"customers/{path_segment(customer_id)}/credit", {"amount": usd(amount)},
                          idempotency_key=idempotency_key)
