"""One table of cost cases, run against the compiled cost rule and its pure-Python twin (model_price.cost_of).

Each row's nano-dollars are worked out by hand in its comment. A last test prices every model of the shipped table
(genai-prices' data) at a spread of usages with both builds, which must agree to the nano-dollar.
"""
from __future__ import annotations

import importlib
import os
from decimal import Decimal

import pytest

from edge_proxy.metering import model_price
from edge_proxy.metering.model_price import Cost, ModelPrice, Tier
from edge_proxy.metering.pricing import PriceTable
from edge_proxy.metering.record import RequestRecord
from edge_proxy.metering.usage_types import Usage

PURE_PYTHON = os.environ.get("EDGE_PROXY_PURE_PYTHON", "") not in ("", "0")


def compiled():
    """The compiled cost rule, which must be built (tests/test_fastpath_loaded.py says so when it is not)."""
    if PURE_PYTHON:
        pytest.skip("EDGE_PROXY_PURE_PYTHON is set: only the pure-Python twin is under test")
    return importlib.import_module("edge_proxy.metering._cost_c")


@pytest.fixture(params=["py", "c"])
def build(request):
    """The module whose cost_of is under test: the twin, or the compiled module."""
    return model_price if request.param == "py" else compiled()


def _price(**prices: str) -> ModelPrice:
    tiers = prices.pop("tiers", ())
    return ModelPrice.of(**{k: Decimal(v) for k, v in prices.items()}, tiers=tiers)


PLAIN = _price(input="2.50", output="10.00", cached_input="1.25")
HALF = _price(input="0.0005", output="0.0005")  # half a nano-dollar per token: every odd count is a tie
AUDIO = _price(input="0.60", output="2.40", input_audio="10.00", output_audio="20.00")
WRITES = _price(input="3.00", output="15.00", cached_input="0.30", cache_write="3.75", cache_write_1h="6.00")
TIERED = _price(input="1.25", output="10.00", cached_input="0.125",
                tiers=(Tier(200_000, {"input": Decimal("2.50"), "output": Decimal("15.00")}),))

COSTS = [  # id, price, usage, input nano-dollars, output nano-dollars
    # 1000 x $2.50/M = 2,500,000; 100 x $10/M = 1,000,000
    ("a plain call", PLAIN, Usage(1000, 100), 2_500_000, 1_000_000),
    # 200 uncached x $2.50/M + 800 cached x $1.25/M = 500,000 + 1,000,000
    ("cached input at the cached price", PLAIN, Usage(1000, 0, cached_tokens=800), 1_500_000, 0),
    # 1, 3, 5, 7 tokens at 0.5 nano-dollar: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4 (half to even)
    ("half a nano-dollar rounds to even, down", HALF, Usage(1, 5), 0, 2),
    ("half a nano-dollar rounds to even, up", HALF, Usage(3, 7), 2, 4),
    # 200 text x $0.60/M + 800 audio x $10/M = 120,000 + 8,000,000; 100 x $2.40/M + 500 x $20/M = 240,000 + 10,000,000
    ("audio tokens at the audio prices", AUDIO, Usage(1000, 600, input_audio_tokens=800, output_audio_tokens=500),
     8_120_000, 10_240_000),
    # 1000 x $6/M + 1000 x $3.75/M + 500 x $0.30/M + 500 x $3/M = 6,000,000 + 3,750,000 + 150,000 + 1,500,000
    ("1-hour writes, 5-minute writes, reads and the rest each at their price", WRITES,
     Usage(3000, 0, cached_tokens=500, cache_write_tokens=2000, cache_write_1h_tokens=1000), 11_400_000, 0),
    # 200,000 x $1.25/M = 250,000,000; 100 x $10/M = 1,000,000
    ("a prompt at the tier's threshold pays the base price", TIERED, Usage(200_000, 100), 250_000_000, 1_000_000),
    # 200,001 x $2.50/M = 500,002,500; 100 x $15/M = 1,500,000
    ("a prompt above the threshold pays the tier", TIERED, Usage(200_001, 100), 500_002_500, 1_500_000),
    # negative counts read as 0: nothing to charge
    ("negative counts cost nothing", PLAIN, Usage(-5, -7, cached_tokens=-3), 0, 0),
    # 900 cached tokens in a 100-token prompt: the prompt is raised to 900, all at the cached price ($1.25/M)
    ("cache reads beyond the prompt are still charged", PLAIN, Usage(100, 0, cached_tokens=900), 1_125_000, 0),
    # 10**20 x $2.50/M = $2.5 x 10**14 = 2.5 x 10**23 nano-dollars; 10**20 x $10/M = $10**15: far past 64 bits
    ("counts past 64-bit arithmetic stay exact", PLAIN, Usage(10**20, 10**20), 25 * 10**22, 10**24),
    # The compiled rule runs on 64-bit C integers only when every count is within 2**60 and no product or sum
    # overflows; these rows sit on each side of those edges.
    # 10**10 x $2.50/M = $25,000: the count fits, its product with 2,500,000,000,000 pico-dollars does not
    ("a product past 64 bits stays exact", PLAIN, Usage(10**10, 0), 25 * 10**12, 0),
    # 3,689,348 x $2.50/M = 9,223,370,000 nano-dollars; its product (9.22 x 10**18) just fits 64 bits
    ("a product just within 64 bits", PLAIN, Usage(3_689_348, 0), 9_223_370_000, 0),
    # (2**60 - 1) x $2.50/M and 2**60 x $10/M: one count just within the C path's bound (its product overflows), one
    # on it
    ("counts at the 64-bit path's bound", PLAIN, Usage(2**60 - 1, 2**60), (2**60 - 1) * 2500, 2**60 * 10_000),
    ("a negative count past the bound reads as 0", PLAIN, Usage(-(2**61), 7), 0, 70_000),
    # a tier picked on the C path: 200,001 x $2.50/M = 500,002,500; 3 reasoning tokens in 3 output at $15/M
    ("a tier on the 64-bit path, with reasoning", TIERED, Usage(200_001, 3, reasoning_tokens=3), 500_002_500, 45_000),
]


