"""Provider prices and the exact cost of one upstream call, in nano-dollars.

Prices come from ``prices.toml`` beside this module (USD per 1M tokens, decimal strings), optionally
overlaid by an operator's overrides file in the same format whose entries win per model.

Cost rule, for token counts (a ``Usage`` from usage_types, or a request record) and a ``ModelPrice``:

* uncached input = input_tokens - cached_tokens - cache_write_tokens (never below 0), at ``input``;
* cached_tokens at ``cached_input`` (``input`` when none is listed);
* cache_write_tokens at ``cache_write`` (``input`` when none is listed);
* output_tokens (reasoning included) at ``output``.

Each term is exact in Decimal: tokens x price_per_1M x NANO / 1,000,000. The input terms are summed
and rounded once to whole nano-dollars (ROUND_HALF_EVEN) into ``input_nanos``; the output term is
rounded the same way into ``output_nanos``; the total ``nanos`` is their sum, so the parts always
add up. An unknown model gives ``Cost(None, None, None, False)``: never a silent $0.
"""
from __future__ import annotations

import re
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Protocol

import msgspec

from .. import money

__all__ = ["NANO", "Cost", "ModelPrice", "PriceTable", "cost_of", "usd"]

NANO = money.NANOS_PER_USD  # nano-dollars per USD (1_000_000_000)
PER = 1_000_000  # prices are per this many tokens
DEFAULT_PATH = Path(__file__).with_name("prices.toml")

_PRICE_KEYS = ("input", "output", "cached_input", "cache_write")
_MODEL_KEYS = frozenset(_PRICE_KEYS + ("max_output_tokens",))
# Version suffixes that do not change the price: -2024-07-18, -20250514, -001, -latest.
_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{3}|latest)$")


class Tokens(Protocol):
    """What a price applies to: a ``Usage`` from the scanners, or a ``RequestRecord`` (same field names)."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int


class ModelPrice(msgspec.Struct, frozen=True):
    """One model's prices in USD per 1M tokens, and its output-token ceiling."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None
    cache_write: Decimal | None
    max_output_tokens: int
    # The same prices as exact integers (pico-dollars per 1M tokens: input, output, cached input, cache write,
    # the last two falling back to input), so pricing a record is integer arithmetic rather than Decimal.
    pico: tuple[int, int, int, int] = (0, 0, 0, 0)

    @classmethod
    def of(cls, input: Decimal, output: Decimal, cached_input: Decimal | None, cache_write: Decimal | None,
           max_output_tokens: int) -> ModelPrice:
        p_in = _pico(input)
        return cls(input, output, cached_input, cache_write, max_output_tokens,
                   (p_in, _pico(output), _pico(cached_input) if cached_input is not None else p_in,
                    _pico(cache_write) if cache_write is not None else p_in))


class Cost(msgspec.Struct, frozen=True):
    """What one call cost the gateway at the provider's list price, in nano-dollars."""

    nanos: int | None  # total; None when unpriced
    input_nanos: int | None
    output_nanos: int | None
    priced: bool


UNPRICED = Cost(None, None, None, False)


_PICO_PER_NANO_MILLION = 10**3 * 10**6  # pico-dollars per 1M tokens -> nano-dollars per token


def _pico(price: Decimal | None) -> int:
    if price is None:
        return 0
    scaled = price * 10**12
    if scaled != scaled.to_integral_value():
        raise ValueError(f"price {price} has more than 12 decimal places")
    return int(scaled)


def _round_half_even(numerator: int, denominator: int) -> int:
    q, r = divmod(numerator, denominator)
    if 2 * r > denominator or (2 * r == denominator and q % 2):
        q += 1
    return q


def cost_of(price: ModelPrice, usage: Tokens) -> Cost:
    """The cost of ``usage`` at ``price`` by the rule in the module docstring (exact integer arithmetic:
    the same results as Decimal, rounded half to even)."""
    p_in, p_out, p_cached, p_write = price.pico
    inp = max(0, usage.input_tokens)
    cached = max(0, usage.cached_tokens)
    write = max(0, usage.cache_write_tokens)
    uncached = max(0, inp - cached - write)
    input_nanos = _round_half_even(uncached * p_in + cached * p_cached + write * p_write, _PICO_PER_NANO_MILLION)
    output_nanos = _round_half_even(max(0, usage.output_tokens) * p_out, _PICO_PER_NANO_MILLION)
    return Cost(input_nanos + output_nanos, input_nanos, output_nanos, True)


