"""Reading a request body within its limit: a declared length over it is refused before a byte is read, and a
body without one stops being read at the limit."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from granian.rsgi import ProtocolClosed

from ..errors import BodyTooLarge, ClientDisconnected, InvalidRequest

if TYPE_CHECKING:
    from granian.rsgi import Headers, HTTPProtocol


async def read_body(proto: HTTPProtocol, headers: Headers | None, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes without ever holding more than that: a declared
    Content-Length over it is refused before a byte is read; a body without one (or with `headers` unknown) is
    read chunk by chunk, and reading stops as soon as it passes the limit. A client that leaves before its body
    is whole is `ClientDisconnected`, not a bug."""
    declared = headers.get("content-length") if headers is not None else None
    try:
        if declared is not None:
            if not declared.isdigit():
                raise InvalidRequest("Content-Length is not a number")
            if int(declared) > limit:
                raise BodyTooLarge(f"request body is over this route's limit of {limit} bytes")
            return await proto()
        chunks, size = [], 0
        async for chunk in proto:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body is over this route's limit of {limit} bytes")
            chunks.append(chunk)
    except ProtocolClosed:
        raise ClientDisconnected() from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def json_object(data: bytes) -> dict[str, Any]:
    """A body that must be one JSON object: anything else is a 400 that says so."""
    try:
        value = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest("request body must be a JSON object")
    return value
