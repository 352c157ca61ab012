"""The default prices: genai-prices' data, converted once at start into the gateway's own lookup.

genai-prices (PyPI, maintained by Pydantic, released monthly) describes each provider's models as a list: a
model has an id, a ``match`` clause (equals / starts_with / ends_with / contains / regex, combined with or / and,
tried against the lower-cased model name; the first model of the list that matches wins), and prices that are
either one set or a list of conditional sets (from a start date, or within a daily UTC window; the last active
one wins, else the first). A price is a Decimal per 1M tokens, or tiered by prompt size.

``load`` converts that once: equals clauses become one dict, the other clauses small predicates kept in list
order, each price set a ``ModelPrice`` with its integer rates, each conditional list a ``Schedule``. It reads
genai-prices' data from ``genai_prices.json`` beside this module: a faithful dump of the pinned genai-prices
release's own objects (``python -m edge_proxy.metering.genai_source`` writes it again after an update, and
``tests/test_price_sources.py`` checks that it equals what the installed release holds). So a worker never
imports genai-prices or pydantic: that saves each worker about 16 MB.

A model is left unpriced (so requests for it fail closed) when genai-prices lists no token price for it, or
prices something per token or per request that the gateway cannot count (image or video tokens, a fee per
request): charging such a call at the text rates would be a guess. Fees for tools (web search, file search,
code execution) are per use, not per token; the model keeps its token prices and the fee is listed in
``ModelPrice.unmetered``.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec

from .model_price import ModelPrice, Tier

__all__ = ["GENAI_PRICES_IDS", "Schedule", "Source", "load"]

# The catalogue's providers (providers/catalogue.toml) and genai-prices' id for each; None where genai-prices has
# no prices for that provider's own API. Not mapped on purpose:
# - elevenlabs: genai-prices prices two agent-platform models; the catalogue's elevenlabs is the speech API,
#   whose responses carry no token usage (usage_format "none").
# - hyperbolic, sambanova, nebius: genai-prices has them only as Hugging Face inference routes (huggingface_*),
#   which are Hugging Face's prices, not the provider's own list.
GENAI_PRICES_IDS: dict[str, str | None] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "xai": "x-ai",
    "google": "google",
    "google-openai-compatible": "google",  # the same Gemini models behind an OpenAI-shaped API
    "kluster": None,
    "inference": None,
    "groq": "groq",
    "novita": "novita",
    "vercel": None,
    "together": "together",
    "hyperbolic": None,
    "elevenlabs": None,
    "sambanova": None,
    "deepinfra": None,
    "cohere": "cohere",
    "parasail": None,
    "nebius": None,
    "fireworks": "fireworks",
    "embercloud": None,
    "cerebras": "cerebras",
    "targon": None,
    "gmicloud": None,
    "chutes": None,
    "baseten": "baseten",
    "moonshot": "moonshotai",
}

# Models of a genai-prices provider that the catalogue's provider of that name does not serve, by id prefix:
# genai-prices' google also prices Vertex AI's Claude models; the catalogue's google is the Gemini API.
_NOT_SERVED = {"google": ("claude-",)}

# genai-prices price key -> ours (model_price.KINDS)
_TOKEN_KEYS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cached_input",
    "cache_write_mtok": "cache_write",
    "cache_write_1h_mtok": "cache_write_1h",
    "input_audio_mtok": "input_audio",
    "cache_audio_read_mtok": "cached_input_audio",
    "output_audio_mtok": "output_audio",
    "output_reasoning_mtok": "reasoning",
}
# Charged per use of a tool, which the gateway does not count: the model stays priced by its tokens.
_TOOL_FEES = frozenset({"web_searches_kcount", "storage_searches_kcount", "code_executions_kcount",
                        "social_searches_kcount"})


class _StartsOn(msgspec.Struct, frozen=True):
    day: date

    def active(self, at: datetime) -> bool:
        return at.date() >= self.day


class _DailyWindow(msgspec.Struct, frozen=True):
    start: int  # seconds since UTC midnight
    end: int

    def active(self, at: datetime) -> bool:
        t = at.hour * 3600 + at.minute * 60 + at.second
        if self.end < self.start:  # the window crosses midnight
            return t >= self.start or t < self.end
        return self.start <= t < self.end


class Schedule(msgspec.Struct, frozen=True):
    """Prices that change by date or by time of day: the last phase whose condition holds, else the first."""

    phases: tuple[tuple[_StartsOn | _DailyWindow | None, ModelPrice], ...]

    def at(self, when: datetime) -> ModelPrice:
        for condition, price in reversed(self.phases):
            if condition is None or condition.active(when):
                return price
        return self.phases[0][1]

    def with_ceiling(self, ceiling: int | None) -> Schedule:
        return Schedule(tuple((c, msgspec.structs.replace(p, max_output_tokens=ceiling)) for c, p in self.phases))


Entry = ModelPrice | Schedule | None  # None: genai-prices knows the model, the gateway cannot price it


@dataclass(frozen=True)
class Source:
    """One genai-prices provider, converted: models in genai-prices' order, and how a name finds one."""

    # per model: a name a client can send that finds it (its id, else its first alias); None for a model only
    # a pattern finds (fine-tunes: "ft:gpt-4o:..."), which is priced but not listed
    names: tuple[str | None, ...]
    ids: tuple[str, ...]
    entries: tuple[Entry, ...]
    skipped: dict[str, str]  # model id -> why it is unpriced
    exact: dict[str, int]  # lower-cased name -> the first model whose clause equals it
    rules: tuple[tuple[int, Callable[[str], bool]], ...]  # the other clauses, in model order

    def find(self, name: str) -> int | None:
        """The index of the first model whose clause matches ``name``, as genai-prices decides it."""
        ref = name.lower()
        found = self._first(ref)
        if found is None:
            dashed = _COMPACT_DATE.sub(_dash_date, ref)  # genai-prices' retry: -20251211 -> -2025-12-11
            if dashed != ref:
                found = self._first(dashed)
        return found

    def _first(self, ref: str) -> int | None:
        best = self.exact.get(ref)
        for index, matches in self.rules:
            if best is not None and index > best:
                break
            if matches(ref):
                return index
        return best


