"""The request path, top to bottom: authenticate -> resolve target -> forward -> relay or stream -> log.

Logging only puts a record on the in-memory queue; counting, pricing, billing and writing happen off the path.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

from granian.rsgi import ProtocolClosed, ProtocolError

from . import headers as hdr
from .errors import (BodyTooLarge, GatewayError, InvalidRequest, ServiceUnavailable,
                     UpstreamTimedOut, UpstreamUnreachable)
from .billing.charging import request_limits
from .metadata import parse_metadata
from .metering.record import RequestRecord, now_iso
from .metering.usage import StreamScanner, Usage, usage_from_body
from .stream_errors import sse_error_event
from .upstream import UpstreamError, UpstreamTimeout

if TYPE_CHECKING:
    from .app import Gateway
    from .auth import Principal
    from .providers import Target

# Bodies up to this size that the provider sends with a Content-Length are relayed in one piece; anything
# larger, chunked or close-delimited (every SSE stream) is relayed chunk by chunk as it arrives.
_WHOLE_BODY_LIMIT = 1 << 20
# Events of a stream that carry no content (role/finish chunks, message_start/stop...), for estimates.
_FRAMING_EVENTS = {"openai": 2, "anthropic": 5, "gemini": 0, "none": 0}


class RequestIds:
    """Time-ordered, unique request ids: microseconds, a per-process random part, and a counter."""

    __slots__ = ("_n", "_tail")

    def __init__(self) -> None:
        self._n = 0
        self._tail = os.urandom(3).hex()

    def next(self) -> str:
        self._n = (self._n + 1) & 0xFFFFFF
        return f"req_{time.time_ns() // 1000:014x}{self._tail}{self._n:06x}"


async def forward(gw: Gateway, scope, proto, target_of, metadata_param: str | None = None) -> None:
    """Proxy one request. `target_of()` resolves where it goes (it raises 403 for anything off-catalogue)."""
    started = time.perf_counter()
    request_id = gw.request_ids.next()
    exchange: Exchange | None = None
    try:
        headers = scope.headers  # browser requests were refused by the router already
        principal = await gw.auth.authenticate(hdr.credential(headers))
        exchange = Exchange(gw, request_id, principal, started)
        target: Target = target_of()
        exchange.target = target
        raw_meta = headers.get("x-lava-metadata")
        if raw_meta is not None:
            exchange.metadata = parse_metadata(raw_meta, "x-lava-metadata")
        elif metadata_param is not None:
            exchange.metadata = parse_metadata(metadata_param, "metadata")
        key = principal.provider_key or target.provider.managed_key
        if key is None:
            raise ServiceUnavailable(f"no managed key for provider {target.provider.name!r}: set "
                                     f"EDGE_PROXY_PROVIDER_KEY_{target.provider.env_name} or send provider_key "
                                     "in the forward token")
        body = exchange.body = await _read_body(proto, headers, gw.settings.max_body_bytes)
        limits = exchange.limits = request_limits(body)
        if principal.spend_key is not None:
            await gw.spend_keys.admit(principal.spend_key, target.provider.name, _model(limits, target.path),
                                      request_id, len(body), limits, gw.prices)
        if principal.billing is not None:
            exchange.lease, exchange.reserved = await gw.billing.reserve(
                request_id, principal.billing, target.provider.name, len(body), limits,
                principal.provider_key is not None)
        up_headers = hdr.request_headers(headers.items(), target.provider.key_header, key)
        exchange.sent_at = time.perf_counter()
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
        if exchange is not None:
            exchange.finish(exc.status, "error", exc.type)
        return
    except BaseException:
        # A bug or a cancellation: still log the request once, which also releases its reservation.
        if exchange is not None:
            exchange.finish(500, "error", "internal_error")
        raise

    exchange.head_at = time.perf_counter()
    out_headers = hdr.response_headers(response.headers)
    out_headers.append(("x-lava-request-id", request_id))
    length = response.content_length
    if length is not None and length <= _WHOLE_BODY_LIMIT:
        try:
            data = await response.read()
        except UpstreamError as exc:
            err = UpstreamTimedOut() if isinstance(exc, UpstreamTimeout) else UpstreamUnreachable()
            send_error(proto, err, request_id)
            exchange.finish(err.status, "error", "upstream_body_incomplete")
            return
        exchange.replied_at = now = time.perf_counter()
        out_headers.append(("x-edge-proxy-overhead-ms", f"{exchange.overhead(now) * 1000:.3f}"))
        proto.response_bytes(response.status, out_headers, data)
        exchange.usage = usage_from_body(exchange.usage_format, data)
        exchange.finish(response.status, "completed")
        return
    await _stream(proto, response, out_headers, exchange)


async def _stream(proto, response, out_headers, exchange: Exchange) -> None:
    """Relay the body chunk by chunk as it arrives, reading usage as it passes. A client that leaves cancels
    the upstream request; a provider that dies mid-stream ends the stream with an explicit error."""
    sse = False
    if response.content_length is not None:
        out_headers.append(("content-length", str(response.content_length)))
    else:
        sse = any(n == "content-type" and v.startswith("text/event-stream") for n, v in out_headers)
    exchange.stream = True
    scanner = StreamScanner(exchange.usage_format)
    feed = scanner.feed
    events = 0
    exchange.replied_at = now = time.perf_counter()
    out_headers.append(("x-edge-proxy-overhead-ms", f"{exchange.overhead(now) * 1000:.3f}"))
    transport = proto.response_stream(response.status, out_headers)
    watcher = asyncio.ensure_future(proto.client_disconnect())
    watcher.add_done_callback(lambda _: response.abort())
    outcome, reason = "completed", None
    try:
        async for chunk in response:
            await transport.send_bytes(chunk)
            feed(chunk)
            events += chunk.count(b"\n\n")
    except UpstreamError:
        if watcher.done():
            outcome, reason = "partial", "client_disconnected"
        else:
            outcome, reason = "error", "upstream_interrupted"
            if sse:
                await transport.send_bytes(sse_error_event(exchange.usage_format))
    except (ProtocolClosed, ProtocolError):
        response.abort()
        outcome, reason = "partial", "client_disconnected"
    finally:
        watcher.cancel()
        # Granian ends the body when the transport is freed. A traceback kept by the upstream response can hold
        # this frame alive, so let go of the transport explicitly.
        del transport
        exchange.usage = scanner.result()
        exchange.events = events
        exchange.finish(response.status, outcome, reason)


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


class Exchange:
    """One proxied request from authentication to its log record. It is logged exactly once, by finish()."""

    __slots__ = ("gw", "request_id", "principal", "started", "target", "metadata", "body", "sent_at", "head_at",
                 "replied_at", "usage", "stream", "events", "done", "lease", "reserved", "limits")

    def __init__(self, gw: Gateway, request_id: str, principal: Principal, started: float) -> None:
        self.gw = gw
        self.request_id = request_id
        self.principal = principal
        self.started = started
        self.target: Target | None = None
        self.metadata: dict[str, str] | None = None
        self.body = b""
        self.sent_at = self.head_at = self.replied_at = 0.0
        self.usage: Usage | None = None
        self.stream = False
        self.events = 0
        self.done = False
        self.lease = None
        self.reserved = 0
        self.limits = None

    @property
    def usage_format(self) -> str:
        return self.target.provider.usage_format if self.target else "none"

    def overhead(self, now: float) -> float:
        """Seconds the gateway itself spent: before the upstream request, and from its head to ours."""
        return (self.sent_at - self.started) + (now - self.head_at)

    def finish(self, status: int, outcome: str, reason: str | None = None) -> None:
        if self.done:
            return
        self.done = True
        p, target, now = self.principal, self.target, time.perf_counter()
        metrics = self.gw.metrics
        metrics.answered(status)
        if self.head_at:
            metrics.upstream_seconds.observe(self.head_at - self.sent_at)
        if self.replied_at:
            metrics.overhead_seconds.observe(self.overhead(self.replied_at))
        record = RequestRecord(
            request_id=self.request_id, created_at=now_iso(), merchant_id=p.merchant_id,
            customer_id=p.customer_id, meter_slug=p.meter_slug,
            provider_key_type="unmanaged" if p.provider_key else "managed",
            stream=self.stream, status_code=status, outcome=outcome, error_reason=reason,
            latency_ms=round((now - self.started) * 1000, 3),
            overhead_ms=round(self.overhead(self.replied_at) * 1000, 3) if self.replied_at else 0.0,
            metadata=self.metadata, payer=p.billing.payer_kind if p.billing else "merchant",
            reserved_nanos=self.reserved, hold_id=self.lease.hold_id if self.lease else None,
            spend_key_id=p.spend_key.spend_key_id if p.spend_key else None,
        )
        if target is not None:
            record.provider = target.provider.name
            record.endpoint = target.path.split("?", 1)[0]
            record.model = _model(self.limits, record.endpoint) if self.limits else None
        if self.sent_at:
            _apply_usage(record, self.usage, self.body, self.events, self.usage_format)
            self.gw.price(record)  # the answer is out: a few µs here, rather than a stall per batch later
        else:
            record.usage_source = "none"
        self.gw.log_queue.put(record)


def _model(limits, endpoint: str) -> str | None:
    """The model a request names: in its body, or (Gemini) in its path."""
    if "/models/" in endpoint and ":" in endpoint:
        return endpoint.split("?", 1)[0].rsplit("/models/", 1)[1].split(":", 1)[0] or None
    return limits.model


def _apply_usage(record: RequestRecord, usage: Usage | None, body: bytes, events: int, fmt: str) -> None:
    if usage is not None and usage.found:
        record.input_tokens = usage.input_tokens
        record.output_tokens = usage.output_tokens
        record.cached_tokens = usage.cached_tokens
        record.cache_write_tokens = usage.cache_write_tokens
        record.reasoning_tokens = usage.reasoning_tokens
        if usage.model:
            record.model = usage.model
        if record.stream and record.outcome != "completed" and not usage.output_tokens:
            record.output_tokens = max(0, events - _FRAMING_EVENTS.get(fmt, 0))
            record.usage_source = "estimated"
        return
    if record.stream and fmt != "none" and record.status_code < 400:
        # The provider never reported usage (OpenAI without include_usage, or a cut stream): estimate it
        # rather than log a free request. See metering/record.py for the rule.
        record.input_tokens = len(body) // 4
        record.output_tokens = max(0, events - _FRAMING_EVENTS.get(fmt, 0))
        record.usage_source = "estimated"
    else:
        record.usage_source = "none"
