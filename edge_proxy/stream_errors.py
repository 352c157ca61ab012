"""The in-band error event that ends a stream whose provider died mid-way.

Granian's RSGI stream body cannot carry an error: once the headers are out, a stream can only end cleanly. So a
server-sent-event stream that the provider cut gets one last event in that provider's own error shape (the one
its SDKs raise on), and never a `[DONE]`. A body with a Content-Length keeps that header instead, so a short
body is a broken body to any HTTP client.
"""
from __future__ import annotations

import msgspec

_MESSAGE = "the provider closed the stream before it was complete"


def sse_error_event(usage_format: str) -> bytes:
    if usage_format == "anthropic":
        body = {"type": "error", "error": {"type": "api_error", "message": _MESSAGE}}
        return b"event: error\ndata: " + msgspec.json.encode(body) + b"\n\n"
    if usage_format == "gemini":
        body = {"error": {"code": 502, "message": _MESSAGE, "status": "UNAVAILABLE"}}
        return b"data: " + msgspec.json.encode(body) + b"\n\n"
    body = {"error": {"message": _MESSAGE, "type": "upstream_error", "param": None, "code": "stream_interrupted"}}
    return b"data: " + msgspec.json.encode(body) + b"\n\n"
