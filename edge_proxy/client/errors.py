"""Every error the client raises, one flat file: a status error per gateway status, and the transport errors.

A gateway (or provider) answer that is not 2xx becomes the exception for its status, carrying `.status`, the
answer's `.message` and `.type` (read from `{"error": {"type", "message"}}`, `{"error": "text"}` or a provider's
own error shape, which has the same fields), the parsed `.body`, the `.headers` and the `x-lava-request-id`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class GatewayError(Exception):
    """The base of every error this client raises: `except GatewayError` catches them all."""

    def __init__(self, message: str, *, status: int | None = None, type: str | None = None, body: Any = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def request_id(self) -> str | None:
        """The gateway's `x-lava-request-id` for the failed request, when it sent one."""
        return self.headers.get("x-lava-request-id")

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"{self.status} {self.type or 'error'}: {self.message}"


class MissingSecretKeyError(GatewayError, ValueError):
    """No secret key was given and none is in EDGE_PROXY_SECRET_KEY or LAVA_SECRET_KEY."""


class InvalidSecretKeyError(GatewayError, ValueError):
    """The secret key has a character a header cannot carry (whitespace inside, a control character, non-ASCII).

    The message never quotes the key: sending it anyway failed in httpx with the whole header value in the error."""


class APIConnectionError(GatewayError, ConnectionError):
    """The gateway could not be reached, or the connection broke before a whole answer arrived."""


class APITimeoutError(APIConnectionError, TimeoutError):
    """The gateway did not answer within the client's timeout."""


class APIError(GatewayError):
    """A non-2xx answer whose status has no class of its own (400, 413, 5xx, ...)."""


class AuthenticationError(APIError):
    """401: a missing, malformed or unknown secret key, spend key or forward token."""


class InsufficientBalanceError(APIError):
    """402: the wallet that pays (merchant or customer) has no funds for the request."""


class PermissionDeniedError(APIError):
    """403: the target URL is outside the gateway's catalogue, or the credential may not do this."""


class NotFoundError(APIError):
    """404: an unknown route, id or provider name."""


class RateLimitError(APIError):
    """429: too many requests; `.retry_after` is the seconds the gateway asked to wait, when it said."""

    @property
    def retry_after(self) -> float | None:
        raw = self.headers.get("retry-after")
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None


_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    402: InsufficientBalanceError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def error_for_status(status: int, content: bytes, headers: Mapping[str, str], reason: str = "") -> APIError:
    """The exception for a non-2xx answer, with the message and type read from its body."""
    body: Any
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        body = content.decode("utf-8", "replace")
    message, kind = _message_and_type(body)
    if message is None:
        message = (body.strip()[:500] if isinstance(body, str) and body.strip() else None) or reason or "error"
    return _BY_STATUS.get(status, APIError)(message, status=status, type=kind, body=body,
                                           headers={k.lower(): v for k, v in headers.items()})


def _message_and_type(body: Any) -> tuple[str | None, str | None]:
    """`{"error": {"message", "type"}}`, `{"error": "text"}` (Lava's two shapes) or a top-level `message`."""
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, str):
        return error, None
    if isinstance(error, dict):
        message = error.get("message")
        kind = next((v for v in (error.get("type"), error.get("status"), error.get("code")) if isinstance(v, str)),
                    None)  # OpenAI and Anthropic say `type`, Gemini `status`
        return (message if isinstance(message, str) else json.dumps(error)), kind
    message = body.get("message")
    return (message if isinstance(message, str) else None), None
