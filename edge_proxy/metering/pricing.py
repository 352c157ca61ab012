"""Provider prices per (provider, model), and the exact cost of one upstream call in nano-dollars.

Where a price comes from, first match wins:
1. the operator's overrides file (``EDGE_PROXY_PRICES_FILE``), model by model;
2. the shipped ``prices.toml`` (models genai-prices lacks; today none, see the file);
3. genai-prices' data for the provider (``genai_source``), converted once when the table is loaded;
4. the overrides file's ``[default.<provider>]``, then ``[default]``: prices for models nothing else knows.
Anything else is unpriced: ``lookup`` gives None and ``cost`` ``priced=False``, never a silent $0.

An override entry for a model genai-prices knows (by its id or an exact alias) replaces that model's prices for
every name that finds it; an override for a new name adds a model. Output ceilings come from the model's entry,
else ``output_limits.toml`` (a small sourced table: genai-prices has none); ``output_limit`` is None when no
ceiling is known. The cost rule and its integer arithmetic are in ``model_price``.
"""
from __future__ import annotations

import os
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import msgspec

from .. import money
from . import genai_source, price_file
from .genai_source import GENAI_PRICES_IDS, Entry, Schedule, Source
from .model_price import UNPRICED, Cost, ModelPrice, Tokens, cost_of

__all__ = ["COST_IMPLEMENTATION", "NANO", "Cost", "ModelPrice", "PriceTable", "cost_of", "usd"]

# The cost rule is compiled (_fastpath/cost.pyx) unless EDGE_PROXY_PURE_PYTHON forces its twin, model_price.cost_of
# (the specification); reading that one variable at import is deliberate (as yarl does): it chooses code, not
# behaviour.
COST_IMPLEMENTATION = "py"
if os.environ.get("EDGE_PROXY_PURE_PYTHON", "") in ("", "0"):
    try:
        from ._cost_c import cost_of  # the same API (.pyi)
        COST_IMPLEMENTATION = "c"
    except ImportError:  # not built: tests/test_fastpath_loaded.py fails loudly on a build that should have it
        pass

NANO = money.NANOS_PER_USD  # nano-dollars per USD (1_000_000_000)
PER = 1_000_000  # prices are per this many tokens
DEFAULT_PATH = Path(__file__).with_name("prices.toml")
LIMITS_PATH = Path(__file__).with_name("output_limits.toml")
_FALLBACK_MAX_OUTPUT = 4096  # max_output_tokens() for a model without a ceiling, when no [defaults] says
# Version suffixes that do not change the price: -2024-07-18, -20250514, -001, -latest.
_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{3}|latest)$")


def usd(nanos: int) -> str:
    """Nano-dollars as an exact decimal USD string: 1234 -> "0.000001234", 0 -> "0"."""
    if not isinstance(nanos, int) or isinstance(nanos, bool):
        raise TypeError(f"nano-dollars must be an int, not {type(nanos).__name__}")
    return money.usd(nanos)  # one formatter for the whole gateway; this adds the type check


class _Provider(msgspec.Struct):
    """Everything one provider's lookups need, built at load."""

    files: dict[str, ModelPrice]  # price-file entries by name (overrides over the shipped file)
    folded: dict[str, ModelPrice]
    source: Source | None
    entries: tuple[Entry, ...]  # the source's models, with ceilings and replacing overrides applied
    default: ModelPrice | None


