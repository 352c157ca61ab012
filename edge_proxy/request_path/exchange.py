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

from ..billing.engine import NOTHING
from ..clock import now_iso
from ..metering.estimate import billed_usage
from ..metering.record import RequestRecord
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
        ms = ((self.sent_at - self.started) + (now - self.head_at)) * 1000  # overhead(now): a frame fewer
        headers.append(("x-edge-proxy-overhead-ms", f"{ms:.3f}"))

    def finish(self, status: int, outcome: str, reason: str | None = None) -> None:
        if self.done:
            return
        self.done = True
        p, attempt, held, svc, stream, now = (self.principal, self.attempt, self.reservation, self.svc, self.stream,
                                              time.perf_counter())
        provider: str | None
        model: str | None
        endpoint: str | None
        if attempt is not None:
            provider, model, free = attempt.provider.name, attempt.model, attempt.free  # free: a token count
            endpoint = attempt.target.path
            if "?" in endpoint:  # most paths have no query: no split, no list
                endpoint = endpoint.split("?", 1)[0]
            fmt, request_bytes, estimate = attempt.provider.usage_format, len(attempt.body), attempt.input_estimate
            metered = attempt.metered
        else:
            provider = model = endpoint = estimate = None
            free = metered = False
            fmt, request_bytes = "none", 0
        # The tokens billed: the provider's final count, else the estimate (metering/estimate.py); the audio and
        # 1-hour cache-write parts only as the provider sent them. Nothing was sent: nothing used.
        w1h = in_audio = cached_audio = out_audio = 0
        response_id = item_ids = None
        if self.sent_at:
            usage = self.usage
            if usage is None:
                usage = _NO_USAGE
            elif usage.found:
                w1h, in_audio = usage.cache_write_1h_tokens, usage.input_audio_tokens
                cached_audio, out_audio = usage.cached_audio_tokens, usage.output_audio_tokens
                response_id, item_ids = usage.response_id, usage.output_item_ids
                reported = usage.model
                # The provider's name for what served the call (a dated snapshot) prices it when the table knows
                # that name; a name it does not know keeps the model asked for, so an answer naming a model the
                # table cannot price never turns a priced request into a free one.
                if reported and reported != model and provider is not None and (
                        svc.prices.is_priced(provider, reported) or not svc.prices.is_priced(provider, model)):
                    model = reported
            billed = billed_usage(usage, fmt=fmt, stream=stream, status=status, request_bytes=request_bytes,
                                  input_estimate=estimate, metered=metered)
            inp, out, cached, write, reasoning, source = (billed.input_tokens, billed.output_tokens,
                                                          billed.cached_tokens, billed.cache_write_tokens,
                                                          billed.reasoning_tokens, billed.usage_source)
        else:
            inp = out = cached = write = reasoning = 0
            source = "none"
        billing, key = p.billing, p.spend_key
        # One positional call, every field in RequestRecord's order (tests/test_exchange_record.py pins it): msgspec
        # matches each keyword against the 48 field names, and a blank copy plus a store per field costs twice as
        # much. Milliseconds to 3 places as round(x * 1e6) / 1000: round(ms, 3) costs three times as much.
        record = RequestRecord(
            self.request_id, now_iso(), p.merchant_id, p.customer_id, p.meter_slug,
            billing.meter.meter_id if billing and billing.meter else None,  # the meter it was admitted under
            provider, "unmanaged" if p.provider_key else "managed", model, endpoint, stream, status, outcome,
            reason, inp, out, cached, write, reasoning, w1h, in_audio, cached_audio, out_audio,
            0, 0, 0, 0,  # input/output characters and seconds: only post-request reports count them
            source, None, None, None, False, 0, None,  # cost, input/output cost, priced, charge: pricing's, billing's
            billing.payer_kind if billing else "merchant", held.payer_nanos,
            held.payer.hold_id if held.payer else None, key.spend_key_id if key else None,
            round((now - self.started) * 1e6) / 1000,
            round(((self.sent_at - self.started) + (self.replied_at - self.head_at)) * 1e6) / 1000  # overhead()
            if self.replied_at else 0.0,
            self.metadata, response_id, 0, 0,  # operator and uncollected nanos: billing's
            held.merchant_nanos, held.merchant.hold_id if held.merchant else None, svc.settings.region, free,
            item_ids)
        if response_id is not None and p.provider_key is None:  # stored in the operator's project: the merchant's
            svc.owners.remember(p, response_id, item_ids)
        if self.sent_at:
            svc.price(record)  # the answer is out: a few µs here, rather than a stall per batch later
        svc.log_queue.put(record)
        svc.observability.finished(self, record)  # observability hook: metrics, access log, trace span


_NO_USAGE = Usage()
