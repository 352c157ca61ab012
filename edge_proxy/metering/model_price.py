"""One model's prices, and the exact cost of one call at them, in integer nano-dollars.

A price is USD per 1M tokens, per *kind* of token. The kinds nest the way genai-prices' units do, and a usage
counts each kind inclusively (``input_tokens`` is every prompt token, cached, written and audio ones included):

    input_tokens                     at ``input``
      cached_tokens                  at ``cached_input``        (cache reads)
        cached_audio_tokens          at ``cached_input_audio``  (the audio part of the cache reads)
      cache_write_tokens             at ``cache_write``         (every cache write; the 5-minute price)
        cache_write_1h_tokens        at ``cache_write_1h``      (the part written with a 1-hour TTL)
      input_audio_tokens             at ``input_audio``         (audio prompt tokens, cached ones included)
    output_tokens                    at ``output``              (reasoning and audio included)
      reasoning_tokens               at ``reasoning``
      output_audio_tokens            at ``output_audio``

A kind without a price of its own is charged at its nearest priced parent (a 1-hour write without a
``cache_write_1h`` price costs ``cache_write``, and without that ``input``). Each token is charged once, at the
most specific price that applies to it: the rule genai-prices calls leaf decomposition, reproduced exactly.

Tiers (Gemini's and Claude's long-context prices): a tier applies to the whole call when its prompt
(``input_tokens``) is strictly above the tier's ``above``; kinds a tier does not list keep the base price.

Because every rule above is linear in the token counts, each tier is turned at load time into one integer
coefficient per kind (pico-dollars per 1M tokens), and a cost is a dot product: no Decimal on the request path.
The input terms are summed and rounded once to whole nano-dollars (half to even), the output terms the same way,
and the total is the sum of the two, so the parts always add up.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

import msgspec

__all__ = ["INPUT_KINDS", "KINDS", "OUTPUT_KINDS", "UNPRICED", "Cost", "ModelPrice", "Tier", "Tokens", "cost_of"]

# (usage field, price key, parent price key or None). Parents come before their children.
INPUT_KINDS = (
    ("input_tokens", "input", None),
    ("cached_tokens", "cached_input", "input"),
    ("cached_audio_tokens", "cached_input_audio", "cached_input"),  # also under input_audio: see _leaf_rates
    ("cache_write_tokens", "cache_write", "input"),
    ("cache_write_1h_tokens", "cache_write_1h", "cache_write"),
    ("input_audio_tokens", "input_audio", "input"),
)
OUTPUT_KINDS = (
    ("output_tokens", "output", None),
    ("reasoning_tokens", "reasoning", "output"),
    ("output_audio_tokens", "output_audio", "output"),
)
KINDS = INPUT_KINDS + OUTPUT_KINDS
PRICE_KEYS = tuple(k[1] for k in KINDS)
_N_IN = len(INPUT_KINDS)
_PICO_PER_NANO_MILLION = 10**9  # pico-dollars per 1M tokens -> nano-dollars per token


class Tokens(Protocol):
    """What a price applies to: a ``Usage`` from the scanners or a ``RequestRecord`` (same field names)."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cache_write_1h_tokens: int
    input_audio_tokens: int
    cached_audio_tokens: int
    output_audio_tokens: int


class Tier(msgspec.Struct, frozen=True):
    """A long-context price: ``prices`` (USD per 1M tokens, by price key) for calls whose prompt is above ``above``."""

    above: int
    prices: dict[str, Decimal]


class Cost(msgspec.Struct, frozen=True):
    """What one call cost the gateway at the provider's list price, in nano-dollars."""

    nanos: int | None  # total; None when unpriced
    input_nanos: int | None
    output_nanos: int | None
    priced: bool


UNPRICED = Cost(None, None, None, False)