class PriceTable:
    """Prices per (provider, model), looked up with the fallbacks model ids need in practice."""

    def __init__(self, providers: dict[str, _Provider], default_max_output_tokens: int,
                 source_version: str | None = None) -> None:
        self.default_max_output_tokens = default_max_output_tokens
        self.source_version = source_version  # "genai-prices X.Y.Z", or None when loaded without it
        self._providers = providers
        self._cache: dict[tuple[str, str], tuple[Entry, bool]] = {}
        self._listing: dict[str, dict[str, ModelPrice]] | None = None

    @classmethod
    def load(cls, path: str | Path | None = None, overrides_path: str | Path | None = None, *,
             genai_prices: bool = True, limits_path: str | Path | None = None) -> PriceTable:
        """Build the table: genai-prices' data (unless ``genai_prices=False``), the price file (default: the
        packaged prices.toml), the overrides file, and the output ceilings (default: output_limits.toml)."""
        files = [price_file.read(path or DEFAULT_PATH)]
        if overrides_path:
            files.append(price_file.read(overrides_path))
        aliases: dict[str, str] = {}
        models: dict[str, dict[str, ModelPrice]] = {}
        ceilings: dict[str, dict[str, int]] = {}
        sources: dict[str, Source] = {}
        defaults: dict[str, ModelPrice] = {}
        default: ModelPrice | None = None
        default_max = None
        for f in files:  # later files win: per model, per default, per alias
            aliases.update(f.aliases)
            for provider, priced in f.models.items():
                models.setdefault(provider, {}).update(priced)
            for provider, limited in f.ceilings.items():
                ceilings.setdefault(provider, {}).update(limited)
            defaults.update(f.provider_defaults)
            default = f.default or default
            default_max = f.default_max_output_tokens if f.default_max_output_tokens is not None else default_max
        for alias, target in aliases.items():
            if target not in models and target not in GENAI_PRICES_IDS:
                raise ValueError(f"[aliases] {alias} = {target!r}: no such provider")
        version = None
        if genai_prices:
            version, sources = genai_source.load({i for i in GENAI_PRICES_IDS.values() if i})
        limits = _read_limits(limits_path or LIMITS_PATH)
        names = list(GENAI_PRICES_IDS) + [p for p in [*models, *aliases, *defaults] if p not in GENAI_PRICES_IDS]

        def inherited(table: dict[str, Any], provider: str) -> Any:
            target = aliases.get(provider)
            return {**table.get(target, {}), **table.get(provider, {})} if target else table.get(provider, {})

        providers = {}
        for name in dict.fromkeys(names):
            gp = GENAI_PRICES_IDS.get(name) or GENAI_PRICES_IDS.get(aliases.get(name, ""))
            own = inherited(models, name)
            providers[name] = _build(name, own, {**inherited(limits, name), **inherited(ceilings, name)},
                                     sources.get(gp) if gp else None,
                                     defaults.get(name) or defaults.get(aliases.get(name, "")) or default)
        return cls(providers, default_max if default_max is not None else _FALLBACK_MAX_OUTPUT, version)

    # -- questions the gateway asks --------------------------------------------------------------------------
    def lookup(self, provider: str, model: str | None) -> ModelPrice | None:
        """The price in force now for a model (an operator default included), or None. Tries, in order: the
        id as given; without a provider prefix ("openai/gpt-4o"); without a date/version suffix ("-2024-07-18",
        "-20250514", "-001", "-latest"); each first in the price files (exactly, then case-insensitively) and
        then in genai-prices' match rules."""
        found = self._cache.get((provider, model or ""))  # `_entry`'s memo (never of ""): one call less per quote
        entry = (found if found is not None else self._entry(provider, model))[0]
        return entry.at(datetime.now(UTC)) if isinstance(entry, Schedule) else entry

    def is_priced(self, provider: str, model: str | None) -> bool:
        """Whether a call to this model can be priced: by its own price or by an operator default."""
        return self._entry(provider, model)[0] is not None

    def has_own_price(self, provider: str, model: str | None) -> bool:
        """Whether the model has a price of its own (not an operator default): what routing by name wants."""
        entry, by_default = self._entry(provider, model)
        return entry is not None and not by_default

    def output_limit(self, provider: str, model: str | None) -> int | None:
        """The model's output-token ceiling; None when it is unpriced or its ceiling is not known."""
        price = self.lookup(provider, model)
        return price.max_output_tokens if price is not None else None

    def max_output_tokens(self, provider: str, model: str | None) -> int:
        """The output ceiling to reserve for: the model's, else ``[defaults] max_output_tokens`` (a guess; a
        caller that must not guess uses ``output_limit``)."""
        limit = self.output_limit(provider, model)
        return limit if limit is not None else self.default_max_output_tokens

    def cost(self, provider: str, model: str | None, usage: Tokens) -> Cost:
        """The provider cost of ``usage``; ``priced=False`` (all None) for a model the table cannot price.
        A price that changes over time is taken at ``usage.created_at`` when it has one, else now."""
        found = self._cache.get((provider, model or ""))  # `_entry`'s memo (never of ""): a frame fewer per record
        entry = (found if found is not None else self._entry(provider, model))[0]
        if entry is None:
            return UNPRICED
        # isinstance against a msgspec Struct class goes through its metaclass's __instancecheck__ (~150 ns): a
        # plain ModelPrice, nearly every model, is told by its type alone
        if type(entry) is not ModelPrice and isinstance(entry, Schedule):
            entry = entry.at(_when(usage))
        return cost_of(entry, usage)

    @property
    def models(self) -> dict[str, dict[str, ModelPrice]]:
        """provider -> {model name: price in force when first asked} for every model with a price of its own
        (not defaults): the model listing and routing by model name read this."""
        if self._listing is None:
            now = datetime.now(UTC)
            listing: dict[str, dict[str, ModelPrice]] = {}
            for name, p in self._providers.items():
                table = dict(p.files)
                if p.source is not None:
                    for shown, entry in zip(p.source.names, p.entries, strict=True):
                        if entry is not None and shown is not None:
                            table.setdefault(shown, entry.at(now) if isinstance(entry, Schedule) else entry)
                if table:
                    listing[name] = table
            self._listing = listing
        return self._listing

    _models = models  # the name unified/routes.py read before `models` existed

    # -- resolution ------------------------------------------------------------------------------------------
    def _entry(self, provider: str, model: str | None) -> tuple[Entry, bool]:
        if not model:
            return None, False
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._resolve(provider, model)
        if len(self._cache) >= 4096:  # model ids come from clients: keep the memo bounded
            self._cache.clear()
        self._cache[key] = found
        return found

    def _resolve(self, provider: str, model: str) -> tuple[Entry, bool]:
        p = self._providers.get(provider)
        if p is None:
            return None, False
        short = model.rsplit("/", 1)[-1]
        for name in dict.fromkeys((model, short, _SUFFIX.sub("", short))):
            price = p.files.get(name) or p.folded.get(name.lower())
            if price is not None:
                return price, False
            if p.source is not None:
                index = p.source.find(name)
                if index is not None:
                    # genai-prices knows the model: its entry decides, even when it is "cannot be priced"
                    entry = p.entries[index]
                    return (entry, False) if entry is not None else (p.default, p.default is not None)
        return p.default, p.default is not None


