"""What every REST resource shares: merchant authentication, query parsing, JSON answers, pagination."""
from __future__ import annotations

import base64
from urllib.parse import parse_qsl

import msgspec

from .. import headers as hdr
from ..errors import BodyTooLarge, InvalidRequest

_JSON = [("content-type", "application/json")]
_encode = msgspec.json.encode


def reply(proto, status: int, value) -> None:
    proto.response_bytes(status, _JSON, _encode(value))


async def merchant_id(gw, scope) -> str:
    """Management calls carry the merchant's secret key (or a forward token made from it) as a Bearer token."""
    principal = await gw.auth.authenticate(hdr.credential(scope.headers))
    return principal.merchant_id


def query(scope) -> dict[str, str]:
    return dict(parse_qsl(scope.query_string, keep_blank_values=True))


async def read_body(proto, limit: int, headers=None) -> bytes:
    """The request body, refused with 413 past `limit` bytes without ever holding more than that: a declared
    Content-Length over it is refused before a byte is read; otherwise the body is read chunk by chunk and
    reading stops as soon as it passes the limit."""
    declared = headers.get("content-length") if headers is not None else None
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise BodyTooLarge(f"request body is over this route's limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in proto:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body is over this route's limit of {limit} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def json_body(proto, limit: int = 1 << 20, headers=None) -> dict:
    """The body as a JSON object (at most `limit` bytes; pass the request's headers to refuse a declared
    Content-Length over it before reading)."""
    data = await read_body(proto, limit, headers)
    if not data.strip():
        return {}
    try:
        value = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest("request body must be a JSON object")
    return value


def limit_param(q: dict[str, str], default: int = 10, most: int = 100) -> int:
    raw = q.get("limit")
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
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
