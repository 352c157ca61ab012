"""One request's log record: what the gateway knows once the answer has gone out.

The hot path fills in what it measured (who, where, status, timing, the usage it saw) and hands the record to
the log queue; pricing and billing fill in the money later, off the path.

The rule for streams that do not finish (it decides what a cut stream costs):
- `completed`: the response ended normally (whatever the provider's status).
- `error`: the gateway or the provider failed; for a stream the provider cut, the usage that passed is kept
  and `error_reason` says why.
- `partial`: the client went away mid-stream; the upstream request is cancelled and the usage that passed is
  kept.
When the provider's own usage never arrived (an OpenAI stream without `stream_options.include_usage`, or a
stream cut before its usage event), the output is estimated as one token per relayed content event and the
input as one token per four request-body bytes, and `usage_source` says `estimated`. A request is never
logged as free just because its usage was not reported.
"""
from __future__ import annotations

import msgspec

from ..clock import now_iso  # noqa: F401 - re-exported: records are stamped with it

OUTCOMES = ("completed", "error", "partial")


# Not kw_only: `Exchange.finish` (request_path/exchange.py) builds each record in one positional call, every field
# in this order (tests/test_exchange_record.py pins it). A new field goes at the end, or into that call too.
class RequestRecord(msgspec.Struct, omit_defaults=True):
    request_id: str
    created_at: str
    merchant_id: str
    customer_id: str | None = None
    meter_slug: str | None = None
    meter_id: str | None = None
    provider: str | None = None
    provider_key_type: str = "managed"  # managed | unmanaged
    model: str | None = None
    endpoint: str | None = None
    stream: bool = False
    status_code: int = 0
    outcome: str = "completed"
    error_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0  # the 1-hour-TTL part of cache_write_tokens (Anthropic)
    input_audio_tokens: int = 0  # the audio part of input_tokens
    cached_audio_tokens: int = 0  # the audio part of cached_tokens
    output_audio_tokens: int = 0  # the audio part of output_tokens
    input_characters: int = 0
    output_characters: int = 0
    input_seconds: int = 0
    output_seconds: int = 0
    usage_source: str = "provider"  # provider | estimated | none | reported
    cost_nanos: int | None = None
    input_cost_nanos: int | None = None
    output_cost_nanos: int | None = None
    priced: bool = False
    charge_nanos: int = 0
    charge_rate: str | None = None  # the meter tier that priced it: rate_type|tier_type|start|rate
    payer: str = "merchant"  # merchant | customer | none
    reserved_nanos: int = 0
    hold_id: str | None = None
    spend_key_id: str | None = None
    latency_ms: float = 0.0
    overhead_ms: float = 0.0
    metadata: dict[str, str] | None = None
    response_id: str | None = None
    # the ledger (billing/charging.py): charge_nanos is what the payer paid; operator_nanos what the merchant paid
    # the operator (provider cost, or the BYOK fee); uncollected_nanos what a payer could not cover
    operator_nanos: int = 0
    uncollected_nanos: int = 0
    merchant_reserved_nanos: int = 0  # a customer-billed request's reservation on its merchant's wallet
    merchant_hold_id: str | None = None
    region: str | None = None  # EDGE_PROXY_REGION of the gateway that served it
    free: bool = False  # an endpoint the catalogue marks free (a token count): nobody is charged for it
    # `response_id` is an OpenAI Responses answer's id; these are its output items' ids, space-separated. On the
    # managed key both are what the merchant owns (log_sinks/owners.py).
    output_item_ids: str | None = None


_encode_lines = msgspec.json.Encoder().encode_lines
_decode = msgspec.json.Decoder(RequestRecord).decode


def to_json_line(record: RequestRecord) -> bytes:
    return _encode_lines((record,))  # the JSON and its newline in one buffer


def from_json_line(line: bytes) -> RequestRecord:
    return _decode(line)
