"""What every resource shares: its transport, and the rules for bodies and query strings.

A resource method returns what its transport's `request()` returns: the JSON under `Gateway`, an awaitable of
it under `AsyncGateway`. `R` names that type, so `Customers[dict]` and `Customers[Awaitable[dict]]` are typed.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

from ..forward_tokens import UNSET

R = TypeVar("R", covariant=True)
JSON = dict[str, Any]


class Transport(Protocol[R]):
    def request(self, method: str, path: str, data: Any = None, query: Mapping[str, Any] | None = None,
                bearer: str | None = None, idempotency_key: str | None = None) -> R: ...


class Resource(Generic[R]):
    """One group of REST calls under `<base>/v1/`."""

    def __init__(self, transport: Transport[R]) -> None:
        self._transport = transport

    def _call(self, method: str, path: str, data: Any = None, query: Mapping[str, Any] | None = None,
              idempotency_key: str | None = None) -> R:
        return self._transport.request(method, path, data, query, idempotency_key=idempotency_key)


def body(**fields: Any) -> JSON:
    """A request body of the fields given: UNSET ones are left out, None ones are sent as null."""
    return {name: value for name, value in fields.items() if value is not UNSET}


def page(limit: int | None, cursor: str | None) -> dict[str, Any]:
    """`limit` and `cursor` as the Node SDK sends them: only when set."""
    return {"limit": limit or None, "cursor": cursor or None}


def encode_filters(filters: Mapping[str, str] | None) -> str | None:
    """`{key: value}` as the JSON string of `[key, value]` pairs the API takes (JSON.stringify(Object.entries))."""
    if not filters:
        return None
    return json.dumps([[k, v] for k, v in filters.items()], separators=(",", ":"), ensure_ascii=False)


def usd(amount: str | int | Decimal) -> str:
    """An amount of USD as the decimal string the API takes. Floats are refused: money is never a float."""
    if isinstance(amount, bool) or not isinstance(amount, (str, int, Decimal)):
        raise TypeError(f"amount: expected a decimal string, int or Decimal, not {type(amount).__name__}")
    return str(amount)


def day(value: str | dt.date) -> str:
    """A `YYYY-MM-DD` day (a date or datetime is formatted; a string passes as given)."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
