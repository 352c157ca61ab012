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
from edge_proxy.billing.charging import Billing, Quote, _rates, max_meter_charge, max_shortfall, meter_charge, quote
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


# --- the whole quote: who is reserved what (charging.quote builds its Quote by tuple.__new__ and reads a meter's
# rates once; these rows hold it to the module's table, from the Decimal rules above and the price's own rates)

def _list_cost(price, input_tokens: int, max_out: int) -> int:
    if price is None:
        return 0
    p_in, p_out = price.reserve_rates(input_tokens)
    return -(-(input_tokens * p_in + max_out * p_out) // 10**9)


def _table_quote(payer_kind: str, m: Meter | None, price, input_tokens: int, max_out: int, unmanaged: bool,
                 fee: int) -> tuple[int, int, int]:
    cost = _list_cost(price, input_tokens, max_out)
    operator = fee if unmanaged else cost
    if payer_kind == "merchant":
        return cost, operator, 0
    if payer_kind == "none":
        return cost, 0, operator
    assert m is not None
    charge = decimal_max_meter_charge(m, cost, input_tokens + max_out)
    rates = None if price is None else price.reserve_rates(input_tokens)
    return cost, charge, operator if unmanaged else decimal_max_shortfall(m, rates, cost, input_tokens, max_out)


PRICES = ["gpt-4o-mini (one tier)", "claude-sonnet-4-5 (a long-context tier)", "no price"]


@pytest.mark.parametrize("price_id", PRICES)
@pytest.mark.parametrize("m", [m for _, m in METERS], ids=[i for i, _ in METERS])
@pytest.mark.parametrize("payer_kind", ["customer", "merchant", "none"])
@pytest.mark.parametrize("unmanaged", [False, True], ids=["managed", "byok"])
def test_a_quote_is_the_module_table(price_id, m, payer_kind, unmanaged):
    table = PriceTable.load()
    price = {PRICES[0]: table.lookup("openai", "gpt-4o-mini"), PRICES[1]: table.lookup("anthropic", "claude-sonnet-4-5"),
             PRICES[2]: None}[price_id]
    assert price_id == PRICES[2] or len(price.reserve_bands) == (1 if price_id == PRICES[0] else 2)
    billing = Billing(payer_kind, None if payer_kind == "none" else "cus_1", m, 2_500_000, "mer_1")
    for input_tokens, max_out in [(0, 0), (1, 1), (120, 64), (200_000, 4096), (200_001, 4096), (10**7, 128_000)]:
        q = quote(billing, price, input_tokens, max_out, unmanaged)
        assert type(q) is Quote and q._fields == ("max_cost", "payer", "merchant")
        assert tuple(q) == _table_quote(payer_kind, m, price, input_tokens, max_out, unmanaged, 2_500_000), \
            (input_tokens, max_out)
        assert (q.max_cost, q.payer, q.merchant) == tuple(q)


def test_the_quotes_of_known_prices_in_nanos():
    """Exact figures: gpt-4o-mini ($0.15 in, $0.60 out per 1M) and claude-sonnet-4-5 across its 200k tier."""
    table = PriceTable.load()
    mini, sonnet = table.lookup("openai", "gpt-4o-mini"), table.lookup("anthropic", "claude-sonnet-4-5")
    pct = meter("percentage", "tokens_1m", "10")
    # gpt-4o-mini, 120 + 64 tokens: 120 x $0.15/M + 64 x $0.60/M = 56,400 nanos
    assert quote(Billing("merchant", "mer_1"), mini, 120, 64, False) == Quote(56_400, 56_400, 0)
    assert quote(Billing("merchant", "mer_1", byok_fee_nanos=1_000), mini, 120, 64, True) == Quote(56_400, 1_000, 0)
    assert quote(Billing("none", None, pct), mini, 120, 64, False) == Quote(56_400, 0, 56_400)
    assert quote(Billing("customer", "cus_1", pct), mini, 120, 64, False) == Quote(56_400, 62_040, 0)
    assert quote(Billing("customer", "cus_1", pct), None, 120, 64, True) == Quote(0, 0, 0)
    assert quote(Billing("customer", "cus_1", meter("fixed", "requests", "0.002")), mini, 120, 64, False) == \
        Quote(56_400, 2_000_000, 0)
    assert quote(Billing("customer", "cus_1", meter("fixed", "requests", "0.00001")), mini, 120, 64, False) == \
        Quote(56_400, 10_000, 46_400)
    # claude-sonnet-4-5: $6/M (1-hour writes) and $15/M under 200k tokens; $12/M and $22.50/M above
    assert quote(Billing("merchant", "mer_1"), sonnet, 1000, 100, False) == Quote(7_500_000, 7_500_000, 0)
    assert quote(Billing("merchant", "mer_1"), sonnet, 300_000, 100, False) == \
        Quote(3_602_250_000, 3_602_250_000, 0)


def test_a_quote_on_a_meter_that_cannot_price_a_proxied_request_raises():
    with pytest.raises(ValueError, match="a minutes meter cannot price a proxied request"):
        quote(Billing("customer", "cus_1", meter("fixed", "minutes", "1")), None, 1, 1, False)


def test_a_meter_changed_in_the_database_is_quoted_at_its_new_rates_by_quote_too():
    before, after = meter("percentage", "tokens_1m", "10"), meter("percentage", "tokens_1m", "-20")
    assert quote(Billing("customer", "cus_1", before), None, 0, 0, False) == Quote(0, 0, 0)
    assert _rates(before).pct_n * 10 == _rates(before).pct_d * 11  # 1 + 10 / 100
    assert _rates(after).pct_n * 10 == _rates(after).pct_d * 8
    assert max_meter_charge(before, 1_000, 0) == 1_100 and max_meter_charge(after, 1_000, 0) == 800
    assert max_shortfall(after, None, 1_000, 0, 0) == 200 and max_shortfall(before, None, 1_000, 0, 0) == 0
