"""The price table: lookup fallbacks, the exact cost rule, overrides, and usd() formatting."""
from __future__ import annotations

from decimal import Decimal, localcontext

import pytest

from edge_proxy.metering.pricing import NANO, Cost, PriceTable, usd
from edge_proxy.metering.usage_types import Usage

# A small table of made-up prices, so cost cases do not move when list prices do.
TEST_PRICES = """
[defaults]
max_output_tokens = 1000

[aliases]
mirror = "acme"

[acme."plain"]
input = "2.50"
output = "10.00"
cached_input = "1.25"
max_output_tokens = 16384

[acme."cachey"]
input = "3.00"
output = "15.00"
cached_input = "0.30"
cache_write = "3.75"

[acme."nocache"]
input = "1.00"
output = "2.00"

[acme."halves"]   # half a nano-dollar per token
input = "0.0005"
output = "0.0005"

[acme."frac"]
input = "0.0375"
output = "0.0025"
"""


@pytest.fixture(scope="module")
def packaged() -> PriceTable:
    return PriceTable.load()


@pytest.fixture
def table(tmp_path) -> PriceTable:
    path = tmp_path / "prices.toml"
    path.write_text(TEST_PRICES)
    return PriceTable.load(str(path), genai_prices=False)


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- lookup fallbacks (packaged table) ---

LOOKUPS = [
    pytest.param("openai", "gpt-4o", "2.50", id="an exact id is found"),
    pytest.param("openai", "gpt-4o-mini-2024-07-18", "0.15", id="a dated OpenAI snapshot falls back to its base model"),
    pytest.param("anthropic", "claude-sonnet-4-20250514", "3.00", id="a dated Anthropic id falls back to its base model"),
    pytest.param("anthropic", "claude-3-5-haiku-20241022", "0.80", id="a dated Claude 3.5 id falls back too"),
    pytest.param("anthropic", "claude-3-7-sonnet-latest", "3.00", id="a -latest alias falls back to its base model"),
    pytest.param("google", "gemini-2.0-flash-001", "0.10", id="a Gemini -001 version falls back to its base model"),
    pytest.param("openai", "openai/gpt-4o", "2.50", id="a provider-qualified id loses its prefix"),
    pytest.param("openai", "openai/gpt-4o-2024-08-06", "2.50", id="a provider-qualified dated id loses prefix and date"),
    pytest.param("google", "models/gemini-2.5-pro", "1.25", id="a Gemini resource name loses its models/ prefix"),
    pytest.param("openai", "GPT-4o", "2.50", id="case does not matter as the last resort"),
    pytest.param("openai", "gpt-4o-2024-05-13", "5.00", id="a listed snapshot wins over its base model"),
    pytest.param("google-openai-compatible", "gemini-2.5-flash", "0.30", id="google-openai-compatible shares the Google table"),
    pytest.param("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "0.88", id="a listed id with a slash is found as is"),
    pytest.param("mistral", "mistral-large-latest", "2.00", id="a Mistral -latest id falls back to its base model"),
    pytest.param("openai", "gpt-9-ultra", None, id="an unknown model is not priced"),
    pytest.param("nowhere-ai", "gpt-4o", None, id="an unknown provider is not priced"),
    pytest.param("openai", None, None, id="a missing model id is not priced"),
    pytest.param("openai", "", None, id="an empty model id is not priced"),
    pytest.param("anthropic", "gpt-4o", None, id="a model is not looked up under another provider"),
    # These two were unpriced in the old hand-written table; genai-prices prices them as models of their own.
    pytest.param("openai", "gpt-4o-mini-tts", "0.6", id="a suffix that is not a date or version is kept"),
    pytest.param("openai", "chatgpt-4o-latest", "5", id="a -latest model of its own keeps its own price"),
    pytest.param("openai", "tts-1", None, id="a model priced per character is not priced by tokens"),
    pytest.param("openai", "ft:gpt-4o-mini-2024-07-18:acme::abc123", "0.3", id="a pattern (fine-tunes) finds its model"),
    pytest.param("anthropic", "claude-sonnet-4-5-20250929", "3", id="a starts-with rule finds a dated id"),
    pytest.param("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct", "0.2",
                 id="a Fireworks account path is the model name"),
    pytest.param("kluster", "gpt-4o", None, id="a catalogue provider genai-prices does not cover is unpriced"),
]


@pytest.mark.parametrize("provider,model,input_price", LOOKUPS)
def test_lookup(packaged, provider, model, input_price):
    price = packaged.lookup(provider, model)
    if input_price is None:
        assert price is None
    else:
        assert price is not None and price.input == Decimal(input_price)
        assert packaged.lookup(provider, model) is price  # memoised, same answer


CATALOGUE_MODELS = {
    "openai": ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3", "o3-mini", "o4-mini",
               "gpt-5", "gpt-5-mini", "gpt-5-nano", "text-embedding-3-small", "text-embedding-3-large"],
    "anthropic": ["claude-opus-4-1", "claude-opus-4", "claude-sonnet-4-5", "claude-sonnet-4", "claude-3-7-sonnet",
                  "claude-haiku-4-5", "claude-3-5-haiku", "claude-3-haiku"],
    "google": ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.0-flash", "gemini-2.0-flash-lite"],
    "google-openai-compatible": ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.0-flash"],
    "deepseek": ["deepseek-chat", "deepseek-reasoner"],
    "xai": ["grok-4", "grok-3", "grok-3-mini"],
    "groq": ["llama-3.3-70b-versatile", "llama-3.1-8b-instant"],
}