_COMPACT_DATE = re.compile(r"(-)(20\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=-|:|$)")


def _dash_date(m: re.Match[str]) -> str:
    try:
        date(int(m.group(2)), int(m.group(3)), int(m.group(4)))
    except ValueError:
        return m.group(0)
    return f"-{m.group(2)}-{m.group(3)}-{m.group(4)}"


SNAPSHOT = Path(__file__).with_name("genai_prices.json")


class _Snapshot(msgspec.Struct):
    version: str
    providers: list[msgspec.Raw]  # each provider's JSON, decoded only when it is converted


class _ProviderId(msgspec.Struct):
    id: str


def load(ids: set[str]) -> tuple[str, dict[str, Source]]:
    """genai-prices' version and its providers ``ids`` converted (an id it does not have is an error)."""
    data = msgspec.json.decode(SNAPSHOT.read_bytes(), type=_Snapshot)
    tag = f"genai-prices {data.version}"
    by_id = {msgspec.json.decode(raw, type=_ProviderId).id: raw for raw in data.providers}
    missing = ids - set(by_id)
    if missing:
        raise ValueError(f"genai-prices has no provider {sorted(missing)}: update GENAI_PRICES_IDS")
    # One provider at a time: its decoded JSON is garbage before the next is read. Decoding the whole snapshot at
    # once peaked at about 2 MB of short-lived objects, and a worker's heap keeps the pages they touched.
    decimals: dict[str, Decimal] = {}  # one object per price value: ~1,700 prices share ~230 values
    return tag, {pid: _convert(_revive(msgspec.json.decode(by_id[pid]), decimals), tag) for pid in sorted(ids)}


# --- the snapshot: genai-prices' own objects, as plain JSON ----------------------------------------------------

_KEPT = {"Provider": ("id", "models"), "ModelInfo": ("id", "match", "prices")}  # of these, only what we read


