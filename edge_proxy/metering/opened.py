"""An upstream attempt in flight, as the journal keeps it, and the record it is billed as if the gateway dies.

Right before an attempt is sent upstream the request path journals an *opened* entry (`opened_line`); when the
attempt ends, its final record follows. On replay, an opened entry without its final record is an attempt the
gateway died in the middle of. The provider may have served it, so it is never free: it is billed as a cut
request (`cut_record`): outcome `error`, error_reason `gateway_crashed`, usage_source `estimated`, the input
estimated as one token per four request-body bytes and the output as 0, with status 200 so that it is charged
like any served request (a status of 400 or more is never charged).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

from ..clock import iso_at
from .record import RequestRecord

if TYPE_CHECKING:
    from ..request_path.exchange import Exchange

CRASHED = "gateway_crashed"


class Opened(msgspec.Struct, array_like=True):
    """The opened entry: a JSON array (a final record is a JSON object), in this order."""

    request_id: str
    at: float  # time.time() when it was sent
    merchant_id: str
    customer_id: str | None
    meter_slug: str | None
    payer: str
    provider_key_type: str
    spend_key_id: str | None
    hold_id: str | None
    reserved_nanos: int
    merchant_hold_id: str | None  # a customer-billed request's reservation on its merchant's wallet
    merchant_reserved_nanos: int
    provider: str
    model: str | None
    target_path: str  # the upstream path with its query; the record keeps the path only
    stream: bool
    body_bytes: int
    free: bool  # an endpoint the catalogue marks free (a token count)
    region: str | None
    metadata: dict[str, str] | None


_encode_lines = msgspec.json.Encoder().encode_lines
decode_opened = msgspec.json.Decoder(Opened).decode


def opened_line(ex: Exchange) -> bytes:
    """The journal line for an attempt about to be sent: a tuple, not an `Opened`, because building a Struct
    per request costs more than the tuple and encodes to the same JSON array; `encode_lines` of a 1-tuple writes the
    array and its newline in one buffer, where `encode(x) + b"\\n"` copies it again."""
    p, a, key, billing = ex.principal, ex.attempt, ex.principal.spend_key, ex.principal.billing
    payer, payer_nanos, merchant, merchant_nanos = ex.reservation  # one unpacking, not six NamedTuple properties
    assert a is not None  # an attempt is sent only once planned
    return _encode_lines(((
        ex.request_id, time.time(), p.merchant_id, p.customer_id, p.meter_slug,
        billing.payer_kind if billing is not None else "merchant", "managed" if p.provider_key is None else "unmanaged",
        key.spend_key_id if key is not None else None, payer.hold_id if payer is not None else None,
        payer_nanos, merchant.hold_id if merchant is not None else None, merchant_nanos,
        a.provider.name, a.model, a.target.path, a.stream, len(a.body), a.free, ex.svc.settings.region, ex.metadata),))


def cut_record(o: Opened) -> RequestRecord:
    """The record of an attempt whose final record never reached the journal (see the module's rule)."""
    return RequestRecord(
        request_id=o.request_id, created_at=iso_at(o.at), merchant_id=o.merchant_id, customer_id=o.customer_id,
        meter_slug=o.meter_slug, provider=o.provider, provider_key_type=o.provider_key_type, model=o.model,
        endpoint=o.target_path.split("?", 1)[0], stream=o.stream, status_code=200, outcome="error",
        error_reason=CRASHED, input_tokens=o.body_bytes // 4, output_tokens=0, usage_source="estimated",
        payer=o.payer, reserved_nanos=o.reserved_nanos, hold_id=o.hold_id, spend_key_id=o.spend_key_id,
        merchant_reserved_nanos=o.merchant_reserved_nanos, merchant_hold_id=o.merchant_hold_id, free=o.free,
        region=o.region, metadata=o.metadata)