class ModelPrice(msgspec.Struct, frozen=True):
    """One model's prices in USD per 1M tokens (None: charged at the parent kind's price), its output ceiling,
    and the integer rates derived from them."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    max_output_tokens: int | None = None  # the provider's output-token ceiling; None when not known
    cache_write_1h: Decimal | None = None
    input_audio: Decimal | None = None
    cached_input_audio: Decimal | None = None
    output_audio: Decimal | None = None
    reasoning: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    source: str = ""  # where the price came from: "genai-prices <version>", an overrides file, "default"
    unmetered: tuple[str, ...] = ()  # prices the source lists that the gateway does not charge (tool fees, images)
    # Derived by ``of``: the base tier's effective rates (input, output, cache read, cache write) in pico-dollars
    # per 1M tokens; per tier (above, coefficient per kind in KINDS order); and the highest per-token input-side
    # and output-side rates over every tier, which a reservation must use.
    pico: tuple[int, int, int, int] = (0, 0, 0, 0)
    bands: tuple[tuple[int, tuple[int, ...]], ...] = ()
    reserve_pico: tuple[int, int] = (0, 0)
    reserve_bands: tuple[tuple[int, int, int], ...] = ()  # per tier: (above, highest input rate, highest output)

    def reserve_rates(self, max_prompt_tokens: int) -> tuple[int, int]:
        """The highest input-side and output-side rates (pico-dollars per 1M tokens) a call whose prompt has at
        most ``max_prompt_tokens`` tokens can be charged: a tier above that bound cannot apply to it."""
        rates = self.reserve_bands
        if len(rates) == 1:
            return rates[0][1], rates[0][2]
        best_in = best_out = 0
        for above, r_in, r_out in rates:
            if above < max_prompt_tokens:
                best_in, best_out = max(best_in, r_in), max(best_out, r_out)
        return best_in, best_out

    @classmethod
    def of(cls, input: Decimal, output: Decimal, cached_input: Decimal | None = None,
           cache_write: Decimal | None = None, max_output_tokens: int | None = None,
           **rest: Any) -> ModelPrice:
        """A price with its integer rates computed (the only way prices should be made)."""
        base = cls(input, output, cached_input, cache_write, max_output_tokens, **rest)
        prices = {k: getattr(base, k) for k in PRICE_KEYS}
        _check_kinds({k for k, v in prices.items() if v is not None})
        bands, reserve, leaf_max_in, leaf_max_out, pico = [], [], 0, 0, (0, 0, 0, 0)
        for above, tier_prices in [(-1, {})] + [(t.above, t.prices) for t in sorted(base.tiers, key=_above)]:
            extra = set(tier_prices) - {k for k, v in prices.items() if v is not None}
            if extra:
                raise ValueError(f"tier above {above}: {sorted(extra)} must have a base price too")
            merged = {k: _pico(v) for k, v in {**prices, **tier_prices}.items() if v is not None}
            leaf = _leaf_rates(merged)
            if above < 0:
                pico = (leaf["input"], leaf["output"], leaf["cached_input"], leaf["cache_write"])
            bands.append((above, _coefficients(merged, leaf)))
            band_in, band_out = max(leaf[k[1]] for k in INPUT_KINDS), max(leaf[k[1]] for k in OUTPUT_KINDS)
            reserve.append((above, band_in, band_out))
            leaf_max_in, leaf_max_out = max(leaf_max_in, band_in), max(leaf_max_out, band_out)
        return msgspec.structs.replace(base, pico=pico, bands=tuple(bands), reserve_pico=(leaf_max_in, leaf_max_out),
                                       reserve_bands=tuple(reserve))


def _above(t: Tier) -> int:
    return t.above


def _pico(price: Decimal) -> int:
    scaled = price * 10**12
    if scaled != scaled.to_integral_value():
        raise ValueError(f"price {price} has more than 12 decimal places")
    return int(scaled)


def _check_kinds(priced: set[str]) -> None:
    """genai-prices' own rules for a consistent price set, so every token has exactly one price."""
    for _, key, parent in KINDS:
        if key in priced and parent is not None and parent not in priced:
            raise ValueError(f"a {key} price needs a {parent} price")
    if "cached_input_audio" in priced and "input_audio" not in priced:
        raise ValueError("a cached_input_audio price needs an input_audio price")
    if {"cached_input", "input_audio"} <= priced and "cached_input_audio" not in priced:
        raise ValueError("with both cached_input and input_audio prices, cached_input_audio needs one too")
    if {"reasoning", "output_audio"} <= priced:
        raise ValueError("reasoning and output_audio prices together are not supported (their overlap has no price)")