@pytest.mark.parametrize("provider", sorted(CATALOGUE_MODELS))
def test_packaged_table_prices_the_catalogue_models(packaged, provider):
    for model in CATALOGUE_MODELS[provider]:
        assert packaged.lookup(provider, model) is not None, f"{provider}/{model} has no price"


def test_anthropic_cache_prices_follow_the_published_multipliers(packaged):
    for model in CATALOGUE_MODELS["anthropic"]:
        p = packaged.lookup("anthropic", model)
        if model == "claude-3-haiku":  # Anthropic publishes rounded cache prices for this one
            continue
        assert p.cache_write == p.input * Decimal("1.25") and p.cached_input == p.input / 10, model


def test_max_output_tokens_comes_from_the_model_or_the_default(packaged, table):
    assert packaged.max_output_tokens("anthropic", "claude-sonnet-4-5-20250929") == 64000
    assert packaged.max_output_tokens("openai", "unknown-model") == packaged.default_max_output_tokens == 4096
    assert table.max_output_tokens("acme", "cachey") == 1000  # not set: the table's default
    # the model's own ceiling is not known, and output_limit says so rather than guess
    assert table.lookup("acme", "cachey").max_output_tokens is None and table.output_limit("acme", "cachey") is None
    assert table.output_limit("acme", "plain") == 16384
    assert packaged.output_limit("openai", "gpt-4o-2024-08-06") == 16384
    assert packaged.output_limit("openai", "gpt-9-ultra") is None  # unpriced


def test_every_output_ceiling_finds_a_priced_model(packaged):
    from edge_proxy.metering.pricing import LIMITS_PATH, _read_limits
    for provider, table in _read_limits(LIMITS_PATH).items():
        for model, ceiling in table.items():
            assert packaged.output_limit(provider, model) == ceiling, f"{provider}/{model}"


# --- the cost rule (test table) ---

