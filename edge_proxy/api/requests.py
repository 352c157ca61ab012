"""`/v1/requests`: the request log as the Lava SDK reads it, and post-request reporting."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest, NotFound
from ..forward_token import ForwardToken
from ..log_sinks import Filters
from ..metadata import parse_metadata
from ..clock import now_iso
from ..metering.record import RequestRecord
from ..money import usd
from .common import (decode_cursor, encode_cursor, json_body, limit_param, metadata_filters, query,
                     reply)

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..auth import Principal
    from ..services import Services

_REPORTED_COUNTS = ("input_tokens", "output_tokens", "input_characters", "output_characters", "input_seconds",
                    "output_seconds")


def _charge(r: RequestRecord) -> dict[str, Any]:
    """What the meter charged (zero when no meter applies), with the tier that priced it."""
    if r.payer != "customer" or r.charge_rate is None:
        return {"amount": "0", "rate_type": None, "breakdown": []}
    tokens, chars, secs = (r.input_tokens + r.output_tokens, r.input_characters + r.output_characters,
                           r.input_seconds + r.output_seconds)
    rate_type, tier_type, start, rate = r.charge_rate.split("|")
    return {"amount": usd(r.charge_nanos), "rate_type": rate_type, "breakdown": [{
        "tier": {"start": int(start), "rate": rate, "type": tier_type},
        "tokens": tokens, "characters": chars, "seconds": secs, "cost": usd(r.charge_nanos)}]}


def to_api(r: RequestRecord) -> dict[str, Any]:
    """A log record in Lava's Request shape, with our extra fields beside Lava's."""
    def money(n: int | None) -> str | None:
        return usd(n) if n is not None else None
    return {
        "request_id": r.request_id,
        "status": "completed" if r.outcome == "completed" and r.status_code < 400 else "error",
        "customer_id": r.customer_id,
        "meter_id": r.meter_id,
        "provider": r.provider,
        "provider_key_type": r.provider_key_type,
        "model": r.model,
        "endpoint": r.endpoint,
        "response_id": r.response_id,
        "model_usage": {
            "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
            "total_tokens": r.input_tokens + r.output_tokens,
            "input_characters": r.input_characters, "output_characters": r.output_characters,
            "total_characters": r.input_characters + r.output_characters,
            "input_seconds": r.input_seconds, "output_seconds": r.output_seconds,
            "total_seconds": r.input_seconds + r.output_seconds,
            "input_cost": money(r.input_cost_nanos), "output_cost": money(r.output_cost_nanos),
            "total_cost": money(r.cost_nanos),
        },
        "cost": money(r.cost_nanos),
        "charge": _charge(r),
        "metadata": r.metadata or {},
        "timestamp": r.created_at,
        "created_at": r.created_at,
        # ours
        "outcome": r.outcome,
        "error_reason": r.error_reason,
        "status_code": r.status_code,
        "meter_slug": r.meter_slug,
        "cached_tokens": r.cached_tokens,
        "cache_write_tokens": r.cache_write_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "usage_source": r.usage_source,
        "priced": r.priced,
        "stream": r.stream,
        "latency_ms": r.latency_ms,
        "overhead_ms": r.overhead_ms,
        "payer": r.payer,
        "operator_cost": money(r.operator_nanos),  # what the merchant paid the operator (provider cost or fee)
        "uncollected": money(r.uncollected_nanos) if r.uncollected_nanos else None,
        "region": r.region,
    }


STATUSES = ("completed", "error")


def filters_of(mid: str, q: dict[str, str]) -> Filters:
    """The list's filters from its query: customer_id, meter_id, metadata_filters, and ours, model and status."""
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"status: one of {', '.join(STATUSES)}")
    return Filters(mid, q.get("customer_id") or None, q.get("meter_id") or None,
                   metadata_filters(q.get("metadata_filters")), model=q.get("model") or None, status=status)


async def list_requests(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    mid = caller.merchant_id
    q = query(scope)
    limit = limit_param(q)
    filters = filters_of(mid, q)
    rows = await svc.log_sink.list(filters, decode_cursor(q.get("cursor")), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    reply(proto, 200, {
        "data": [to_api(r) for r in rows],
        "has_more": more,
        "next_cursor": encode_cursor(rows[-1].created_at, rows[-1].request_id) if more else None,
    })


async def get_request(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal, request_id: str) -> None:
    mid = caller.merchant_id
    record = await svc.log_sink.get(mid, request_id)
    if record is None:
        raise NotFound(f"no request {request_id!r}")
    reply(proto, 200, to_api(record))


async def create_request(svc: Services, scope: Scope, proto: HTTPProtocol, caller: Principal) -> None:
    """Post-request reporting: usage that did not pass through the gateway. Idempotent by request_id."""
    mid = caller.merchant_id
    body = await json_body(proto, headers=scope.headers)
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= 200:
        raise InvalidRequest("request_id: required, a string of 1 to 200 characters")
    existing = await svc.log_sink.get(mid, request_id)
    if existing is not None:
        reply(proto, 200, to_api(existing))
        return
    record = RequestRecord(request_id=request_id, created_at=now_iso(), merchant_id=mid, usage_source="reported")
    for name in ("customer_id", "meter_slug", "provider", "model"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"{name}: must be a string")
        setattr(record, name, value or None)
    for name in _REPORTED_COUNTS:
        value = body.get(name, 0) or 0
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**12:
            raise InvalidRequest(f"{name}: must be a whole number from 0")
        setattr(record, name, value)
    if body.get("metadata") is not None:
        if not isinstance(body["metadata"], dict):
            raise InvalidRequest("metadata: must be an object of string values")
        from msgspec.json import encode
        record.metadata = parse_metadata(encode(body["metadata"]).decode(), "metadata")
    billing = await svc.billing.billing_of(mid, ForwardToken("-", record.customer_id, record.meter_slug,
                                                           disable_billing=bool(body.get("disable_billing"))))
    record.payer = billing.payer_kind
    record.meter_id = billing.meter.meter_id if billing.meter else None
    record.status_code = 200
    await svc.commit_batch([record])
    reply(proto, 201, to_api(record))