def dump() -> dict[str, Any]:
    """The installed genai-prices release's providers (the ones GENAI_PRICES_IDS maps), as plain JSON."""
    from importlib.metadata import version

    from genai_prices.data import providers
    wanted = {i for i in GENAI_PRICES_IDS.values() if i}
    return {"version": version("genai-prices"),
            "providers": [_plain(p) for p in providers if p.id in wanted]}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = type(value).__name__
        names = _KEPT.get(kind) or [f.name for f in dataclasses.fields(value)]
        return {"@": kind, **{n: _plain(getattr(value, n)) for n in names}}
    if type(value).__module__.startswith("genai_prices.") and hasattr(value, "__dict__"):  # ModelPrice: a bag
        return {"@": type(value).__name__, **{k: _plain(v) for k, v in vars(value).items() if v is not None}}
    if isinstance(value, Decimal):
        return {"@decimal": str(value)}
    if isinstance(value, datetime):
        raise ValueError("genai-prices holds a datetime where a date or a time was expected")
    if isinstance(value, date):
        return {"@date": value.isoformat()}
    if isinstance(value, time):
        return {"@time": value.isoformat()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError(f"genai-prices holds a {type(value).__name__}, which the snapshot cannot keep")


_KINDS: dict[str, type] = {}


def _revive(value: Any, decimals: dict[str, Decimal]) -> Any:
    """The snapshot's JSON as objects with genai-prices' type names and attributes (what _convert reads); equal
    Decimals are one object, kept in ``decimals``."""
    if isinstance(value, list):
        return [_revive(v, decimals) for v in value]
    if not isinstance(value, dict):
        return value
    if "@decimal" in value:
        text = value["@decimal"]
        found = decimals.get(text)
        if found is None:
            found = decimals[text] = Decimal(text)
        return found
    if "@date" in value:
        return date.fromisoformat(value["@date"])
    if "@time" in value:
        return time.fromisoformat(value["@time"])
    if "@" in value:
        kind = _KINDS.get(value["@"]) or _KINDS.setdefault(value["@"], type(value["@"], (SimpleNamespace,), {}))
        return kind(**{k: _revive(v, decimals) for k, v in value.items() if k != "@"})
    return {k: _revive(v, decimals) for k, v in value.items()}


def write_snapshot(path: Path = SNAPSHOT) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(dump()), indent=1) + b"\n")
    tmp.replace(path)


def _convert(provider: Any, tag: str) -> Source:
    names: list[str | None] = []
    ids: list[str] = []
    entries: list[Entry] = []
    skipped: dict[str, str] = {}
    exact: dict[str, int] = {}
    rules: list[tuple[int, Callable[[str], bool]]] = []
    served = [m for m in provider.models if not m.id.startswith(_NOT_SERVED.get(provider.id, ()))]
    for index, model in enumerate(served):
        equals, other = _split(model.match)
        for name in equals:
            exact.setdefault(name.lower(), index)
        if other is not None:
            rules.append((index, other))
        matches_own_id = model.id.lower() in equals_lower if (equals_lower := {e.lower() for e in equals}) else False
        matches_own_id = matches_own_id or (other is not None and other(model.id.lower()))
        names.append(model.id if matches_own_id else (equals[0] if equals else None))
        ids.append(model.id)
        try:
            entries.append(_entry(model.prices, tag))
        except _Unpriceable as why:
            entries.append(None)
            skipped[model.id] = str(why)
    return Source(tuple(names), tuple(ids), tuple(entries), skipped, exact, tuple(rules))


def _split(clause: Any) -> tuple[list[str], Callable[[str], bool] | None]:
    """A clause as its plain equals names plus one predicate for the rest (None when nothing is left)."""
    kind = type(clause).__name__
    if kind == "ClauseEquals":
        return [clause.equals], None
    if kind == "ClauseOr":
        names: list[str] = []
        preds = []
        for sub in clause.or_:
            n, p = _split(sub)
            names += n
            if p is not None:
                preds.append(p)
        if not preds:
            return names, None
        return names, preds[0] if len(preds) == 1 else _any_of(tuple(preds))
    return [], _predicate(clause)


