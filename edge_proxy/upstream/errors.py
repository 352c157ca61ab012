"""The upstream client's errors (edge_proxy.upstream re-exports the public ones).

Each says which part of the hop failed, so the proxy can answer 502 (could not connect, no complete head, head
over its limits) or 504 (a timeout), and knows whether a retry is safe (`StaleConnection`).
"""
from __future__ import annotations


class UpstreamError(Exception):
    """Base of every failure of the upstream hop."""


class UpstreamConnectError(UpstreamError):
    """Could not connect, or the connection failed before a complete response head (502)."""


class UpstreamTimeout(UpstreamError):
    """Connect timeout, or read timeout waiting for the head or between body chunks (504)."""


class UpstreamBodyError(UpstreamError):
    """The connection died (or sent garbage) after the head had been returned."""


class UpstreamHeadTooLarge(UpstreamConnectError):
    """The response head was over the size or header-count limit (502); the connection is closed."""


class UpstreamBodyTooLarge(UpstreamBodyError):
    """The response body went past the pool's total length cap; the connection is closed."""


class UpstreamEventTooLarge(UpstreamBodyError):
    """One server-sent event went past what a stream translator holds while it waits for the event's end
    (unified/_common.py `MAX_EVENT_BYTES`): the relay ends the stream as a cut one and closes the connection."""


class StaleConnection(UpstreamConnectError):
    """EOF/reset before any response byte; the pool decides whether a retry is safe."""

    def __init__(self, msg: str, *, unsent: bool, reused: bool, elapsed: float) -> None:
        super().__init__(msg)
        self.unsent, self.reused, self.elapsed = unsent, reused, elapsed


class Garbage(Exception):
    """Raised from a parser callback to stop llhttp on bytes nobody asked for."""


class OverLimit(Garbage):
    """Raised from a parser callback when the head or the body goes past the pool's limits."""