def _build(name: str, files: dict[str, ModelPrice], limits: dict[str, int], source: Source | None,
           default: ModelPrice | None) -> _Provider:
    files = dict(files)  # ours to change: an alias may share the dict it came from
    entries = list(source.entries) if source is not None else []
    if source is not None:
        for model, ceiling in limits.items():
            index = source.find(model)
            found = entries[index] if index is not None else None
            if index is not None and found is not None:
                entries[index] = _with_ceiling(found, ceiling)
        for model, price in files.items():  # an override of a model genai-prices knows replaces it
            index = source.exact.get(model.lower())
            if index is None:
                index = next((i for i, mid in enumerate(source.ids) if mid.lower() == model.lower()), None)
            if index is not None:
                known = entries[index]
                if price.max_output_tokens is None and known is not None:
                    price = _with_ceiling(price, _ceiling_of(known))
                entries[index] = files[model] = price
    for model, price in list(files.items()):
        if price.max_output_tokens is None and model in limits:
            files[model] = _with_ceiling(price, limits[model])
    return _Provider(files, {m.lower(): v for m, v in reversed(files.items())}, source, tuple(entries), default)


@overload
def _with_ceiling(entry: ModelPrice, ceiling: int | None) -> ModelPrice: ...
@overload
def _with_ceiling(entry: Schedule, ceiling: int | None) -> Schedule: ...
def _with_ceiling(entry: ModelPrice | Schedule, ceiling: int | None) -> ModelPrice | Schedule:
    if isinstance(entry, Schedule):
        return entry.with_ceiling(ceiling)
    return msgspec.structs.replace(entry, max_output_tokens=ceiling)


def _ceiling_of(entry: ModelPrice | Schedule) -> int | None:
    return (entry.phases[-1][1] if isinstance(entry, Schedule) else entry).max_output_tokens


def _read_limits(path: str | Path) -> dict[str, dict[str, int]]:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    for provider, table in doc.items():
        for model, value in table.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{path}: {provider}.{model} must be a non-negative integer")
    return doc


def _when(usage: object) -> datetime:
    stamp = getattr(usage, "created_at", None)
    if isinstance(stamp, str):
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            return datetime.now(UTC)
        return when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return datetime.now(UTC)