def usd(nanos: int) -> str:
    """Nano-dollars as an exact decimal USD string: 1234 -> "0.000001234", 0 -> "0"."""
    if not isinstance(nanos, int) or isinstance(nanos, bool):
        raise TypeError(f"nano-dollars must be an int, not {type(nanos).__name__}")
    return money.usd(nanos)  # one formatter for the whole gateway; this adds the type check


def _price(value: object, where: str) -> Decimal:
    # Strings only: a TOML float has already lost exactness by the time we would see it.
    if not isinstance(value, str):
        raise ValueError(f"{where}: prices must be decimal strings, got {value!r}")
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{where}: not a decimal: {value!r}") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"{where}: must be a finite price >= 0, got {value!r}")
    return d


def _read(path: str | Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


class PriceTable:
    """Prices per (provider, model), looked up with the fallbacks model ids need in practice."""

    def __init__(self, models: dict[str, dict[str, ModelPrice]], default_max_output_tokens: int) -> None:
        self.default_max_output_tokens = default_max_output_tokens
        self._models = models
        self._folded = {p: {m.lower(): v for m, v in reversed(t.items())} for p, t in models.items()}
        self._cache: dict[tuple[str, str], ModelPrice | None] = {}

    @classmethod
    def load(cls, path: str | None = None, overrides_path: str | None = None) -> PriceTable:
        """Read the price file (default: the packaged prices.toml) and an optional overrides file."""
        docs = [(str(path or DEFAULT_PATH), _read(path or DEFAULT_PATH))]
        if overrides_path:
            docs.append((str(overrides_path), _read(overrides_path)))
        defaults: dict = {}
        aliases: dict[str, str] = {}
        raw: dict[str, dict[str, tuple[str, dict]]] = {}
        for source, doc in docs:  # later files win: per model, per default, per alias
            defaults.update(doc.get("defaults", {}))
            aliases.update(doc.get("aliases", {}))
            for provider, table in doc.items():
                if provider in ("defaults", "aliases"):
                    continue
                for model, entry in table.items():
                    raw.setdefault(provider, {})[model] = (source, entry)
        default_max = defaults.get("max_output_tokens")
        if not isinstance(default_max, int) or isinstance(default_max, bool) or default_max < 0:
            raise ValueError("[defaults] max_output_tokens must be a non-negative integer")
        models = {
            provider: {m: cls._entry(f"{src}: {provider}.{m}", e, default_max) for m, (src, e) in table.items()}
            for provider, table in raw.items()
        }
        for alias, target in aliases.items():
            if target not in models:
                raise ValueError(f"[aliases] {alias} = {target!r}: no such provider")
            models[alias] = {**models[target], **models.get(alias, {})}
        return cls(models, default_max)

    @staticmethod
    def _entry(where: str, entry: object, default_max: int) -> ModelPrice:
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a table of prices")
        unknown = set(entry) - _MODEL_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("input", "output"):
            if key not in entry:
                raise ValueError(f"{where}: missing {key}")
        prices = {k: _price(entry[k], f"{where}.{k}") if k in entry else None for k in _PRICE_KEYS}
        max_out = entry.get("max_output_tokens", default_max)
        if not isinstance(max_out, int) or isinstance(max_out, bool) or max_out < 0:
            raise ValueError(f"{where}.max_output_tokens: must be a non-negative integer")
        return ModelPrice.of(max_output_tokens=max_out, **prices)

    def lookup(self, provider: str, model: str | None) -> ModelPrice | None:
        """The price of a model, or None. Tries, in order: the id as given; without a provider
        prefix ("openai/gpt-4o"); without a date/version suffix ("-2024-07-18", "-20250514",
        "-001", "-latest"); then each of those case-insensitively."""
        if not model:
            return None
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

    def _resolve(self, provider: str, model: str) -> ModelPrice | None:
        table = self._models.get(provider)
        if not table:
            return None
        short = model.rsplit("/", 1)[-1]
        candidates = list(dict.fromkeys((model, short, _SUFFIX.sub("", short))))
        for name in candidates:
            if name in table:
                return table[name]
        folded = self._folded[provider]
        for name in candidates:
            if name.lower() in folded:
                return folded[name.lower()]
        return None

    def max_output_tokens(self, provider: str, model: str | None) -> int:
        """The output ceiling to reserve balance for: the model's, else the default."""
        price = self.lookup(provider, model)
        return price.max_output_tokens if price is not None else self.default_max_output_tokens

    def cost(self, provider: str, model: str | None, usage: Tokens) -> Cost:
        """The provider cost of ``usage``; ``priced=False`` (all None) for an unknown model."""
        price = self.lookup(provider, model)
        return UNPRICED if price is None else cost_of(price, usage)