COSTS = [
    pytest.param("plain", Usage(1000, 500), 2_500_000, 5_000_000, id="input and output at list price"),
    pytest.param("plain", Usage(1000, 0, cached_tokens=800), 1_500_000, 0,
                 id="cached tokens cost the cached price and are not charged again as input"),
    pytest.param("cachey", Usage(2098, 120, cached_tokens=1800, cache_write_tokens=248), 1_620_000, 1_800_000,
                 id="cache reads and writes each have their own price"),
    pytest.param("plain", Usage(100, 900, reasoning_tokens=700), 250_000, 9_000_000,
                 id="reasoning tokens are inside output tokens and not charged twice"),
    pytest.param("nocache", Usage(1000, 0, cached_tokens=600), 1_000_000, 0,
                 id="without a cached price cached tokens cost the input price"),
    pytest.param("nocache", Usage(1000, 0, cache_write_tokens=400), 1_000_000, 0,
                 id="without a cache-write price writes cost the input price"),
    pytest.param("plain", Usage(100, 0, cached_tokens=150), 187_500, 0,
                 id="uncached input never goes below zero"),
    pytest.param("plain", Usage(), 0, 0, id="zero usage is priced at zero"),
    pytest.param("halves", Usage(1, 0), 0, 0, id="half a nano-dollar rounds to even, here down"),
    pytest.param("halves", Usage(3, 3), 2, 2, id="one and a half nano-dollars round to even, here up"),
    pytest.param("halves", Usage(2, 0, cached_tokens=1), 1, 0,
                 id="the input terms are summed before the one rounding"),
    pytest.param("frac", Usage(3, 3), 112, 8, id="input and output are rounded separately and the parts add up"),
    pytest.param("plain", Usage(10**12, 10**12), 2_500_000_000_000_000, 10_000_000_000_000_000,
                 id="huge token counts stay exact"),
    pytest.param("plain", Usage(-5, -5, cached_tokens=-1), 0, 0, id="negative counts from a broken provider cost nothing"),
]


@pytest.mark.parametrize("model,usage,input_nanos,output_nanos", COSTS)
def test_cost(table, model, usage, input_nanos, output_nanos):
    cost = table.cost("acme", model, usage)
    assert cost == Cost(input_nanos + output_nanos, input_nanos, output_nanos, True)


def test_unknown_model_is_unpriced_never_free(table):
    cost = table.cost("acme", "mystery", Usage(1000, 1000, found=True))
    assert cost == Cost(None, None, None, False)
    assert cost.nanos is None and not cost.priced


@pytest.mark.parametrize("provider,model,want", [
    ("openai", "gpt-4o-mini", Cost(450_000, 150_000, 300_000, True)),  # $0.15 and $0.60 per 1M tokens
    ("openai", "openai/gpt-4o-mini-2024-07-18", Cost(450_000, 150_000, 300_000, True)),  # found by the fallbacks
    ("openai", "no-such-model-anywhere", Cost(None, None, None, False)),  # resolved to nothing: memoised too
    ("nobody", "gpt-4o-mini", Cost(None, None, None, False)),  # no such provider
    ("openai", None, Cost(None, None, None, False)),
    ("openai", "", Cost(None, None, None, False)),
])
def test_cost_the_same_before_and_after_its_lookup_is_memoised(provider, model, want):
    """`cost` reads the lookup memo itself on a hit: the first call (which resolves), the second (a hit), and a
    call after the memo was emptied agree to the nano-dollar."""
    table = PriceTable.load()
    usage = Usage(1000, 500, found=True)
    assert table.cost(provider, model, usage) == want
    assert table.cost(provider, model, usage) == want
    table._cache.clear()
    assert table.cost(provider, model, usage) == want


def test_alias_prices_like_its_target(table):
    assert table.cost("mirror", "plain", Usage(1000, 500)) == table.cost("acme", "plain", Usage(1000, 500))


def test_packaged_price_of_a_real_call(packaged):
    # claude-sonnet-4-5: 50 uncached x $3 + 1800 reads x $0.30 + 248 writes x $3.75, 120 out x $15
    cost = packaged.cost("anthropic", "claude-sonnet-4-5-20250929", Usage(2098, 120, 1800, 248, found=True))
    assert cost == Cost(3_420_000, 1_620_000, 1_800_000, True)
    assert usd(cost.nanos) == "0.00342"


# --- overrides and validation ---


def test_overrides_win_per_model_and_keep_the_rest(tmp_path):
    base = write(tmp_path, "base.toml", TEST_PRICES)
    over = write(tmp_path, "over.toml", """
[defaults]
max_output_tokens = 2000

[acme."plain"]          # replaces the whole entry: no cached price any more
input = "2.00"
output = "8.00"

[acme."brand-new"]
input = "0.50"
output = "1.00"

[aliases]
mirror = "acme"
""")
    t = PriceTable.load(base, over)
    plain = t.lookup("acme", "plain")
    assert (plain.input, plain.output, plain.cached_input) == (Decimal("2.00"), Decimal("8.00"), None)
    assert plain.max_output_tokens is None and t.max_output_tokens("acme", "plain") == 2000
    assert t.lookup("acme", "brand-new").input == Decimal("0.50")
    assert t.lookup("acme", "cachey").cache_write == Decimal("3.75")  # untouched
    assert t.lookup("mirror", "brand-new") is not None  # aliases see overridden models
    assert t.default_max_output_tokens == 2000