def _predicate(clause: Any) -> Callable[[str], bool]:
    """A clause as a test of a lower-cased model name (genai-prices lower-cases both sides, regexes aside)."""
    kind = type(clause).__name__
    if kind == "ClauseRegex":
        return _regex(re.compile(clause.regex))
    if kind in ("ClauseOr", "ClauseAnd"):
        parts = tuple(_predicate(c) for c in (clause.or_ if kind == "ClauseOr" else clause.and_))
        return _any_of(parts) if kind == "ClauseOr" else _all_of(parts)
    for attr, test in _TEXT_TESTS.items():
        if kind == attr:
            return _text_test(test, getattr(clause, _TEXT_FIELD[attr]).lower())
    raise ValueError(f"genai-prices match clause {kind} is not understood: update genai_source.py")


_TEXT_TESTS: dict[str, Callable[[str, str], bool]] = {
    "ClauseEquals": str.__eq__,
    "ClauseStartsWith": str.startswith,
    "ClauseEndsWith": str.endswith,
    "ClauseContains": lambda text, part: part in text,
}
_TEXT_FIELD = {"ClauseEquals": "equals", "ClauseStartsWith": "starts_with", "ClauseEndsWith": "ends_with",
               "ClauseContains": "contains"}


def _text_test(test: Callable[[str, str], bool], value: str) -> Callable[[str], bool]:
    return lambda text: test(text, value)


def _regex(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda text: pattern.search(text) is not None


def _any_of(parts: tuple[Callable[[str], bool], ...]) -> Callable[[str], bool]:
    return lambda text: any(p(text) for p in parts)


def _all_of(parts: tuple[Callable[[str], bool], ...]) -> Callable[[str], bool]:
    return lambda text: all(p(text) for p in parts)


class _Unpriceable(Exception):
    """A model whose calls the gateway cannot price from its token counts."""


def _entry(prices: Any, tag: str) -> ModelPrice | Schedule:
    if not isinstance(prices, list):
        return _price(prices, tag)
    phases = []
    for conditional in prices:
        phases.append((_condition(conditional.constraint), _price(conditional.prices, tag)))
    return Schedule(tuple(phases)) if len(phases) > 1 else phases[0][1]


def _condition(constraint: Any) -> _StartsOn | _DailyWindow | None:
    if constraint is None:
        return None
    kind = type(constraint).__name__
    if kind == "StartDateConstraint":
        return _StartsOn(constraint.start_date)
    if kind == "TimeOfDateConstraint":
        return _DailyWindow(_utc_seconds(constraint.start_time), _utc_seconds(constraint.end_time))
    raise ValueError(f"genai-prices price constraint {kind} is not understood: update genai_source.py")


def _utc_seconds(t: time) -> int:
    if t.tzinfo is not None:  # a time of day with an offset: as the same instant in UTC
        t = datetime.combine(date(2000, 1, 1), t).astimezone(UTC).time()
    return t.hour * 3600 + t.minute * 60 + t.second


def _price(price: Any, tag: str) -> ModelPrice:
    values = {k: v for k, v in vars(price).items() if v is not None and not k.startswith("_")}
    beyond = sorted(set(values) - set(_TOKEN_KEYS) - _TOOL_FEES)
    if beyond:
        raise _Unpriceable(f"priced by {', '.join(beyond)}, which the gateway does not count")
    if "input_mtok" not in values:
        raise _Unpriceable("no input token price")
    base: dict[str, Any] = {}
    tiers: dict[int, dict[str, Decimal]] = {}
    for key, value in values.items():
        if key in _TOOL_FEES:
            continue
        ours = _TOKEN_KEYS[key]
        if type(value).__name__ == "TieredPrices":
            base[ours] = value.base
            for tier in value.tiers:
                tiers.setdefault(tier.start, {})[ours] = tier.price
        else:
            base[ours] = value
    # genai-prices charges nothing for output tokens a model lists no price for (embeddings): the same here.
    base.setdefault("output", Decimal(0))
    fees = tuple(sorted(k.removesuffix("_kcount") for k in values if k in _TOOL_FEES))
    try:
        return ModelPrice.of(**base, tiers=tuple(Tier(a, p) for a, p in sorted(tiers.items())), source=tag,
                             unmetered=fees)
    except ValueError as exc:
        raise _Unpriceable(str(exc)) from None


if __name__ == "__main__":  # python -m edge_proxy.metering.genai_source: write the snapshot of the installed release
    write_snapshot()
    print(f"wrote {SNAPSHOT}")
