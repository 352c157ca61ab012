"""One attempt of a request, from its start to its log record. It is logged exactly once, by `finish()`.

Logging only puts the record on the in-memory log queue; the log writer prices what is left unpriced, bills it
and writes it, and only then gives the attempt's reservation back (billing/engine.py), so a request that was
logged has always released what it reserved.

The usage a record is billed for is the provider's final count, or, when it never arrived (a stream cut before
its usage event, an OpenAI stream without `stream_options.include_usage`), an estimate marked `estimated`
(metering/estimate.py has the rule). A request is never logged as free just because its usage was not reported.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

from ..billing.engine import NOTHING
from ..clock import now_iso
from ..metering.estimate import billed_usage
from ..metering.record import RequestRecord, take_usage
from ..metering.usage_types import Usage

if TYPE_CHECKING:
    from ..auth import Principal
    from ..services import Services
    from .plan import Attempt

class Exchange:
    __slots__ = ("svc", "request_id", "principal", "started", "attempt", "metadata", "sent_at", "head_at",
                 "replied_at", "answered", "usage", "stream", "done", "reservation")

    def __init__(self, svc: Services, request_id: str, principal: Principal, started: float,
                 metadata: dict[str, str] | None = None) -> None:
        self.svc = svc
        self.request_id = request_id
        self.principal = principal
        self.started = started
        self.attempt: Attempt | None = None
        self.metadata = metadata
        self.sent_at = self.head_at = self.replied_at = 0.0
        self.answered = False  # the client has its answer's head (or a whole error)
        self.usage: Usage | None = None
        self.stream = False
        self.done = False
        self.reservation = NOTHING

    @property
    def usage_format(self) -> str:
        return self.attempt.provider.usage_format if self.attempt is not None else "none"

    def overhead(self, now: float) -> float:
        """Seconds the gateway itself spent: before the upstream request, and from its head to ours."""
        return (self.sent_at - self.started) + (now - self.head_at)

    def stamp(self, headers: list[tuple[str, str]]) -> None:
        """The answer goes out now: note when, and tell the client what the gateway added."""
        self.replied_at = now = time.perf_counter()
        self.answered = True
        headers.append(("x-edge-proxy-overhead-ms", f"{self.overhead(now) * 1000:.3f}"))

    def finish(self, status: int, outcome: str, reason: str | None = None) -> None:
        if self.done:
            return
        self.done = True
        p, attempt, held, now = self.principal, self.attempt, self.reservation, time.perf_counter()
        # A copy of a blank record and one store per field: msgspec matches each keyword argument against the 50
        # field names, which costs twice as much. Milliseconds to 3 places as round(x * 1e6) / 1000: round(ms, 3)
        # costs three times as much.
        record = msgspec.structs.replace(_BLANK)
        record.request_id, record.created_at, record.merchant_id = self.request_id, now_iso(), p.merchant_id
        record.customer_id, record.meter_slug = p.customer_id, p.meter_slug
        record.provider_key_type = "unmanaged" if p.provider_key else "managed"
        record.stream, record.status_code, record.outcome, record.error_reason = self.stream, status, outcome, reason
        record.latency_ms = round((now - self.started) * 1e6) / 1000
        record.overhead_ms = round(self.overhead(self.replied_at) * 1e6) / 1000 if self.replied_at else 0.0
        record.metadata, record.payer = self.metadata, p.billing.payer_kind if p.billing else "merchant"
        record.reserved_nanos, record.hold_id = held.payer_nanos, held.payer.hold_id if held.payer else None
        record.merchant_reserved_nanos = held.merchant_nanos
        record.merchant_hold_id = held.merchant.hold_id if held.merchant else None
        record.spend_key_id = p.spend_key.spend_key_id if p.spend_key else None
        record.region = self.svc.settings.region
        svc, request_bytes, fmt, estimate = self.svc, 0, "none", None
        if attempt is not None:
            record.provider = attempt.provider.name
            record.endpoint = attempt.target.path.split("?", 1)[0]
            record.model = attempt.model
            record.free = attempt.free  # a token count: the catalogue says it costs nothing
            request_bytes, fmt, estimate = len(attempt.body), attempt.provider.usage_format, attempt.input_estimate
        if self.sent_at:
            _apply_usage(record, self.usage, request_bytes, fmt, estimate)
            svc.price(record)  # the answer is out: a few µs here, rather than a stall per batch later
        else:
            record.usage_source = "none"
        svc.log_queue.put(record)
        svc.observability.finished(self, record)  # observability hook: metrics, access log, trace span


def _apply_usage(record: RequestRecord, usage: Usage | None, request_bytes: int, fmt: str,
                 input_estimate: int | None) -> None:
    """The tokens the record is billed for: the provider's final count, else the estimate (metering/estimate.py)."""
    if usage is None:
        usage = _NO_USAGE
    elif usage.found:
        take_usage(record, usage)  # every count the provider sent (audio, 1-hour cache writes...)
        if usage.model:
            record.model = usage.model
    billed = billed_usage(usage, fmt=fmt, stream=record.stream, status=record.status_code,
                          request_bytes=request_bytes, input_estimate=input_estimate)
    record.input_tokens, record.output_tokens = billed.input_tokens, billed.output_tokens
    record.cached_tokens, record.cache_write_tokens = billed.cached_tokens, billed.cache_write_tokens
    record.reasoning_tokens, record.usage_source = billed.reasoning_tokens, billed.usage_source


_NO_USAGE = Usage()
_BLANK = RequestRecord(request_id="", created_at="", merchant_id="")  # only ever copied (finish), never changed
