"""The default price table is genai-prices' data, converted faithfully: the same model for every name genai-prices
would match, and the same cost (to the nano-dollar) for every model of every mapped provider."""
from __future__ import annotations

import random
import subprocess
import sys
import tomllib
import warnings
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from importlib.metadata import version

import msgspec
import pytest
from genai_prices import types as gp_types
from genai_prices.data import providers as gp_providers
from genai_prices.types import _normalize_compact_dated_ref

from edge_proxy.metering import genai_source
from edge_proxy.metering.genai_source import _NOT_SERVED, GENAI_PRICES_IDS, Schedule
from edge_proxy.metering.model_price import cost_of
from edge_proxy.metering.pricing import PriceTable
from edge_proxy.metering.usage_types import Usage
from edge_proxy.providers import catalogue

GP = {p.id: p for p in gp_providers}
MAPPED = sorted((name, gid) for name, gid in GENAI_PRICES_IDS.items() if gid)
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def test_every_catalogue_provider_has_a_mapping_row():
    with open(catalogue.__file__.replace("catalogue.py", "catalogue.toml"), "rb") as f:
        names = set(tomllib.load(f))
    assert len(names) == 28 and set(GENAI_PRICES_IDS) == names


def _equals_names(clause) -> list[str]:
    kind = type(clause).__name__
    if kind == "ClauseEquals":
        return [clause.equals]
    if kind == "ClauseOr":
        return [n for c in clause.or_ for n in _equals_names(c)]
    return []


@pytest.mark.parametrize("name,gid", MAPPED, ids=[f"{n} is found as genai-prices finds it" for n, _ in MAPPED])
def test_names_find_the_model_genai_prices_finds(table, name, gid):
    source = table._providers[name].source
    refs = set()
    for model in _served(gid):
        refs.add(model.id)
        refs.update(_equals_names(model.match))
    # and names genai-prices reaches only through its rules: dated, suffixed and compact-dated variants
    refs.update(f"{r}{s}" for r in list(refs) for s in ("-20250929", "-2025-09-29", ":free", "-latest", "-preview"))
    for ref in sorted(refs):
        theirs = _find(gid, ref)
        index = source.find(ref)
        assert (source.ids[index] if index is not None else None) == (theirs.id if theirs else None), ref


def _served(gid: str) -> list:
    """genai-prices' models of a provider less those the catalogue's provider does not serve."""
    return [m for m in GP[gid].models if not m.id.startswith(_NOT_SERVED.get(gid, ()))]


def _find(gid: str, ref: str):
    """genai-prices' Provider.find_model over the served models: the first whose clause matches, then the same
    with a compact date dashed (its retry)."""
    served = _served(gid)
    for candidate in dict.fromkeys((ref.lower(), _normalize_compact_dated_ref(ref.lower()))):
        found = next((m for m in served if m.is_match(candidate)), None)
        if found is not None:
            return found
    return None


def test_google_lists_gemini_api_models_only(table):
    assert GP["google"].find_model("claude-haiku-4-5") is not None  # genai-prices' google includes Vertex AI
    assert table.lookup("google", "claude-haiku-4-5") is None
    assert not [m for m in table.models["google"] if m.startswith("claude")]


