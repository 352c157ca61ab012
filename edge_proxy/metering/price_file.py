"""The price files: the shipped ``prices.toml`` and an operator's overrides (``EDGE_PROXY_PRICES_FILE``).

Both have one format (USD per 1M tokens, as decimal strings; a TOML float has lost exactness already):

    [defaults]
    max_output_tokens = 4096          # the ceiling max_output_tokens() falls back to for a model without one

    [aliases]
    google-openai-compatible = "google"   # a provider that shares another's prices (its own entries win)

    [default]                          # prices for any model the table does not otherwise know
    input = "1.00"
    output = "4.00"
    [default.openai]                   # ... or only for one provider's unknown models (wins over [default])
    input = "2.50"
    output = "10.00"

    [openai."gpt-4o"]                  # one model: the provider's own model name
    input = "2.50"                     # required, like output
    output = "10.00"
    cached_input = "1.25"              # cache reads               (else: input)
    cache_write = "3.125"              # cache writes, 5-minute    (else: input)
    cache_write_1h = "5.00"            # 1-hour cache writes       (else: cache_write)
    input_audio = "40.00"              # audio prompt tokens       (else: input)
    cached_input_audio = "2.50"        # cached audio              (else: cached_input or input_audio)
    output_audio = "80.00"             # audio output tokens       (else: output)
    reasoning = "3.00"                 # reasoning tokens          (else: output)
    max_output_tokens = 16384          # the model's output ceiling
    [[openai."gpt-4o".tiers]]          # a long-context tier: a prompt above `above` tokens pays these
    above = 200000
    input = "5.00"

An entry with only ``max_output_tokens`` sets the ceiling of a model priced elsewhere and keeps its prices.
"""
from __future__ import annotations

import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import msgspec

from .model_price import PRICE_KEYS, ModelPrice, Tier

__all__ = ["PriceFile", "read"]

_RESERVED = ("defaults", "aliases", "default")
_MODEL_KEYS = frozenset(PRICE_KEYS + ("max_output_tokens", "tiers"))
_TIER_KEYS = frozenset(PRICE_KEYS + ("above",))


class PriceFile(msgspec.Struct):
    """One price file, checked and parsed."""

    models: dict[str, dict[str, ModelPrice]]  # provider -> model name -> price
    ceilings: dict[str, dict[str, int]]  # provider -> model name -> max_output_tokens, for ceiling-only entries
    default: ModelPrice | None
    provider_defaults: dict[str, ModelPrice]
    aliases: dict[str, str]
    default_max_output_tokens: int | None


def read(path: str | Path) -> PriceFile:
    """Parse one price file; ValueError naming the file and the entry for anything wrong in it."""
    where = str(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: not valid TOML: {exc}") from None
    models: dict[str, dict[str, ModelPrice]] = {}
    ceilings: dict[str, dict[str, int]] = {}
    for provider, table in doc.items():
        if provider in _RESERVED:
            continue
        if not isinstance(table, dict):
            raise ValueError(f"{where}: {provider} must be a table of models")
        for model, entry in table.items():
            at = f"{where}: {provider}.{model}"
            if isinstance(entry, dict) and set(entry) == {"max_output_tokens"}:
                ceilings.setdefault(provider, {})[model] = _ceiling(entry["max_output_tokens"], at)
            else:
                models.setdefault(provider, {})[model] = _entry(entry, at, where)
    default = doc.get("default", {})
    if not isinstance(default, dict):
        raise ValueError(f"{where}: [default] must be a table")
    own = {k: v for k, v in default.items() if not isinstance(v, dict)}
    provider_defaults = {p: _entry(v, f"{where}: default.{p}", where, "default")
                         for p, v in default.items() if isinstance(v, dict)}
    defaults = doc.get("defaults", {})
    aliases = doc.get("aliases", {})
    if not isinstance(defaults, dict) or set(defaults) - {"max_output_tokens"}:
        raise ValueError(f"{where}: [defaults] takes only max_output_tokens")
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise ValueError(f"{where}: [aliases] maps provider names to provider names")
    max_out = defaults.get("max_output_tokens")
    return PriceFile(models, ceilings, _entry(own, f"{where}: default", where, "default") if own else None,
                     provider_defaults, dict(aliases),
                     None if max_out is None else _ceiling(max_out, f"{where}: [defaults] max_output_tokens"))


def _entry(entry: Any, at: str, source: str, kind: str = "") -> ModelPrice:
    if not isinstance(entry, dict):
        raise ValueError(f"{at}: expected a table of prices")
    unknown = set(entry) - _MODEL_KEYS
    if unknown:
        raise ValueError(f"{at}: unknown keys {sorted(unknown)}")
    for key in ("input", "output"):
        if key not in entry:
            raise ValueError(f"{at}: missing {key}")
    prices = {k: _price(entry[k], f"{at}.{k}") for k in PRICE_KEYS if k in entry}
    tiers = entry.get("tiers", [])
    if not isinstance(tiers, list):
        raise ValueError(f"{at}.tiers: must be an array of tables ([[provider.\"model\".tiers]])")
    max_out = entry.get("max_output_tokens")
    try:
        return ModelPrice.of(**prices, max_output_tokens=None if max_out is None else _ceiling(max_out, at),
                             tiers=tuple(_tier(t, f"{at}.tiers[{i}]") for i, t in enumerate(tiers)),
                             source=f"{kind} {source}".strip())
    except ValueError as exc:
        raise ValueError(f"{at}: {exc}") from None


def _tier(tier: Any, at: str) -> Tier:
    if not isinstance(tier, dict):
        raise ValueError(f"{at}: expected a table")
    unknown = set(tier) - _TIER_KEYS
    if unknown:
        raise ValueError(f"{at}: unknown keys {sorted(unknown)}")
    above = tier.get("above")
    if not isinstance(above, int) or isinstance(above, bool) or above < 0:
        raise ValueError(f"{at}.above: must be a non-negative integer (the prompt tokens above which it applies)")
    return Tier(above, {k: _price(v, f"{at}.{k}") for k, v in tier.items() if k != "above"})


def _ceiling(value: Any, at: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{at}.max_output_tokens: must be a non-negative integer")
    return value


def _price(value: Any, at: str) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(f"{at}: prices must be decimal strings, got {value!r}")
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{at}: not a decimal: {value!r}") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"{at}: must be a finite price >= 0, got {value!r}")
    return d
