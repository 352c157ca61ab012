"""The gateway's own error answers, in the shape the client's SDK reads.

Every route answers its errors in its own format, so a client's SDK shows the gateway's message:
- `anthropic` (`/v1/messages`, `/providers/anthropic`, a forward to Anthropic):
  `{"type": "error", "error": {"type", "message"}}`;
- `gemini` (`/v1/rewrite/google/...`, `/providers/google`): `{"error": {"code", "message", "status"}}`;
- anything else (OpenAI-format routes, Lava's REST API): `{"error": {"type", "message"}}`, which is also what
  OpenAI's SDKs read.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from ..errors import GatewayError

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol

_encode = msgspec.json.encode
GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "FAILED_PRECONDITION",
                 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 405: "INVALID_ARGUMENT", 409: "ABORTED",
                 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
                 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def error_body(exc: GatewayError, fmt: str | None = None) -> bytes:
    if fmt == "anthropic":
        return _encode({"type": "error", "error": {"type": exc.type, "message": exc.message}})
    if fmt == "gemini":
        status = GEMINI_STATUS.get(exc.status, "INTERNAL" if exc.status >= 500 else "FAILED_PRECONDITION")
        return _encode({"error": {"code": exc.status, "message": exc.message, "status": status}})
    return exc.body()


def send_error(proto: HTTPProtocol, exc: GatewayError, request_id: str | None = None,
               fmt: str | None = None) -> None:
    headers = [("content-type", "application/json"), *exc.headers]
    if request_id:
        headers.append(("x-lava-request-id", request_id))
    proto.response_bytes(exc.status, headers, error_body(exc, fmt))
