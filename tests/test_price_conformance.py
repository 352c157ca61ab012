"""Price conformance: one golden row per case that peers have got wrong, plain and streamed.

Each row names a pair of fixtures in tests/fixtures/usage/ (conformance_<case>_plain.json and _stream.json: the
provider's documented response body, and the same call as a server-sent-event stream). Each is run through the
real usage scanner (both builds, the stream in every chunking) and the real price table (genai-prices' data), and
must cost exactly the nano-dollars computed by hand in the row's comment from the provider's published price.

The row also states the published prices it used: when genai-prices changes one, the row fails on that line
first, and the arithmetic must be redone against the provider's page, not copied from the table.

Peers' bugs each row must catch (``mutants``: the same call priced the buggy way must cost something else):
cached tokens charged again at the input price (Bifrost #904, about 5x), 1-hour cache writes priced as 5-minute
writes, Gemini thinking tokens dropped, audio tokens priced as text, the long-context tier ignored or applied at
the threshold. Streams billed several times over (LiteLLM #36168) are caught by the streamed fixture of every
row having to cost the same as the plain one.
"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from edge_proxy.metering.model_price import cost_of
from edge_proxy.metering.pricing import Cost, PriceTable
from edge_proxy.metering.usage_types import Usage

from . import test_usage_scan
from .test_usage_scan import chunkings, load, render

FIXTURES = Path(__file__).parent / "fixtures" / "usage"
scan = test_usage_scan.scan  # the fixture over both scanner builds (pure Python and compiled)


def _drop(**fields):
    """A mutant that loses (or mislabels) some token counts before pricing."""
    return lambda price, u: cost_of(price, msgspec.structs.replace(u, **{k: f(u) for k, f in fields.items()}))


def _base_tier_only(price, u):
    return cost_of(msgspec.structs.replace(price, bands=price.bands[:1]), u)


def _tier_at_threshold(price, u):
    return cost_of(msgspec.structs.replace(price, bands=tuple((a - 1 if a >= 0 else a, c) for a, c in price.bands)), u)


ROWS = [
    pytest.param(
        "openai_chat_cached", "openai", "gpt-4o-2024-08-06",
        {"input": "2.50", "cached_input": "1.25", "output": "10.00"},
        # (2006 - 1920) x $2.50/M = $0.000215; 1920 cached x $1.25/M = $0.0024  -> input $0.002615
        # 300 x $10/M = $0.003
        2_615_000, 3_000_000,
        {"cached tokens charged again at the input price": _drop(cached_tokens=lambda u: 0)},
        id="OpenAI chat: cached input at the cached price"),
    pytest.param(
        "openai_chat_reasoning", "openai", "o4-mini-2025-04-16",
        {"input": "1.10", "output": "4.40"},
        # 1200 x $1.10/M = $0.00132; 2500 completion tokens (2048 of them reasoning) x $4.40/M = $0.011
        1_320_000, 11_000_000,
        {"reasoning tokens dropped": _drop(output_tokens=lambda u: u.output_tokens - u.reasoning_tokens),
         "reasoning tokens charged on top of completion tokens":
             _drop(output_tokens=lambda u: u.output_tokens + u.reasoning_tokens)},
        id="OpenAI chat: reasoning tokens are output, counted once"),
    pytest.param(
        "openai_chat_audio", "openai", "gpt-audio-mini-2025-10-06",
        {"input": "0.60", "input_audio": "10.00", "output": "2.40", "output_audio": "20.00"},
        # 200 text x $0.60/M = $0.00012; 800 audio x $10/M = $0.008  -> input $0.00812
        # 100 text x $2.40/M = $0.00024; 500 audio x $20/M = $0.01   -> output $0.01024
        8_120_000, 10_240_000,
        {"audio tokens priced as text": _drop(input_audio_tokens=lambda u: 0, output_audio_tokens=lambda u: 0)},
        id="OpenAI chat: audio tokens at the audio prices"),
    pytest.param(
        "openai_responses_cached_reasoning", "openai", "gpt-5-2025-08-07",
        {"input": "1.25", "cached_input": "0.125", "output": "10.00"},
        # (5000 - 4096) x $1.25/M = $0.00113; 4096 x $0.125/M = $0.000512  -> input $0.001642
        # 1500 output tokens (1024 reasoning) x $10/M = $0.015
        1_642_000, 15_000_000,
        {"cached tokens charged again at the input price": _drop(cached_tokens=lambda u: 0),
         "reasoning tokens dropped": _drop(output_tokens=lambda u: u.output_tokens - u.reasoning_tokens)},
        id="OpenAI Responses: input_tokens_details and output_tokens_details"),
    pytest.param(
        "anthropic_cache_5m_read", "anthropic", "claude-sonnet-4-5-20250929",
        {"input": "3", "cached_input": "0.30", "cache_write": "3.75", "output": "15"},
        # 50 x $3/M = $0.00015; 248 written x $3.75/M = $0.00093; 1800 read x $0.30/M = $0.00054 -> $0.00162
        # 120 x $15/M = $0.0018
        1_620_000, 1_800_000,
        {"cache reads charged at the input price": _drop(cached_tokens=lambda u: 0),
         "cache writes charged at the input price": _drop(cache_write_tokens=lambda u: 0)},
        id="Anthropic: 5-minute cache writes and cache reads"),
    pytest.param(
        "anthropic_cache_1h", "anthropic", "claude-sonnet-4-5-20250929",
        {"input": "3", "cache_write": "3.75", "cache_write_1h": "6", "output": "15"},
        # 100 x $3/M = $0.0003; 1000 5-minute writes x $3.75/M = $0.00375; 2000 1-hour writes x $6/M = $0.012
        #   -> input $0.01605;  200 x $15/M = $0.003
        16_050_000, 3_000_000,
        {"1-hour writes priced as 5-minute writes": _drop(cache_write_1h_tokens=lambda u: 0)},
        id="Anthropic: 1-hour cache writes at the 1-hour price"),
    pytest.param(
        "gemini_thinking", "google", "gemini-2.5-flash",
        {"input": "0.30", "output": "2.50"},
        # 1000 x $0.30/M = $0.0003; (200 candidates + 1500 thoughts) x $2.50/M = $0.00425
        300_000, 4_250_000,
        {"thinking tokens dropped": _drop(output_tokens=lambda u: u.output_tokens - u.reasoning_tokens)},
        id="Gemini: thinking tokens are billed as output"),
    pytest.param(
        "gemini_cached_content", "google", "gemini-2.5-flash",
        {"input": "0.30", "cached_input": "0.03", "output": "2.50"},
        # (12000 - 10000) x $0.30/M = $0.0006; 10000 cached x $0.03/M = $0.0003 -> $0.0009;  300 x $2.50/M
        900_000, 750_000,
        {"cached content charged again at the input price": _drop(cached_tokens=lambda u: 0)},
        id="Gemini: cached content at the cached price"),
    pytest.param(
        "gemini_long_context", "google", "gemini-2.5-pro",
        {"input": "1.25", "output": "10"},  # the base tier; above 200k: $2.50 in, $15 out (checked below)
        # 250000 > 200000: 250000 x $2.50/M = $0.625;  (1000 + 500 thoughts) x $15/M = $0.0225
        625_000_000, 22_500_000,
        {"long-context tier ignored": _base_tier_only},
        id="Gemini: the long-context tier prices the whole call"),
    pytest.param(
        "gemini_at_tier_threshold", "google", "gemini-2.5-pro",
        {"input": "1.25", "output": "10"},
        # 200000 is not above 200000: 200000 x $1.25/M = $0.25;  1000 x $10/M = $0.01
        250_000_000, 10_000_000,
        {"tier applied at the threshold itself": _tier_at_threshold},
        id="Gemini: a prompt at the threshold pays the base tier"),
    pytest.param(
        "groq_chat", "groq", "llama-3.3-70b-versatile",
        {"input": "0.59", "output": "0.79"},
        # 1500 x $0.59/M = $0.000885;  400 x $0.79/M = $0.000316
        885_000, 316_000,
        {"output tokens priced at the input price": lambda price, u: cost_of(
            price, msgspec.structs.replace(u, input_tokens=u.input_tokens + u.output_tokens, output_tokens=0))},
        id="Groq (OpenAI-compatible): usage in x_groq when streamed"),
]


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def _usages(scan, case: str) -> dict[str, Usage]:
    """Every way the scanner reads the case: the plain body, and the stream in each chunking."""
    plain = load(FIXTURES / f"conformance_{case}_plain.json")
    stream = load(FIXTURES / f"conformance_{case}_stream.json")
    out = {"plain": scan.usage_from_body(plain["fmt"], render(plain))}
    for how, chunks in chunkings(render(stream)).items():
        s = scan.StreamScanner(stream["fmt"])
        for c in chunks:
            s.feed(c)
        out[f"stream/{how}"] = s.result()
    return out


@pytest.mark.parametrize("case,provider,model,published,input_nanos,output_nanos,mutants", ROWS)
def test_conformance(table, scan, case, provider, model, published, input_nanos, output_nanos, mutants):
    price = table.lookup(provider, model)
    assert price is not None, f"{provider}/{model} is not priced"
    for key, value in published.items():
        assert getattr(price, key) == Decimal(value), f"genai-prices changed {model} {key}: redo this row"
    golden = Cost(input_nanos + output_nanos, input_nanos, output_nanos, True)
    for how, u in _usages(scan, case).items():
        assert u.found, how
        assert table.cost(provider, model, u) == golden, how
        for bug, mutant in mutants.items():
            assert mutant(price, u) != golden, f"the row does not tell '{bug}' apart"


def test_the_long_context_tier_is_the_published_one(table):
    tier = table.lookup("google", "gemini-2.5-pro").tiers
    assert [(t.above, t.prices["input"], t.prices["output"]) for t in tier] == [(200_000, Decimal("2.5"), Decimal(15))]
