"""What every REST resource shares: merchant authentication, query parsing, JSON answers, pagination."""
from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec

from ..errors import InvalidRequest
from ..request_path.body import json_object, read_body

if TYPE_CHECKING:
    from granian.rsgi import Headers, HTTPProtocol, Scope

_JSON = [("content-type", "application/json")]
_encode = msgspec.json.encode


def reply(proto: HTTPProtocol, status: int, value: object) -> None:
    proto.response_bytes(status, _JSON, _encode(value))


def query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.query_string, keep_blank_values=True))


async def json_body(proto: HTTPProtocol, limit: int = 1 << 20, headers: Headers | None = None) -> dict[str, Any]:
    """The body as a JSON object (at most `limit` bytes; pass the request's headers to refuse a declared
    Content-Length over it before reading)."""
    data = await read_body(proto, headers, limit)
    if not data.strip():
        return {}
    return json_object(data)


def limit_param(q: dict[str, str], default: int = 10, most: int = 100) -> int:
    raw = q.get("limit")
    if raw in (None, ""):
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:  # "²" is a digit int() refuses
        raise InvalidRequest(f"limit: must be a whole number from 1 to {most}")
    return int(raw)


def encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode().rstrip("=")


def decode_cursor(raw: str | None, n: int = 2) -> tuple[str, ...] | None:
    if not raw:
        return None
    try:
        parts = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split("\x1f")
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("cursor: not a cursor this API returned") from None
    if len(parts) != n:
        raise InvalidRequest("cursor: not a cursor this API returned")
    return tuple(parts)


def metadata_filters(raw: str | None) -> list[tuple[str, str]]:
    """`metadata_filters` is a JSON string of [key, value] pairs, as the Lava SDK sends it."""
    if not raw:
        return []
    try:
        pairs = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("metadata_filters: must be a JSON array of [key, value] pairs") from None
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs):
        raise InvalidRequest("metadata_filters: must be a JSON array of [key, value] string pairs")
    return [(k, v) for k, v in pairs]
