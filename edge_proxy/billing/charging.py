"""The billing rules: who pays for a request, what they are charged, and what must be reserved first.

Who pays:
- a token with only `secret_key` (or a raw secret key), or with `meter_slug` alone: the merchant's wallet, at
  provider cost (zero markup); with `meter_slug` the usage is also tracked on the meter;
- `customer_id` + `meter_slug`: that customer's balance, at the meter's price;
- `disable_billing` with a customer: tracked on the customer and the meter, charged to nobody;
- unmanaged (BYOK, `provider_key` in the token): no provider cost; the merchant pays the service fee
  (EDGE_PROXY_BYOK_FEE, USD per request); a customer is still charged the meter's price.

Meter prices (`tiers` are volume tiers: the tier whose `start` the payer's units on this meter have reached):
- `fixed` + `tokens_1m`: rate per 1M tokens (input + output); `characters_1m`: per 1M characters; `minutes`:
  per minute of reported seconds; `requests`: per request;
- `percentage`: provider list cost plus `rate` percent of it.
Every charge is computed in Decimal and rounded once to whole nano-dollars, half to even.

The reservation is the most a request can cost before it is sent: input counted as one token per request-body
byte (a byte-level tokenizer never makes more tokens than bytes), plus `max_tokens` (or the model's output limit
from the price table) at the output price; for meters, at the highest tier rate. Images, audio and other inputs
whose token count is not bounded by their bytes can exceed it: that excess is the overspend bound.
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import msgspec

from ..metering.pricing import ModelPrice
from .accounts import Meter, Tier

NANO = Decimal(1_000_000_000)
MILLION = Decimal(1_000_000)


class Billing(msgspec.Struct, frozen=True, gc=False):
    """How one principal's requests are billed, resolved once and cached with the principal."""

    payer_kind: str          # "merchant" | "customer" | "none"
    payer_id: str | None
    meter: Meter | None = None
    byok_fee_nanos: int = 0  # per request, unmanaged only


class Limits(msgspec.Struct):
    model: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    max_output_tokens: int | None = None


_limits = msgspec.json.Decoder(Limits).decode


def request_limits(body: bytes) -> Limits:
    """The model and output limit a request names (OpenAI, Anthropic and Responses shapes)."""
    if body[:1] != b"{":
        return Limits()
    try:
        return _limits(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return Limits()


def _nanos(value: Decimal) -> int:
    return int((value * NANO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def max_provider_cost(price: ModelPrice | None, body_len: int, max_out: int) -> int:
    """Runs on every request: integer arithmetic on the price table's pico-dollar rates, at the highest rate any
    input token and any output token can cost (1-hour cache writes, audio, and a long-context tier unless the
    body is too short to reach it: a text prompt has no more tokens than bytes)."""
    if price is None:
        return 0
    p_in, p_out = price.reserve_rates(body_len)
    return _ceil_div(body_len * p_in + max_out * p_out, 10**9)


def _ceil_div(n: int, d: int) -> int:
    return -(-n // d)  # a reservation rounds up: it must cover the charge


def _tier(meter: Meter, units: int) -> Tier:
    chosen = meter.tiers[0]
    for tier in meter.tiers:
        if units >= tier.start:
            chosen = tier
    return chosen


def meter_units(meter: Meter, tokens: int, characters: int, seconds: int) -> int:
    return {"tokens_1m": tokens, "characters_1m": characters, "minutes": seconds, "requests": 1}[meter.tier_type]


def meter_charge(meter: Meter, cost_nanos: int, tokens: int, characters: int, seconds: int,
                 units_before: int) -> tuple[int, Tier]:
    """(charge in nanos, the tier that priced it) for one request on a meter."""
    tier = _tier(meter, units_before)
    if meter.rate_type == "percentage":
        return _nanos(Decimal(cost_nanos) / NANO * (1 + tier.rate / 100)), tier
    units = meter_units(meter, tokens, characters, seconds)
    per = {"tokens_1m": MILLION, "characters_1m": MILLION, "minutes": Decimal(60), "requests": Decimal(1)}
    return _nanos(Decimal(units) * tier.rate / per[meter.tier_type]), tier


def max_meter_charge(meter: Meter, max_cost_nanos: int, max_tokens: int) -> int:
    rate = max(t.rate for t in meter.tiers)
    if meter.rate_type == "percentage":
        return _nanos(Decimal(max_cost_nanos) / NANO * (1 + rate / 100))
    if meter.tier_type == "tokens_1m":
        return _nanos(Decimal(max_tokens) * rate / MILLION)
    if meter.tier_type == "requests":
        return _nanos(rate)
    return 0  # characters and minutes are only known from post-request reports


def reservation(billing: Billing, price: ModelPrice | None, body_len: int, max_out: int, unmanaged: bool) -> int:
    """The most this request can cost its payer."""
    if billing.payer_kind == "none":
        return 0
    cost = max_provider_cost(price, body_len, max_out)
    if billing.payer_kind == "customer" and billing.meter is not None:
        return max_meter_charge(billing.meter, cost, body_len + max_out)
    return billing.byok_fee_nanos if unmanaged else cost