def test_overrides_apply_to_the_packaged_table(tmp_path):
    over = write(tmp_path, "over.toml", '[openai."gpt-4o"]\ninput = "1.00"\noutput = "4.00"\n')
    t = PriceTable.load(overrides_path=over)
    assert t.lookup("openai", "gpt-4o-2024-08-06").input == Decimal("1.00")
    assert t.lookup("anthropic", "claude-opus-4-1").input == Decimal("15.00")


def test_an_override_replaces_a_genai_prices_model_for_every_name_that_finds_it(tmp_path):
    over = write(tmp_path, "over.toml", '[anthropic."claude-sonnet-4-5"]\ninput = "1"\noutput = "2"\n')
    t = PriceTable.load(overrides_path=over)
    for name in ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4.5"):
        price = t.lookup("anthropic", name)
        assert (price.input, price.cache_write_1h, price.source) == (Decimal(1), None, f"{over}"), name
    assert price.max_output_tokens == 64000  # the replaced model's ceiling stays
    assert t.models["anthropic"]["claude-sonnet-4-5"] is price


def test_an_entry_with_only_a_ceiling_keeps_the_price(tmp_path):
    over = write(tmp_path, "over.toml", '[groq."openai/gpt-oss-120b"]\nmax_output_tokens = 65536\n')
    assert PriceTable.load().output_limit("groq", "openai/gpt-oss-120b") is None
    t = PriceTable.load(overrides_path=over)
    assert t.output_limit("groq", "openai/gpt-oss-120b") == 65536
    assert t.lookup("groq", "openai/gpt-oss-120b").input == PriceTable.load().lookup("groq", "openai/gpt-oss-120b").input


DEFAULTS = """
[default]
input = "1.00"
output = "3.00"

[default.kluster]
input = "0.20"
output = "0.60"
max_output_tokens = 8192
"""

DEFAULT_CASES = [
    pytest.param("kluster", "any-model", "0.20", 8192, id="a provider default prices that provider's unknown models"),
    pytest.param("hyperbolic", "any-model", "1.00", None, id="the global default prices every other unknown model"),
    pytest.param("openai", "gpt-9-ultra", "1.00", None, id="an unknown model of a covered provider gets the default"),
    pytest.param("openai", "gpt-4o", "2.5", 16384, id="a known model keeps its own price"),
    pytest.param("openai", "tts-1", "1.00", None, id="a model genai-prices cannot price by tokens gets the default"),
]


@pytest.mark.parametrize("provider,model,input_price,ceiling", DEFAULT_CASES)
def test_default_prices_for_unknown_models(tmp_path, provider, model, input_price, ceiling):
    t = PriceTable.load(overrides_path=write(tmp_path, "over.toml", DEFAULTS))
    assert t.is_priced(provider, model)
    assert t.lookup(provider, model).input == Decimal(input_price)
    assert t.output_limit(provider, model) == ceiling
    assert t.has_own_price(provider, model) == (model == "gpt-4o")
    assert model not in t.models.get(provider, {}) or model == "gpt-4o"  # defaults are not listed


def test_without_defaults_unknown_models_are_not_priced(packaged):
    assert not packaged.is_priced("kluster", "any-model") and not packaged.has_own_price("kluster", "any-model")
    assert packaged.cost("kluster", "any-model", Usage(10, 10)) == Cost(None, None, None, False)
    assert packaged.is_priced("openai", "gpt-4o") and packaged.has_own_price("openai", "gpt-4o")


TIERED = """
[acme."long"]
input = "1.25"
output = "10.00"
cached_input = "0.125"
cache_write = "1.50"
cache_write_1h = "2.50"
[[acme."long".tiers]]
above = 200000
input = "2.50"
output = "15.00"
"""

