"""Model names for the unified API: which provider a model belongs to, and the `fallbacks` list.

A request names its model plainly (`claude-haiku-4-5`, the provider guessed from the prefix) or qualified by a
catalogue name or alias (`anthropic/claude-haiku-4-5`, `groq/openai/gpt-oss-20b`). Which translator to use is not
decided here but by the provider's catalogue `usage_format`: "openai" means no translation, "anthropic" means
`unified/anthropic.py`, "gemini" means `unified/gemini.py`, and "none" providers have no chat API to translate
to. So there is deliberately no format table in this module: the catalogue is the one place that says it.

`fallbacks` follows Lava's `prompt` tool: if the primary model fails with a 5xx, a 429 or a network error, each
fallback is tried in order. An entry is a model name or `{url, model}` with a scheme-less or full provider URL.
"""
from __future__ import annotations

from collections.abc import Container
from typing import Any

import msgspec

from .rewrite import normalize_provider_url

MAX_FALLBACKS = 5

# (prefix, provider); a prefix ending in "-" matches a family, one without it also matches the bare name.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"), ("chatgpt-", "openai"), ("o1", "openai"), ("o3", "openai"), ("o4", "openai"),
    ("text-embedding-", "openai"), ("ft:gpt-", "openai"), ("codex-", "openai"), ("omni-moderation-", "openai"),
    ("claude-", "anthropic"),
    ("gemini-", "google"), ("gemma-", "google"),
    ("grok-", "xai"),
    ("mistral-", "mistral"), ("magistral-", "mistral"), ("codestral-", "mistral"), ("ministral-", "mistral"),
    ("pixtral-", "mistral"), ("devstral-", "mistral"), ("open-mistral-", "mistral"), ("open-mixtral-", "mistral"),
    ("deepseek-", "deepseek"),
)


def split_model(name: str, providers: Container[str] | None = None) -> tuple[str | None, str]:
    """`provider/model` as (provider, model); a plain name as (None, name).

    Only the first `/` splits, so `groq/openai/gpt-oss-20b` is ("groq", "openai/gpt-oss-20b"). The provider part
    is not checked here unless `providers` (catalogue names and aliases) is given: then a prefix outside it is
    taken as part of the model name (`meta-llama/Llama-3.3-70B` stays whole).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("model: expected a model name")
    provider, sep, model = name.partition("/")
    if not sep or (providers is not None and provider not in providers):
        return None, name
    if not provider or not model:
        raise ValueError(f"model: expected provider/model, not {name!r}")
    return provider, model


def guess_provider(model: str) -> str | None:
    """The catalogue name of the provider that makes `model`, from well-known prefixes; None when unknown."""
    name = model.lower().removeprefix("models/")
    for prefix, provider in _PREFIXES:
        if name.startswith(prefix if prefix.endswith("-") else (prefix + "-")) or name == prefix:
            return provider
    return None


class Fallback(msgspec.Struct, frozen=True):
    """One fallback: `url` is None for a bare model name (the provider then comes from the name), else a full
    http(s) URL (`https://` added to a scheme-less one)."""

    url: str | None
    model: str


def parse_fallbacks(value: Any) -> list[Fallback]:
    """A request's `fallbacks` (absent/null → []); ValueError with a one-line message naming the bad entry."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("fallbacks: expected a list of model names or {url, model} objects")
    if len(value) > MAX_FALLBACKS:
        raise ValueError(f"fallbacks: at most {MAX_FALLBACKS} are allowed, got {len(value)}")
    out = []
    for i, entry in enumerate(value):
        path = f"fallbacks[{i}]"
        if isinstance(entry, str) and entry.strip():
            out.append(Fallback(None, entry))
            continue
        if not isinstance(entry, dict) or not set(entry) <= {"url", "model"}:
            raise ValueError(f"{path}: expected a model name or {{url, model}}")
        model = entry.get("model")
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"{path}.model: expected a model name")
        url = entry.get("url")
        out.append(Fallback(None if url is None else normalize_provider_url(url, f"{path}.url"), model))
    return out
