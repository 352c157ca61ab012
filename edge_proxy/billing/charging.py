"""The billing rules: who pays whom for a request, how much, and what must be reserved before it is sent.

Every charge is a transfer between two accounts (ledger.py); the operator's managed key is paid for by the
merchant, and a customer pays the merchant:

- merchant-billed, managed key: merchant -> operator, the provider cost. Reserved: the most it can cost.
- merchant-billed, BYOK: merchant -> operator, the fee (`EDGE_PROXY_BYOK_FEE`). Reserved: the fee.
- customer-billed (`customer_id` + `meter_slug`), managed key: customer -> merchant, the meter's price; merchant ->
  operator, the provider cost. Reserved: on the customer, the most the meter can charge; on the merchant, the
  most the provider cost can exceed the meter's price (only a fixed meter, or a discount, can price under cost).
- customer-billed, BYOK: customer -> merchant, the meter's price; merchant -> operator, the fee. Reserved: the
  meter's most on the customer, the fee on the merchant.
- `disable_billing`: merchant -> operator, the provider cost (managed) or the fee (BYOK). Reserved: the same.

A request answered with an error status is not charged; a stream cut mid-way is charged for the usage that passed.
A meter with `meter_slug` alone (no customer) only tracks usage: the merchant pays as for a merchant-billed request.

Meter prices (`tiers` are volume tiers: the tier whose `start` the payer's units on this meter have reached):
- `fixed` + `tokens_1m`: rate per 1M tokens (input + output); `characters_1m`: per 1M characters; `minutes`:
  per minute of reported seconds; `requests`: per request. Characters and minutes are known only from
  post-request reports (`POST /v1/requests`), so a proxied request on such a meter is refused (it cannot be priced).
- `percentage`: provider list cost plus `rate` percent of it.
Every charge is computed in Decimal and rounded once to whole nano-dollars, half to even.

The reservation is the most a request can cost, from its bounds (bounds.py: input bytes as tokens, an allowance
per image, and its output limit or the model's), at the highest rate that can apply (the provider's highest input
and output rates, the meter's highest tier). A reservation rounds up, a charge half to even. A reservation runs
on every request, so it is worked out in exact integers (a meter's rates as fractions, derived once per meter):
the same figures as the Decimal rules, without their cost (tests/test_quote.py holds it to them).
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import NamedTuple

import msgspec

from ..metering.pricing import ModelPrice
from .accounts import Meter, Tier
from .ledger import MAX_AMOUNT_NANOS

NANO = Decimal(1_000_000_000)
_ONE = Decimal(1)
MILLION = Decimal(1_000_000)
UNPRICEABLE_METERS = ("characters_1m", "minutes")  # only post-request reports can count their units


class Billing(msgspec.Struct, frozen=True, gc=False):
    """How one principal's requests are billed, resolved once and cached with the principal."""

    payer_kind: str          # "merchant" | "customer" | "none" (disable_billing)
    payer_id: str | None     # the paying merchant or customer (None for "none")
    meter: Meter | None = None
    byok_fee_nanos: int = 0  # per request, unmanaged only
    merchant_id: str = ""    # the merchant behind the request: pays the operator for the provider's side


class Quote(NamedTuple):
    """The most a request can cost, before it is sent: what to reserve from whom."""

    max_cost: int   # the most the provider's list price can come to (0 when unpriced: BYOK only)
    payer: int      # the most the payer (the customer, or the merchant when it pays) can be charged
    merchant: int   # the most a customer-billed or disable_billing request can take from the merchant's wallet


# A NamedTuple's own constructor is a Python-level __new__ run through type.__call__ (~2.9k instructions under
# callgrind, bench/RESULTS.md wave/front5); tuple.__new__ with the fields in order makes the same Quote (~1.4k).
# Every quote runs on every request, so the request path builds its Quotes this way.
_tuple_new = tuple.__new__