def _leaf_rates(priced: dict[str, int]) -> dict[str, int]:
    """The rate one token of each kind is charged at: its own price, else its nearest priced parent's."""
    rate: dict[str, int] = {}
    for _, key, parent in KINDS:
        if key in priced:
            rate[key] = priced[key]
        elif key == "cached_input_audio":
            # Under both cache reads and audio input; genai-prices requires this join to be priced whenever both
            # parents are, so at most one of them is priced here.
            rate[key] = rate["cached_input"] if "cached_input" in priced else rate["input_audio_fallback"]
        else:
            rate[key] = rate[parent] if parent is not None else 0
        if key == "input":
            rate["input_audio_fallback"] = priced.get("input_audio", rate["input"])
    rate.pop("input_audio_fallback")
    return rate


def _coefficients(priced: dict[str, int], leaf: dict[str, int]) -> tuple[int, ...]:
    """Per kind (KINDS order), what one more reported token of that kind adds to the cost.

    A token reported as kind k is also counted by every ancestor of k; genai-prices charges it once, at k's leaf
    rate, by subtracting it from the ancestors' counts. So the coefficient of k is its leaf rate minus the leaf
    rate of the kind it would otherwise have been charged as (its nearest priced ancestor), and 0 when k has no
    price of its own (its tokens simply stay in the ancestor's count).
    """
    coef = []
    for _, key, parent in KINDS:
        if parent is None:
            coef.append(leaf[key])
        elif key not in priced:
            coef.append(0)
        elif key == "cached_input_audio":
            # counted by cache reads and by audio input: add back what both subtracted, as inclusion-exclusion
            coef.append(leaf[key] - leaf["cached_input"] - leaf["input_audio"] + leaf["input"])
        else:
            coef.append(leaf[key] - leaf[parent])
    return tuple(coef)


def _round_half_even(numerator: int, denominator: int) -> int:
    q, r = divmod(numerator, denominator)
    if 2 * r > denominator or (2 * r == denominator and q % 2):
        q += 1
    return q


def cost_of(price: ModelPrice, usage: Tokens) -> Cost:
    """The cost of ``usage`` at ``price`` by the rules in the module docstring: exact integer arithmetic, the
    same results as Decimal, rounded half to even.

    Counts a broken provider reports inconsistently are made consistent by raising the parent, never by
    dropping a reported token: negative counts read as 0, and the prompt is at least its cache reads plus
    writes plus uncached audio (so cached tokens beyond the prompt are still charged, at the cached price).

    This is the specification of its compiled twin, _fastpath/cost.pyx, which pricing.py picks when it is built:
    a change here is made there too (tests/test_cost_twins.py runs one table over both).
    """
    # Conditional expressions rather than max(): this runs on the request path, and each max() is a call.
    w1h = usage.cache_write_1h_tokens
    w1h = w1h if w1h > 0 else 0  # noqa: FURB136
    write = usage.cache_write_tokens
    write = write if write > w1h else w1h  # noqa: FURB136
    ca = usage.cached_audio_tokens
    ca = ca if ca > 0 else 0  # noqa: FURB136
    cached = usage.cached_tokens
    cached = cached if cached > ca else ca  # noqa: FURB136
    audio = usage.input_audio_tokens
    audio = audio if audio > ca else ca  # noqa: FURB136
    inp = usage.input_tokens
    floor = cached + write + audio - ca
    inp = inp if inp > floor else floor  # noqa: FURB136
    reasoning = usage.reasoning_tokens
    reasoning = reasoning if reasoning > 0 else 0  # noqa: FURB136
    out_audio = usage.output_audio_tokens
    out_audio = out_audio if out_audio > 0 else 0  # noqa: FURB136
    out = usage.output_tokens
    floor = reasoning + out_audio
    out = out if out > floor else floor  # noqa: FURB136
    bands = price.bands
    c = bands[0][1]
    if len(bands) > 1:
        for above, coef in reversed(bands):
            if inp > above:
                c = coef
                break
    input_nanos = _round_half_even(inp * c[0] + cached * c[1] + ca * c[2] + write * c[3] + w1h * c[4]
                                   + audio * c[5], _PICO_PER_NANO_MILLION)
    output_nanos = _round_half_even(out * c[6] + reasoning * c[7] + out_audio * c[8], _PICO_PER_NANO_MILLION)
    return Cost(input_nanos + output_nanos, input_nanos, output_nanos, True)
