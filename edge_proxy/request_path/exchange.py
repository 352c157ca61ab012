"""One attempt of a request, from its start to its log record. It is logged exactly once, by `finish()`.

Logging only puts the record on the in-memory log queue; the log writer prices what is left unpriced, bills it
and writes it, and only then gives the attempt's reservation back (billing/engine.py), so a request that was
logged has always released what it reserved.

The usage rule, when the provider's own usage never arrived (an OpenAI stream without
`stream_options.include_usage`, or a stream cut before its usage event): the output is estimated as one token
per relayed content event and the input as one token per four request-body bytes, and `usage_source` says
`estimated`. A request is never logged as free just because its usage was not reported.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..clock import now_iso
from ..metering.record import RequestRecord, take_usage

if TYPE_CHECKING:
    from ..auth import Principal
    from ..billing.leases import Lease
    from ..metering.usage import Usage
    from ..services import Services
    from .plan import Attempt

# Events of a stream that carry no content (role/finish chunks, message_start/stop...), for estimates.
_FRAMING_EVENTS = {"openai": 2, "anthropic": 5, "gemini": 0, "none": 0}


class Exchange:
    __slots__ = ("svc", "request_id", "principal", "started", "attempt", "metadata", "sent_at", "head_at",
                 "replied_at", "answered", "usage", "stream", "events", "done", "lease", "reserved")

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
        self.events = 0
        self.done = False
        self.lease: Lease | None = None
        self.reserved = 0

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
        p, attempt, now = self.principal, self.attempt, time.perf_counter()
        metrics = self.svc.metrics
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
        body = b""
        if attempt is not None:
            record.provider = attempt.provider.name
            record.endpoint = attempt.target.path.split("?", 1)[0]
            record.model = attempt.model
            body = attempt.body
        if self.sent_at:
            _apply_usage(record, self.usage, body, self.events, self.usage_format)
            self.svc.price(record)  # the answer is out: a few µs here, rather than a stall per batch later
        else:
            record.usage_source = "none"
        self.svc.log_queue.put(record)


def _apply_usage(record: RequestRecord, usage: Usage | None, body: bytes, events: int, fmt: str) -> None:
    if usage is not None and usage.found:
        take_usage(record, usage)
        if usage.model:
            record.model = usage.model
        if record.stream and record.outcome != "completed" and not usage.output_tokens:
            record.output_tokens = max(0, events - _FRAMING_EVENTS.get(fmt, 0))
            record.usage_source = "estimated"
        return
    if record.stream and fmt != "none" and record.status_code < 400:
        record.input_tokens = len(body) // 4
        record.output_tokens = max(0, events - _FRAMING_EVENTS.get(fmt, 0))
        record.usage_source = "estimated"
    else:
        record.usage_source = "none"
