"""Every error a client can cause, as a named exception with a status and a type.

The app turns any of these into the same JSON body, `{"error": {"type": ..., "message": ...}}`, in one place
(`GatewayError.body`). Provider error responses are not ours: they pass through unchanged.
"""
from __future__ import annotations

import msgspec

_encode = msgspec.json.encode


class GatewayError(Exception):
    status = 500
    type = "gateway_error"
    message = "internal gateway error"
    reason: str | None = None  # the request log's error_reason when it is not `type`

    def __init__(self, message: str | None = None, *, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message or self.message)
        if message is not None:
            self.message = message
        self.headers = headers or []

    def body(self) -> bytes:
        return _encode({"error": {"type": self.type, "message": self.message}})


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    message = "invalid request"


class UnsafeURL(InvalidRequest):
    """A tenant-chosen URL (a webhook's) that the gateway will not send to; the message says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"url: {reason}")
        self.reason = reason


class InputNotBounded(InvalidRequest):
    """A request whose input tokens cannot be bounded before it is sent (content by reference, on a managed key)."""

    type = "input_not_bounded"


class StoredObjectRefused(InvalidRequest):
    """A request on the managed key naming a stored object no merchant can own there (a file, container, vector
    store, prompt, cache), or with a duplicated key where it may name stored state (request_path/ownership.py):
    answered in OpenAI's shape, with the `param` at fault."""

    reason = "stored_object_refused"

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param

    def body(self) -> bytes:
        return _encode({"error": {"type": self.type, "message": self.message, "param": self.param, "code": None}})


class InvalidToken(GatewayError):
    """A missing, malformed or unknown credential. Every bad token gets this same body."""

    status = 401
    type = "authentication_error"
    message = "invalid or missing credentials: send a Lava forward token or secret key as a Bearer token"


class InsufficientBalance(GatewayError):
    status = 402
    type = "insufficient_balance"
    message = "insufficient balance: add funds first"


class Forbidden(GatewayError):
    status = 403
    type = "forbidden"
    message = "forbidden"


class EndpointNotMetered(Forbidden):
    """The operator's managed key serves only endpoints whose usage the gateway reads and prices."""

    type = "endpoint_not_metered"
    message = "the gateway's managed key does not serve this endpoint: send your own key as provider_key (BYOK)"


class ModelNotPriced(Forbidden):
    """A managed key is used only for a model the price table knows (fail closed: never sent at $0)."""

    type = "model_not_priced"


class BrowserRequest(Forbidden):
    message = "browser requests are blocked: call the gateway from your backend, never from a frontend"


class DisallowedUpstream(Forbidden):
    message = "the target URL is not a provider in the gateway's catalogue"


class NotFound(GatewayError):
    status = 404
    type = "not_found"
    message = "not found"


class StoredObjectNotFound(NotFound):
    """A stored OpenAI response, item or conversation named on the managed key that is not the caller's merchant's
    (or that nobody logged): answered as OpenAI answers an id it does not know, with its `param` and `code`."""

    type = "invalid_request_error"
    reason = "stored_object_not_owned"

    def __init__(self, message: str, param: str, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.code = param, code

    def body(self) -> bytes:
        return _encode({"error": {"type": self.type, "message": self.message, "param": self.param,
                                  "code": self.code}})


class ClientDisconnected(GatewayError):
    """The client closed its connection before its request body was whole: there is nobody left to answer, and
    nothing was sent on. 499 is nginx's status for it."""

    status = 499
    type = "client_disconnected"
    message = "the client closed the connection before its request body was complete"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "method_not_allowed"
    message = "method not allowed"


class BodyTooLarge(GatewayError):
    status = 413
    type = "request_too_large"
    message = "request body is over the gateway's limit"


class Conflict(GatewayError):
    status = 409
    type = "conflict"
    message = "the request conflicts with the current state"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_exceeded"
    message = "rate limit exceeded"


class UpstreamUnreachable(GatewayError):
    status = 502
    type = "upstream_error"
    message = "the provider could not be reached or closed the connection before answering"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    message = "the gateway cannot serve this request right now"


class UpstreamTimedOut(GatewayError):
    status = 504
    type = "upstream_timeout"
    message = "the provider did not answer in time"


class SettingsError(Exception):
    """A bad setting. The message names the variable."""


class MissingDriver(SettingsError):
    """A setting needs an optional driver that is not installed. The message names the variable and the extra
    that brings the driver (`pip install 'edge-proxy[postgres]'`)."""


class CommandError(Exception):
    """A command-line command that cannot do what it was asked; the CLI prints the message and exits 1."""
