"""What the `search` and `get_provider_docs` tools say: providers and models, with ready request examples.

Pure functions over the provider catalogue and a `/v1/models` list: no I/O here. A provider's endpoints and
example follow its catalogue `usage_format` (which API family it speaks); its `docs` is the upstream reference.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..providers import Catalogue, Provider

HELLO = [{"role": "user", "content": "Hello!"}]

# How each auth style puts the provider's own key on the wire.
AUTH_HEADERS = {
    "bearer": "Authorization: Bearer <provider key>",
    "x-api-key": "x-api-key: <provider key>",
    "x-goog-api-key": "x-goog-api-key: <provider key>",
    "xi-api-key": "xi-api-key: <provider key>",
}

# usage_format -> (what it is, [(method, path, what)]): paths are relative to the provider's base URL.
API_FAMILIES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "openai": ("OpenAI-compatible: usage in `usage.prompt_tokens` / `usage.completion_tokens`; streams report it "
               "with `stream_options: {include_usage: true}`", [
                   ("POST", "/chat/completions", "chat completions (stream with \"stream\": true)"),
                   ("POST", "/embeddings", "embeddings"),
                   ("GET", "/models", "the provider's model list"),
               ]),
    "anthropic": ("Anthropic Messages: usage in `usage.input_tokens` / `usage.output_tokens` (and cache fields); "
                  "send `anthropic-version: 2023-06-01`", [
                      ("POST", "/messages", "messages (max_tokens is required; stream with \"stream\": true)"),
                      ("POST", "/messages/count_tokens", "count a prompt's tokens"),
                      ("GET", "/models", "the provider's model list"),
                  ]),
    "gemini": ("Google Gemini: usage in `usageMetadata.promptTokenCount` / `candidatesTokenCount`", [
        ("POST", "/models/{model}:generateContent", "generate content"),
        ("POST", "/models/{model}:streamGenerateContent?alt=sse", "generate content as server-sent events"),
        ("POST", "/models/{model}:countTokens", "count a prompt's tokens"),
        ("GET", "/models", "the provider's model list"),
    ]),
    "none": ("not a token API: requests are forwarded and logged, with no token usage to count", []),
}


def find_provider(catalogue: Catalogue, name: str) -> Provider | None:
    """A provider by catalogue name, `_` spelling, alias (case-insensitive) or API host."""
    wanted = name.strip().lower().replace("_", "-")
    for p in catalogue.providers.values():
        spellings = {p.name, *(a.lower() for a in p.aliases), *(a.lower().replace("_", "-") for a in p.aliases)}
        if wanted in spellings or wanted == p.public.host:
            return p
    return None


def request_example(provider: Provider, model: str | None) -> dict[str, Any]:
    """A `call` tool invocation that works for this provider (its native format, through the gateway)."""
    model = model or "<model id>"
    base = provider.base_url
    if provider.usage_format == "anthropic":
        return {"tool": "call", "arguments": {"url": f"{base}/messages", "method": "POST",
                                              "headers": {"anthropic-version": "2023-06-01"},
                                              "body": {"model": model, "max_tokens": 256, "messages": HELLO}}}
    if provider.usage_format == "gemini":
        return {"tool": "call", "arguments": {"url": f"{base}/models/{model}:generateContent", "method": "POST",
                                              "body": {"contents": [{"role": "user",
                                                                     "parts": [{"text": "Hello!"}]}]}}}
    if provider.usage_format == "openai":
        return {"tool": "call", "arguments": {"url": f"{base}/chat/completions", "method": "POST",
                                              "body": {"model": model, "messages": HELLO}}}
    return {"tool": "call", "arguments": {"url": f"{base}/models", "method": "GET"}}


def prompt_example(model_id: str) -> dict[str, Any]:
    """A `prompt` tool invocation for a model (OpenAI format whatever the provider)."""
    return {"tool": "prompt", "arguments": {"model": model_id, "messages": HELLO}}


def _matches(terms: list[str], *fields: Any) -> bool:
    text = " ".join(str(f).lower() for f in fields if f)
    return all(t in text for t in terms)


def _models_of(models: Iterable[dict[str, Any]], provider: Provider) -> list[dict[str, Any]]:
    names = {provider.name, *provider.aliases}
    return [m for m in models if m.get("owned_by") in names]


def provider_entry(provider: Provider, api_base: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    own = _models_of(models, provider)
    return {
        "provider": provider.name,
        "aliases": list(provider.aliases),
        "base_url": provider.base_url,
        "forward_url": f"{api_base}forward?u={provider.base_url}",
        "api_family": provider.usage_format,
        "docs": provider.docs,
        "models": [m.get("id") for m in own][:20],
        "example": request_example(provider, own[0].get("id") if own else None),
    }


def search(catalogue: Catalogue, api_base: str, models: list[dict[str, Any]], query: str,
           limit: int) -> dict[str, Any]:
    """Models whose id or owner contains every word of `query`, and providers that match the same way (by name,
    alias, host or API family) or own one of those models."""
    terms = query.lower().split()
    found_models = [m for m in models if _matches(terms, m.get("id"), m.get("owned_by"))]
    owners = {m.get("owned_by") for m in found_models}
    providers = [p for p in catalogue.providers.values()
                 if p.name in owners or _matches(terms, p.name, " ".join(p.aliases), p.public.host, p.usage_format)]
    return {
        "query": query,
        "providers": [provider_entry(p, api_base, models) for p in providers][:limit],
        "providers_total": len(providers),
        "models": [{"id": m.get("id"), "owned_by": m.get("owned_by"), "example": prompt_example(str(m.get("id")))}
                   for m in found_models][:limit],
        "models_total": len(found_models),
    }


def provider_docs(provider: Provider, base_url: str) -> dict[str, Any]:
    """Everything needed to call one provider through the gateway, from the catalogue (`search` lists models)."""
    api_base = base_url + "/v1/"
    family, endpoints = API_FAMILIES[provider.usage_format]
    env = provider.env_name
    return {
        "provider": provider.name,
        "aliases": list(provider.aliases),
        "base_url": provider.base_url,
        "docs": provider.docs,
        "auth": {
            "provider_header": AUTH_HEADERS[provider.auth],
            "managed": f"the gateway puts its own key for this provider (EDGE_PROXY_PROVIDER_KEY_{env}) in that "
                       "header; send the gateway credential instead",
            "bring_your_own_key": "put your provider key in the forward token's provider_key (the `call` tool's "
                                  "provider_key argument)",
            "gateway_credential": "Authorization: Bearer <forward token, secret key or spend key> (x-api-key and "
                                  "x-goog-api-key are read too)",
        },
        "gateway_urls": {
            "forward": f"{api_base}forward?u={provider.base_url}<path>",
            "by_name": f"{base_url}/providers/{provider.name}{provider.public_base_path}<path>",
            "rewrite": f"{api_base}rewrite/<openai|anthropic|google>/{provider.base_url}<path>",
        },
        "api_family": provider.usage_format,
        "usage_format": family,
        "endpoints": [{"method": m, "url": provider.base_url + path, "what": what} for m, path, what in endpoints],
        "example": request_example(provider, None),
        "model_ids": "use the `search` tool to list this provider's models",
    }