def _nanos(value: Decimal) -> int:
    return int((value * NANO).quantize(_ONE, rounding=ROUND_HALF_EVEN))


def _ceil_div(n: int, d: int) -> int:
    return -(-n // d)  # a reservation rounds up: it must cover the charge


def max_provider_cost(price: ModelPrice | None, input_tokens: int, max_out: int) -> int:
    """Runs on every request: integer arithmetic on the price table's pico-dollar rates, at the highest rate any
    input token and any output token can cost (1-hour cache writes, audio, and a long-context tier unless the
    prompt is too short to reach it)."""
    if price is None:
        return 0
    bands = price.reserve_bands
    if len(bands) == 1:  # one tier, the usual price: `reserve_rates` without its call
        _, p_in, p_out = bands[0]
    else:
        p_in, p_out = price.reserve_rates(input_tokens)
    return _ceil_div(input_tokens * p_in + max_out * p_out, 10**9)


def quote(billing: Billing, price: ModelPrice | None, input_tokens: int, max_out: int, unmanaged: bool) -> Quote:
    """The reservations of a request whose prompt has at most `input_tokens` tokens and whose answer at most
    `max_out` (see the module's table)."""
    cost = max_provider_cost(price, input_tokens, max_out)
    operator = billing.byok_fee_nanos if unmanaged else cost  # what the merchant pays the operator
    if billing.payer_kind == "merchant":
        return _tuple_new(Quote, (cost, operator, 0))
    if billing.payer_kind == "none":
        return _tuple_new(Quote, (cost, 0, operator))
    meter = billing.meter
    assert meter is not None  # a customer pays only through a meter (BillingEngine.billing_of)
    r = _rates(meter)  # once per quote: the charge and the shortfall read the same rates
    charge = _max_meter_charge(meter, r, cost, input_tokens + max_out)
    if unmanaged:
        return _tuple_new(Quote, (cost, charge, operator))
    return _tuple_new(Quote, (cost, charge, _max_shortfall(meter, r, price, cost, input_tokens, max_out)))


def _tier(meter: Meter, units: int) -> Tier:
    chosen = meter.tiers[0]
    for tier in meter.tiers:
        if units >= tier.start:
            chosen = tier
    return chosen


_UNITS_AT = {"tokens_1m": 0, "characters_1m": 1, "minutes": 2, "requests": 3}  # in meter_units' tuple
_PER = {"tokens_1m": MILLION, "characters_1m": MILLION, "minutes": Decimal(60), "requests": Decimal(1)}


def meter_units(meter: Meter, tokens: int, characters: int, seconds: int) -> int:
    return (tokens, characters, seconds, 1)[_UNITS_AT[meter.tier_type]]


def meter_charge(meter: Meter, cost_nanos: int, tokens: int, characters: int, seconds: int,
                 units_before: int) -> tuple[int, Tier]:
    """(charge in nanos, the tier that priced it) for one request on a meter: at most `MAX_AMOUNT_NANOS`, the most
    any one amount may be. A meter's rate may be up to 1e9 USD per unit, and a reported request up to 1e12 units:
    uncapped, such a charge (up to 1e24 nanos) overflowed the request log's 64-bit columns, a 500 for a report and,
    for a proxied request, a batch the log writer retried for ever. No payer holds that much: the charge takes what
    the payer has, and the rest is recorded as uncollected (settle.py)."""
    tier = _tier(meter, units_before)
    if meter.rate_type == "percentage":
        charge = max(0, _nanos(Decimal(cost_nanos) / NANO * (1 + tier.rate / 100)))
    else:
        charge = _nanos(Decimal(meter_units(meter, tokens, characters, seconds)) * tier.rate / _PER[meter.tier_type])
    return min(charge, MAX_AMOUNT_NANOS), tier


class _MeterRates(NamedTuple):
    """What a quote needs of a meter, derived once per meter object: its highest and lowest tier rates as exact
    fractions (numerator, denominator), and the lowest in nano- and pico-dollars, rounded down."""

    high_n: int
    high_d: int
    low_n: int
    low_d: int
    low_nanos: int  # floor(lowest rate * 1e9)
    low_pico: int   # floor(lowest rate * 1e12)
    pct_n: int      # a percentage meter's highest charge, cost * (1 + rate / 100), as cost * pct_n / pct_d
    pct_d: int


# id(meter) -> (the meter, its rates). The entry holds its meter, so no other object can take that id while the
# entry is here. A Meter is frozen and nothing changes its tiers in place: a meter changed in the database is read
# back as a new object, with rates of its own.
_METER_RATES: dict[int, tuple[Meter, _MeterRates]] = {}


def _rates(meter: Meter) -> _MeterRates:
    entry = _METER_RATES.get(id(meter))
    if entry is not None and entry[0] is meter:
        return entry[1]
    high_n, high_d = max(t.rate for t in meter.tiers).as_integer_ratio()
    low_n, low_d = min(t.rate for t in meter.tiers).as_integer_ratio()
    rates = _MeterRates(high_n, high_d, low_n, low_d, low_n * 10**9 // low_d, low_n * 10**12 // low_d,
                        100 * high_d + high_n, 100 * high_d)
    if len(_METER_RATES) >= 4096:  # meters come and go: keep the memo bounded
        _METER_RATES.clear()
    _METER_RATES[id(meter)] = (meter, rates)
    return rates


def max_meter_charge(meter: Meter, max_cost_nanos: int, max_tokens: int) -> int:
    """The most a meter can charge a request of at most `max_cost_nanos` provider cost and `max_tokens` tokens,
    at its highest tier: the Decimal rules of `meter_charge`, rounded up, in exact integer arithmetic."""
    return _max_meter_charge(meter, _rates(meter), max_cost_nanos, max_tokens)


def _max_meter_charge(meter: Meter, r: _MeterRates, max_cost_nanos: int, max_tokens: int) -> int:
    if meter.rate_type == "percentage":  # cost * (1 + rate / 100)
        return max(0, -(-max_cost_nanos * r.pct_n // r.pct_d))  # _ceil_div, without its call
    if meter.tier_type == "tokens_1m":  # tokens * rate / 1M, in nanos
        return max(0, _ceil_div(max_tokens * r.high_n * 1000, r.high_d))
    if meter.tier_type == "requests":
        return max(0, _ceil_div(r.high_n * 10**9, r.high_d))
    raise ValueError(f"a {meter.tier_type} meter cannot price a proxied request")  # UNPRICEABLE_METERS


def max_shortfall(meter: Meter, price: ModelPrice | None, max_cost: int, input_tokens: int, max_out: int) -> int:
    """The most the provider cost of a customer-billed request can exceed what its meter charges: the merchant
    pays that difference, so it is reserved from the merchant's wallet. Zero for a percentage meter without a
    discount; for a fixed meter, each token (or the request) at the provider's highest rate less the meter's
    lowest."""
    return _max_shortfall(meter, _rates(meter), price, max_cost, input_tokens, max_out)


def _max_shortfall(meter: Meter, r: _MeterRates, price: ModelPrice | None, max_cost: int, input_tokens: int,
                   max_out: int) -> int:
    if meter.rate_type == "percentage":  # a discount (a negative rate) leaves cost * -rate / 100 unpaid
        return 0 if r.low_n >= 0 else max(0, _ceil_div(max_cost * -r.low_n, 100 * r.low_d))
    if meter.tier_type == "requests":
        return max(0, max_cost - r.low_nanos)
    if price is None:
        return 0
    p_in, p_out = price.reserve_rates(input_tokens)  # pico-dollars per 1M tokens
    low = r.low_pico  # the meter's rate, in the same unit
    return _ceil_div(input_tokens * max(0, p_in - low) + max_out * max(0, p_out - low), 10**9)
