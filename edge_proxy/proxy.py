"""The request path, top to bottom: authenticate -> resolve target -> forward -> relay or stream.

Everything after the answer (count, price, bill, log) happens off this path.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

from granian.rsgi import ProtocolClosed, ProtocolError

from . import headers as hdr
from .errors import (BodyTooLarge, BrowserRequest, GatewayError, InvalidRequest, ServiceUnavailable,
                     UpstreamTimedOut, UpstreamUnreachable)
from .providers import Target
from .stream_errors import sse_error_event
from .upstream import UpstreamError, UpstreamTimeout

if TYPE_CHECKING:
    from .app import Gateway

# Bodies up to this size that the provider sends with a Content-Length are relayed in one piece; anything
# larger, chunked or close-delimited (every SSE stream) is relayed chunk by chunk as it arrives.
_WHOLE_BODY_LIMIT = 1 << 20


class RequestIds:
    """Time-ordered, unique request ids: microseconds, a per-process random part, and a counter."""

    __slots__ = ("_n", "_tail")

    def __init__(self) -> None:
        self._n = 0
        self._tail = os.urandom(3).hex()

    def next(self) -> str:
        self._n = (self._n + 1) & 0xFFFFFF
        return f"req_{time.time_ns() // 1000:014x}{self._tail}{self._n:06x}"


async def forward(gw: Gateway, scope, proto, target_of) -> None:
    """Proxy one request. `target_of()` resolves where it goes (it raises 403 for anything off-catalogue)."""
    started = time.perf_counter()
    request_id = gw.request_ids.next()
    try:
        headers = scope.headers
        if scope.method == "OPTIONS" or "origin" in headers:
            raise BrowserRequest()
        principal = await gw.auth.authenticate(hdr.credential(headers))
        target: Target = target_of()
        key = principal.provider_key or target.provider.managed_key
        if key is None:
            raise ServiceUnavailable(f"no managed key for provider {target.provider.name!r}: set "
                                     f"EDGE_PROXY_PROVIDER_KEY_{target.provider.env_name} or send provider_key "
                                     "in the forward token")
        body = await _read_body(proto, headers, gw.settings.max_body_bytes)
        up_headers = hdr.request_headers(headers.items(), target.provider.key_header, key)
        try:
            response = await gw.upstream.request(scope.method, target.scheme, target.host, target.port,
                                                 target.path, up_headers, body)
        except UpstreamTimeout:
            raise UpstreamTimedOut() from None
        except UpstreamError:
            raise UpstreamUnreachable() from None
    except GatewayError as exc:
        gw.metrics.errors += 1
        send_error(proto, exc, request_id)
        return

    out_headers = hdr.response_headers(response.headers)
    out_headers.append(("x-lava-request-id", request_id))
    length = response.content_length
    if length is not None and length <= _WHOLE_BODY_LIMIT:
        try:
            data = await response.read()
        except UpstreamTimeout:
            send_error(proto, UpstreamTimedOut(), request_id)
            return
        except UpstreamError:
            send_error(proto, UpstreamUnreachable(), request_id)
            return
        out_headers.append(("x-edge-proxy-overhead-ms", f"{(time.perf_counter() - started) * 1000:.3f}"))
        proto.response_bytes(response.status, out_headers, data)
        return
    await _stream(proto, response, out_headers, target.provider.usage_format)


async def _stream(proto, response, out_headers, usage_format: str) -> None:
    """Relay the body chunk by chunk as it arrives. A client that leaves cancels the upstream request; a
    provider that dies mid-stream ends the stream with an explicit error (see stream_errors)."""
    sse = False
    if response.content_length is not None:
        out_headers.append(("content-length", str(response.content_length)))
    else:
        sse = any(n == "content-type" and v.startswith("text/event-stream") for n, v in out_headers)
    transport = proto.response_stream(response.status, out_headers)
    watcher = asyncio.ensure_future(proto.client_disconnect())
    watcher.add_done_callback(lambda _: response.abort())
    try:
        async for chunk in response:
            await transport.send_bytes(chunk)
    except UpstreamError:
        if sse and not watcher.done():
            await transport.send_bytes(sse_error_event(usage_format))
    except (ProtocolClosed, ProtocolError):
        response.abort()  # the client went away
    finally:
        watcher.cancel()
        # Granian ends the body when the transport is freed. A traceback kept by the upstream response can hold
        # this frame alive, so let go of the transport explicitly.
        del transport


async def _read_body(proto, headers, limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise BodyTooLarge()
        return await proto()
    chunks, size = [], 0
    async for chunk in proto:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def send_error(proto, exc: GatewayError, request_id: str | None = None) -> None:
    headers = [("content-type", "application/json"), *exc.headers]
    if request_id:
        headers.append(("x-lava-request-id", request_id))
    proto.response_bytes(exc.status, headers, exc.body())
