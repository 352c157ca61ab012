"""A quote's meter arithmetic: exact integers derived once per meter, against the Decimal rules they replace.

The Decimal functions below are the rules as they were written first (charge in Decimal, reservation rounded up
to whole nano-dollars); the quote must give the same figures, and never less than what `meter_charge` (the
charge the log writer makes) can take for the same request.
"""
from __future__ import annotations

import random
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest

from edge_proxy.billing.accounts import Meter, Tier
from edge_proxy.billing.charging import max_meter_charge, max_shortfall, meter_charge
from edge_proxy.metering.pricing import PriceTable

NANO = Decimal(1_000_000_000)
MILLION = Decimal(1_000_000)


def _ceil_nanos(usd: Decimal) -> int:
    return max(0, int((usd * NANO).to_integral_value(rounding=ROUND_CEILING)))


def decimal_max_meter_charge(meter: Meter, max_cost_nanos: int, max_tokens: int) -> int:
    rate = max(t.rate for t in meter.tiers)
    if meter.rate_type == "percentage":
        return _ceil_nanos(Decimal(max_cost_nanos) / NANO * (1 + rate / 100))
    if meter.tier_type == "tokens_1m":
        return _ceil_nanos(Decimal(max_tokens) * rate / MILLION)
    return _ceil_nanos(rate)  # requests


def decimal_max_shortfall(meter: Meter, price_rates: tuple[int, int] | None, max_cost: int, input_tokens: int,
                          max_out: int) -> int:
    low = min(t.rate for t in meter.tiers)
    if meter.rate_type == "percentage":
        return 0 if low >= 0 else _ceil_nanos(Decimal(max_cost) / NANO * (-low / 100))
    if meter.tier_type == "requests":
        return max(0, max_cost - int((low * NANO).to_integral_value(ROUND_FLOOR)))
    if price_rates is None:
        return 0
    p_in, p_out = price_rates
    r = int((low * 10**12).to_integral_value(ROUND_FLOOR))
    return -(-(input_tokens * max(0, p_in - r) + max_out * max(0, p_out - r)) // 10**9)


def meter(rate_type: str, tier_type: str, *rates: str) -> Meter:
    tiers = [Tier(i * 1000, Decimal(r)) for i, r in enumerate(rates)]
    return Meter("mtr_1", "mer_1", "m", "m", rate_type, tier_type, tiers, "2026-01-01T00:00:00Z")


METERS = [  # (id, meter)
    ("a percentage meter of 10 %", meter("percentage", "tokens_1m", "10")),
    ("a percentage meter at 0 %", meter("percentage", "tokens_1m", "0")),
    ("a percentage meter with 12 decimal places", meter("percentage", "tokens_1m", "33.333333333333")),
    ("a percentage meter with a discount tier", meter("percentage", "tokens_1m", "5", "-7.5")),
    ("a fixed meter per 1M tokens", meter("fixed", "tokens_1m", "0.15")),
    ("a fixed meter per 1M tokens with tiers", meter("fixed", "tokens_1m", "2.5", "1.000000000001", "0.3")),
    ("a fixed meter per request", meter("fixed", "requests", "0.002")),
    ("a fixed meter per request with a tiny rate", meter("fixed", "requests", "0.000000000001")),
    ("a fixed meter per request with tiers", meter("fixed", "requests", "0.01", "0.0075")),
    ("a large fixed rate", meter("fixed", "tokens_1m", "999999999.999999999999")),
]
AMOUNTS = [(0, 0, 0), (1, 1, 1), (1_234_567, 100, 64), (10**12, 2_000_000, 128_000), (999_999_999_999, 7, 10**7)]


@pytest.mark.parametrize("m", [m for _, m in METERS], ids=[i for i, _ in METERS])
@pytest.mark.parametrize("cost,input_tokens,max_out", AMOUNTS)
def test_the_quote_of_a_meter_is_the_decimal_rule(m, cost, input_tokens, max_out):
    assert max_meter_charge(m, cost, input_tokens + max_out) == decimal_max_meter_charge(m, cost,
                                                                                       input_tokens + max_out)
    price = PriceTable.load().lookup("openai", "gpt-4o-mini")
    assert price is not None
    rates = price.reserve_rates(input_tokens)
    assert max_shortfall(m, price, cost, input_tokens, max_out) == \
        decimal_max_shortfall(m, rates, cost, input_tokens, max_out)
    assert max_shortfall(m, None, cost, input_tokens, max_out) == \
        decimal_max_shortfall(m, None, cost, input_tokens, max_out)


def test_random_meters_and_amounts_agree_with_the_decimal_rule_and_cover_the_charge():
    rng = random.Random(17)
    for _ in range(3000):
        rate_type = rng.choice(["percentage", "fixed"])
        tier_type = "tokens_1m" if rate_type == "percentage" else rng.choice(["tokens_1m", "requests"])
        rates = [str(Decimal(rng.randrange(0, 10**15)).scaleb(-rng.randrange(0, 13))) for _ in range(3)]
        m = meter(rate_type, tier_type, *rates)
        cost, tokens = rng.randrange(0, 10**13), rng.randrange(0, 10**7)
        most = max_meter_charge(m, cost, tokens)
        assert most == decimal_max_meter_charge(m, cost, tokens), (m, cost, tokens)
        for units in (0, 1500, 10**9):  # whichever tier prices it, the charge fits in the reservation
            charge, _ = meter_charge(m, cost, tokens, 0, 0, units)
            assert charge <= most, (m, cost, tokens, units)


def test_a_meter_changed_in_the_database_is_quoted_at_its_new_rates():
    before, after = meter("fixed", "requests", "0.5"), meter("fixed", "requests", "2")
    assert max_meter_charge(before, 0, 0) == 500_000_000
    assert max_meter_charge(after, 0, 0) == 2_000_000_000
    assert max_meter_charge(before, 0, 0) == 500_000_000


def test_a_meter_that_cannot_price_a_proxied_request_still_raises():
    with pytest.raises(ValueError):
        max_meter_charge(meter("fixed", "minutes", "1"), 1, 1)