TIER_CASES = [
    # 200,000 x $1.25 = $0.25; 100 x $10 = $0.001
    pytest.param(Usage(200_000, 100), 250_000_000, 1_000_000, id="a prompt at the threshold pays the base price"),
    # 200,001 x $2.50 = $0.5000025; 100 x $15 = $0.0015
    pytest.param(Usage(200_001, 100), 500_002_500, 1_500_000, id="a prompt above it pays the tier for all tokens"),
    # 100,000 x $0.125 (cached_input has no tier) + 100,001 x $2.50 = $0.0125 + $0.2500025
    pytest.param(Usage(200_001, 0, cached_tokens=100_000), 262_502_500, 0,
                 id="a kind the tier does not list keeps its base price"),
    # 1,000 1h writes x $2.50 + 1,000 5m writes x $1.50 + 0 uncached = $0.0025 + $0.0015
    pytest.param(Usage(2000, 0, cache_write_tokens=2000, cache_write_1h_tokens=1000), 4_000_000, 0,
                 id="1-hour writes have their own price, the rest of the writes the 5-minute one"),
]


@pytest.mark.parametrize("usage,input_nanos,output_nanos", TIER_CASES)
def test_tiers_and_cache_ttls_in_a_price_file(tmp_path, usage, input_nanos, output_nanos):
    t = PriceTable.load(write(tmp_path, "p.toml", TIERED), genai_prices=False)
    assert t.cost("acme", "long", usage) == Cost(input_nanos + output_nanos, input_nanos, output_nanos, True)
    price = t.lookup("acme", "long")
    assert price.reserve_pico == (2_500_000_000_000, 15_000_000_000_000)  # the highest rates of any tier
    # a prompt that cannot pass 200,000 tokens cannot reach the tier: the base tier's highest rates (1h writes)
    assert price.reserve_rates(200_000) == (2_500_000_000_000, 10_000_000_000_000)
    assert price.reserve_rates(200_001) == (2_500_000_000_000, 15_000_000_000_000)


BAD_FILES = [
    pytest.param('[acme."m"]\ninput = 2.5\noutput = "1"\n', "decimal strings", id="a float price is refused"),
    pytest.param('[acme."m"]\ninput = "2.5"\n', "missing output", id="a missing output price is refused"),
    pytest.param('[acme."m"]\ninput = "-1"\noutput = "1"\n', ">= 0", id="a negative price is refused"),
    pytest.param('[acme."m"]\ninput = "two"\noutput = "1"\n', "not a decimal", id="a non-number price is refused"),
    pytest.param('[acme."m"]\ninput = "1"\noutput = "1"\ncache_input = "1"\n', "unknown keys", id="a misspelt key is refused"),
    pytest.param('[acme."m"]\ninput = "1"\noutput = "1"\nmax_output_tokens = "9"\n', "max_output_tokens",
                 id="a non-integer max_output_tokens is refused"),
    pytest.param('[aliases]\nx = "nobody"\n', "no such provider", id="an alias to an unknown provider is refused"),
    pytest.param('[acme."m"]\ninput = "1"\noutput = "1"\ncache_write_1h = "2"\n', "needs a cache_write price",
                 id="a 1-hour write price without a 5-minute one is refused"),
    pytest.param('[acme."m"]\ninput = "1"\noutput = "1"\n[[acme."m".tiers]]\ninput = "2"\n', "above",
                 id="a tier without its threshold is refused"),
    pytest.param('[acme."m"]\ninput = "1"\noutput = "1"\n[[acme."m".tiers]]\nabove = 10\ncached_input = "2"\n',
                 "base price", id="a tier pricing a kind the base does not is refused"),
    pytest.param('[default]\ninput = "1"\n', "missing output", id="a default without an output price is refused"),
    pytest.param('[acme."m"]\nmax_output_tokens = -1\n', "max_output_tokens", id="a negative ceiling is refused"),
]


@pytest.mark.parametrize("text,message", BAD_FILES)
def test_bad_price_files_are_refused(tmp_path, text, message):
    over = write(tmp_path, "bad.toml", text)
    with pytest.raises(ValueError, match=message):
        PriceTable.load(write(tmp_path, "base.toml", TEST_PRICES), over)


# --- usd() ---