def _usages(rng: random.Random, n: int) -> list[Usage]:
    out = []
    for _ in range(n):
        inp = rng.choice([0, 7, 1000, 150_000, 200_000, 200_001, 250_000, 1_500_000])
        cached = rng.randint(0, inp // 2)
        write = rng.randint(0, (inp - cached) // 2)
        audio = rng.randint(0, inp - cached - write)
        out_t = rng.randint(0, 50_000)
        reasoning = rng.randint(0, out_t)
        out.append(Usage(inp, out_t, cached, write, reasoning, cache_write_1h_tokens=rng.randint(0, write),
                         input_audio_tokens=audio, cached_audio_tokens=rng.randint(0, min(cached, audio)),
                         output_audio_tokens=rng.randint(0, out_t - reasoning)))
    return out


def _nanos(usd: Decimal) -> int:
    return int((usd * 10**9).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@pytest.mark.parametrize("name,gid", MAPPED, ids=[f"{n} costs what genai-prices says" for n, _ in MAPPED])
def test_every_model_costs_what_genai_prices_computes(table, name, gid):
    rng = random.Random(name)
    source = table._providers[name].source
    checked = 0
    for model, entry in zip(_served(gid), source.entries, strict=True):
        if entry is None:
            continue
        for u in _usages(rng, 6):
            gu = gp_types.Usage(input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                                cache_read_tokens=u.cached_tokens, cache_write_tokens=u.cache_write_tokens,
                                cache_write_1h_tokens=u.cache_write_1h_tokens, input_audio_tokens=u.input_audio_tokens,
                                cache_audio_read_tokens=u.cached_audio_tokens,
                                output_reasoning_tokens=u.reasoning_tokens, output_audio_tokens=u.output_audio_tokens)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # genai-prices warns about tool fees the usage does not carry
                theirs = model.calc_price(gu, GP[gid], genai_request_timestamp=NOW)
            price = entry.at(NOW) if isinstance(entry, Schedule) else entry
            ours = cost_of(price, u)
            assert (ours.input_nanos, ours.output_nanos) == (_nanos(theirs.input_price), _nanos(theirs.output_price)), (
                model.id, u)
            checked += 1
    assert checked > 0


def test_models_the_gateway_cannot_price_are_left_unpriced(table):
    openai = table._providers["openai"].source
    assert "tts-1" in openai.skipped and "input_mchars" in openai.skipped["tts-1"]  # priced per character
    assert table.lookup("openai", "tts-1") is None and not table.is_priced("openai", "tts-1")
    # a tool fee is charged per use, not per token: the model stays priced, and the fee is named
    assert table.lookup("openai", "gpt-4o").unmetered == ("storage_searches", "web_searches")


def test_a_price_that_changes_on_a_date_is_taken_at_the_records_time(table):
    class Record(Usage, kw_only=True):
        created_at: str

    before = Record(1_000_000, 0, created_at="2025-06-01T12:00:00.000Z")
    after = Record(1_000_000, 0, created_at="2025-07-01T12:00:00.000Z")
    # genai-prices: o3 went from $10 to $2 per 1M input tokens on 2025-06-10
    assert table.cost("openai", "o3", before).nanos == 10 * 10**9
    assert table.cost("openai", "o3", after).nanos == 2 * 10**9


def test_a_price_by_time_of_day_follows_the_utc_clock(table):
    class Record(Usage, kw_only=True):
        created_at: str

    entry = table._entry("deepseek", "deepseek-chat")[0]
    assert isinstance(entry, Schedule)
    # genai-prices: deepseek-chat costs less from 16:30 to 00:30 UTC
    peak = table.cost("deepseek", "deepseek-chat", Record(1_000_000, 0, created_at="2025-03-01T12:00:00.000Z"))
    off = table.cost("deepseek", "deepseek-chat", Record(1_000_000, 0, created_at="2025-03-01T20:00:00.000Z"))
    assert off.nanos < peak.nanos
    assert peak.nanos == int(entry.at(datetime(2025, 3, 1, 12, tzinfo=UTC)).input * 10**9)


def test_load_does_not_keep_genai_prices_on_the_request_path(table):
    # lookups and costs use only the converted table: no genai-prices object is reachable from a price
    price = table.lookup("anthropic", "claude-sonnet-4-5")
    assert type(price).__module__ == "edge_proxy.metering.model_price"
    assert all(type(t).__module__ == "edge_proxy.metering.model_price" for t in price.tiers)


def test_the_shipped_snapshot_is_the_installed_release():
    # genai_prices.json is what ``python -m edge_proxy.metering.genai_source`` writes from the installed release
    shipped = msgspec.json.decode(genai_source.SNAPSHOT.read_bytes())
    assert shipped == msgspec.json.decode(msgspec.json.encode(genai_source.dump()))
    assert shipped["version"] == version("genai-prices")


@pytest.mark.parametrize("name,gid", MAPPED, ids=[f"{n} lists names as genai-prices matches them" for n, _ in MAPPED])
def test_a_model_is_listed_by_its_id_when_its_clause_matches_it(table, name, gid):
    source = table._providers[name].source
    for model in _served(gid):
        listed = source.names[source.ids.index(model.id)]
        assert (listed == model.id) == model.is_match(model.id), model.id


def test_a_worker_loading_prices_imports_neither_genai_prices_nor_pydantic():
    code = ("import sys; from edge_proxy.metering.pricing import PriceTable; t = PriceTable.load();"
            "assert t.lookup('openai', 'gpt-4o') is not None;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('genai_prices', 'pydantic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