@pytest.mark.parametrize("price,usage,input_nanos,output_nanos", [row[1:] for row in COSTS],
                         ids=[row[0] for row in COSTS])
def test_cost_of(build, price, usage, input_nanos, output_nanos):
    assert build.cost_of(price, usage) == Cost(input_nanos + output_nanos, input_nanos, output_nanos, True)


# No real price has a negative coefficient, but the rule is Python's floor division rounded half to even: both
# builds must agree on it. Coefficients in pico-dollars per 1M tokens, so -500,000,000 is -0.5 nano-dollar a token.
NEGATIVE = ModelPrice(Decimal(0), Decimal(0), bands=((-1, (-300_000_000, 0, 0, 0, 0, 0, -500_000_000, 0, 0)),))


@pytest.mark.parametrize("usage,input_nanos,output_nanos", [
    (Usage(1, 1), 0, 0),  # -0.3 -> 0; -0.5 -> 0 (the even one)
    (Usage(5, 3), -2, -2),  # -1.5 -> -2 (even); -1.5 -> -2
    (Usage(4, 5), -1, -2),  # -1.2 -> -1; -2.5 -> -2 (even)
    (Usage(10, 7), -3, -4),  # -3.0; -3.5 -> -4 (even)
])
def test_negative_coefficients_round_as_floor_division_does(build, usage, input_nanos, output_nanos):
    assert build.cost_of(NEGATIVE, usage) == Cost(input_nanos + output_nanos, input_nanos, output_nanos, True)


def test_a_record_is_priced_like_the_usage_it_carries(build):
    record = RequestRecord(request_id="req_1", created_at="2026-01-01T00:00:00.000Z", merchant_id="mer_1",
                           input_tokens=3000, cached_tokens=500, cache_write_tokens=2000, cache_write_1h_tokens=1000)
    assert build.cost_of(WRITES, record) == Cost(11_400_000, 11_400_000, 0, True)


def test_a_count_that_is_not_a_number_is_refused_by_both(build):
    with pytest.raises(TypeError):
        build.cost_of(PLAIN, Usage(None, 1))  # type: ignore[arg-type]


USAGES = [Usage(0, 0), Usage(1, 1), Usage(12, 2), Usage(123_457, 9_999, cached_tokens=100_000, reasoning_tokens=500),
          Usage(250_001, 77, cached_tokens=3, cache_write_tokens=11, cache_write_1h_tokens=5, input_audio_tokens=7,
                cached_audio_tokens=2, output_audio_tokens=9),
          Usage(1_000_003, 65_537, cached_tokens=999_999, cache_write_tokens=4, reasoning_tokens=65_000)]


def test_both_builds_agree_on_every_shipped_price():
    c = compiled()
    table = PriceTable.load()
    prices = [price for models in table.models.values() for price in models.values()]
    assert len(prices) > 100
    for price in prices:
        for usage in USAGES:
            assert c.cost_of(price, usage) == model_price.cost_of(price, usage), (price, usage)