USD = [
    pytest.param(1234, "0.000001234", id="a few nano-dollars keep all nine decimals"),
    pytest.param(0, "0", id="zero is 0"),
    pytest.param(1, "0.000000001", id="one nano-dollar"),
    pytest.param(NANO, "1", id="a whole dollar has no decimal point"),
    pytest.param(1_500_000_000, "1.5", id="trailing zeros are trimmed"),
    pytest.param(100_000_000, "0.1", id="ten cents"),
    pytest.param(12_345_678_901, "12.345678901", id="dollars and nano-dollars"),
    pytest.param(10**30 + 7, "1000000000000000000000.000000007", id="large amounts stay exact"),
    pytest.param(-1234, "-0.000001234", id="a negative amount such as a refund keeps its sign"),
]


@pytest.mark.parametrize("nanos,text", USD)
def test_usd(nanos, text):
    assert usd(nanos) == text
    with localcontext() as ctx:
        ctx.prec = 60  # wide enough that the check itself does not round
        assert Decimal(text) * NANO == nanos  # round-trips exactly


@pytest.mark.parametrize("value", [1.5, Decimal("1"), "1", True], ids=["float", "Decimal", "str", "bool"])
def test_usd_takes_only_integers(value):
    with pytest.raises(TypeError):
        usd(value)


RESERVATIONS = [
    # body bytes bound the prompt's tokens; 100 output tokens
    # claude-sonnet-4-5 under 200k: the 1-hour write ($6/M) is the dearest input, output $15/M
    pytest.param("anthropic", "claude-sonnet-4-5", 1000, 1000 * 6_000 + 100 * 15_000,
                 id="a reservation covers 1-hour cache writes"),
    # over 200k bytes the long-context tier may apply: 1-hour writes at $12/M, output $22.50/M
    pytest.param("anthropic", "claude-sonnet-4-5", 300_000, 300_000 * 12_000 + 100 * 22_500,
                 id="a body long enough for the long-context tier reserves at its rates"),
    # gpt-audio-mini: audio input $10/M and audio output $20/M are the dearest
    pytest.param("openai", "gpt-audio-mini", 1000, 1000 * 10_000 + 100 * 20_000,
                 id="a reservation covers audio tokens"),
    pytest.param("openai", "gpt-4o-mini", 1000, 1000 * 150 + 100 * 600, id="a plain model reserves at its list price"),
]


@pytest.mark.parametrize("provider,model,body_len,nanos", RESERVATIONS)
def test_reservations_use_the_highest_rate_that_can_apply(packaged, provider, model, body_len, nanos):
    from edge_proxy.billing.charging import max_provider_cost
    assert max_provider_cost(packaged.lookup(provider, model), body_len, 100) == nanos


def test_the_readme_example_overrides_file_loads(tmp_path):
    from pathlib import Path
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Prices"):]
    example = section[section.index("```toml\n") + 8:section.index("```", section.index("```toml\n") + 8)]
    t = PriceTable.load(overrides_path=write(tmp_path, "over.toml", example))
    assert t.lookup("openai", "gpt-4o").cache_write_1h == Decimal("5.00")
    assert t.lookup("kluster", "anything").input == Decimal("0.20")
    assert t.output_limit("groq", "openai/gpt-oss-120b") == 65536


def test_lookup_reads_the_memo_and_answers_as_before():
    """`lookup` reads `_entry`'s memo itself: a first lookup, a repeat, one after `is_priced` filled the memo, and the
    ids that are never memoised (none, empty) all answer as `_entry` does."""
    fresh = PriceTable.load()
    first = fresh.lookup("openai", "gpt-4o-mini")
    assert first is not None and first.input == Decimal("0.15") and first.output == Decimal("0.6")
    assert fresh.lookup("openai", "gpt-4o-mini") is first and ("openai", "gpt-4o-mini") in fresh._cache
    assert fresh.is_priced("anthropic", "claude-sonnet-4-5")
    assert fresh.lookup("anthropic", "claude-sonnet-4-5") is fresh._entry("anthropic", "claude-sonnet-4-5")[0]
    for provider, model in [("openai", None), ("openai", ""), ("nope", "gpt-4o-mini"), ("openai", "no-such-model")]:
        assert fresh.lookup(provider, model) is None and fresh.lookup(provider, model) is None
    assert ("openai", None) not in fresh._cache and ("openai", "") not in fresh._cache
