"""The unified API's plans: one API for every model in the catalogue.

| route | client format | where it goes |
|---|---|---|
| `POST /v1/chat/completions` | OpenAI | the provider the `model` names (`gpt-4o-mini`, `anthropic/claude-haiku-4-5`) |
| `POST /v1/messages` | Anthropic | the same |
| `POST /v1/responses` | OpenAI Responses | the same: its `/responses` if it has one (OpenAI), else its chat API |
| `POST /v1/rewrite/{openai,anthropic,google}/{provider_url}` | the one in the path | `provider_url` (catalogue only) |

A model name picks its provider: `provider/model` with a catalogue name or alias, else the first provider whose
price table lists the model (the one its prefix suggests first), else the provider its prefix suggests
(`models.guess_provider`); anything else is a 404. The provider's catalogue `usage_format` says what it speaks.
The request is translated only when that differs from the client's format; `fallbacks` (Lava's `prompt` tool) adds
more attempts. A Responses request goes to a provider's own `/responses` when the catalogue lists it for that
provider (OpenAI), with the usage its stream always reports; any other chat provider gets it through the hub
(`responses.responses_request_to_openai`) and answers back through it (`FormatTranslation` to "responses").
`/v1/embeddings` and `/v1/messages/count_tokens` have planners of their own (`embeddings_plan.py`,
`count_tokens_plan.py`): one attempt each, no fallbacks. Everything after the plan (admission, reservation,
forwarding, relaying, logging) is the request path's, the same as for the forward routes (request_path/pipeline.py).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..billing.bounds import request_bounds
from ..errors import InvalidRequest, NotFound
from ..request_path.body import json_object
from ..request_path.plan import Attempt, Plan, Translation
from ._common import dumps, include_usage
from .models import Fallback, guess_provider, parse_fallbacks, split_model
from .rewrite import parse_rewrite_path
from .stream_usage import StripUsage, with_usage_requested

if TYPE_CHECKING:
    from granian.rsgi import Headers, Scope

    from ..metering.pricing import PriceTable
    from ..providers import Catalogue, Provider, Target
    from ..services import Services

_CHAT_FORMATS = ("openai", "anthropic", "gemini")
_FORMAT = {"openai": "openai", "anthropic": "anthropic", "google": "gemini"}  # client format → catalogue format
_ENDPOINT = {"openai": "/chat/completions", "anthropic": "/messages", "responses": "/responses"}
_GEMINI_MODEL = re.compile(r"/models/([^/:?#]+):(generateContent|streamGenerateContent)$")
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f\\%:]")  # a Gemini model name goes in the URL path


def chat_completions_plan(svc: Services, scope: Scope, headers: Headers, query: str, body: bytes) -> Plan:
    """`POST /v1/chat/completions`: an OpenAI chat completions request for any model."""
    return plan(svc, headers, "openai", None, body)


def messages_plan(svc: Services, scope: Scope, headers: Headers, query: str, body: bytes) -> Plan:
    """`POST /v1/messages`: an Anthropic Messages request for any model."""
    return plan(svc, headers, "anthropic", None, body)


def responses_plan(svc: Services, scope: Scope, headers: Headers, query: str, body: bytes) -> Plan:
    """`POST /v1/responses`: an OpenAI Responses request for any model."""
    return plan(svc, headers, "responses", None, body)


def rewrite_plan(svc: Services, scope: Scope, headers: Headers, query: str, body: bytes) -> Plan:
    """`POST /v1/rewrite/{client_format}/{provider_url}`, as Lava's SDK `gateway(url, {format})` sends it."""
    try:
        client_format, url = parse_rewrite_path(scope.path, query)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return plan(svc, headers, client_format, url, body)


def error_format(path: str) -> str | None:
    """The error shape of a unified route, known from its path alone (before a body is read)."""
    if path in ("/v1/messages", "/v1/messages/count_tokens"):
        return "anthropic"
    if path.startswith("/v1/rewrite/"):
        fmt = _FORMAT.get(path[len("/v1/rewrite/"):].split("/", 1)[0])
        return fmt if fmt != "openai" else None
    return None


def plan(svc: Services, headers: Headers, client_format: str, url: str | None, raw: bytes) -> Plan:
    fmt = _FORMAT.get(client_format, client_format)
    body = json_object(raw)
    try:
        attempts = _attempts(svc, fmt, url, body, raw, svc.models)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return Plan(attempts, headers.items(), error_format=fmt if fmt != "openai" else None, unified=True)


def _attempts(svc: Services, fmt: str, url: str | None, body: dict[str, Any], raw: bytes,
              index: ModelIndex) -> list[Attempt]:
    """Every attempt, built before anything is sent: a bad fallback is a 400 (or 403, 404) up front."""
    usage = fmt == "openai" and include_usage(body)
    if "fallbacks" in body:
        fallbacks, raw = parse_fallbacks(body.pop("fallbacks")), b""  # the body upstream is without them
    else:
        fallbacks = []
    if fmt == "gemini":
        raw = b"" if "model" in body or "stream" in body else raw
        # Gemini puts model and stream in its URL: from the provider URL when it is a Gemini one, else the body.
        model, stream = body.pop("model", None), body.pop("stream", None) is True
        if url and (match := _GEMINI_MODEL.search(urlsplit(url).path)):
            model, stream = match.group(1), match.group(2) == "streamGenerateContent"
        if not isinstance(model, str) or not model:
            raise ValueError("model: a Gemini-format request names its model in the provider URL "
                             "(/models/{model}:generateContent) or in a \"model\" field")
    else:
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model: expected a model name")
        stream = body.get("stream") is True
    specs = [Fallback(url, model), *fallbacks]
    attempts = [_attempt(svc.catalogue, index, fmt, body, raw, spec, stream, usage,
                         passthrough_url=i == 0 and url is not None)
                for i, spec in enumerate(specs)]
    return attempts


def _attempt(cat: Catalogue, index: ModelIndex, client: str, body: dict[str, Any], raw: bytes, spec: Fallback,
             stream: bool, usage: bool, passthrough_url: bool) -> Attempt:
    """The upstream request for one (url, model): which provider, which path, which body. `raw` is the client's
    body as it came when it can go upstream as is (same format, same model name, no `fallbacks`), else b""."""
    if spec.url is None:
        provider, model = index.provider_for(spec.model)
        up = _upstream_format(provider, client)
        path, query = _endpoint(provider.public_base_path, up, model, stream)
        target = cat.resolve_provider_path(provider.name, path, query)
    else:
        provider = cat.resolve_url(spec.url).provider  # 403 for anything off the catalogue
        up = _upstream_format(provider, client)
        _, model = split_model(spec.model, index.names)
        url = spec.url
        if not (passthrough_url and up == client):  # translated: the URL names the provider, we name the endpoint
            head, _, query = url.partition("?")
            parts = urlsplit(head)
            base = parts.path.rstrip("/")
            if up == "gemini" and "/models/" in base:
                base = base[:base.rindex("/models/")]
            elif up != "gemini":  # a chat, messages or responses URL names the API's base
                base = next((base[:-len(e)] for e in _ENDPOINT.values() if base.endswith(e)), base)
            path, alt = _endpoint(base, up, model, stream)
            params = [p for p in query.split("&") if p and not (up == "gemini" and p.startswith("alt="))]
            query = "&".join(params + ([alt] if alt else []))
            url = f"{parts.scheme}://{parts.netloc}{path}" + (f"?{query}" if query else "")
        target = cat.resolve_url(url)
    translation: Translation | None
    if client == up == "openai" and stream and not usage:
        # the client did not ask for the usage chunk: ask for it anyway (a stream is billed on the provider's
        # count, not an estimate), and strip it from what the client gets
        upstream, _ = with_usage_requested({**body, "model": model})
        data, translation = dumps(upstream), StripUsage()
    elif client == up:
        upstream = body if up == "gemini" else {**body, "model": model}
        data = raw if raw and (up == "gemini" or body.get("model") == model) else dumps(upstream)
        translation = None
    else:
        # The translators load with the first request that needs one, not in every worker at start (~1 MB).
        from .translation import FormatTranslation
        upstream = _from_hub(up, _to_hub(client, body, model, stream, provider))
        data = dumps(upstream)
        translation = FormatTranslation(up, client, model, usage)
    return Attempt(provider, target, model, data, request_bounds(data), "POST", stream, translation)


def one_attempt_plan(headers: Headers, raw: bytes, attempt: Callable[[dict[str, Any], bytes], Attempt],
                     error_format: str | None = None) -> Plan:
    """The plan of a route with one attempt only (embeddings, token counts): `attempt(body, raw)` builds it from the
    client's JSON object; its ValueErrors are 400s."""
    body = json_object(raw)
    try:
        built = attempt(body, raw)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return Plan([built], headers.items(), error_format=error_format, unified=True)


def one_model(svc: Services, body: dict[str, Any], why_no_fallbacks: str) -> tuple[Provider, str, bool]:
    """The provider and model of a request that has one attempt only (embeddings, token counts), and whether the
    client's body can go upstream as it came (the same model name, no `fallbacks: null`). `fallbacks` is a 400
    that says why, never dropped silently. Raises ValueError (a 400) and NotFound (an unknown model)."""
    listed = "fallbacks" in body
    if listed and body.pop("fallbacks") is not None:
        raise ValueError(f"fallbacks: not available on this route: {why_no_fallbacks}")
    name = body.get("model")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("model: expected a model name")
    provider, model = svc.models.provider_for(name)
    return provider, model, model == name and not listed


def provider_target(svc: Services, provider: Provider, path: str) -> Target:
    """Where a request to `path` under the provider's (public) base URL goes: the operator's base URL if set."""
    return svc.catalogue.resolve_provider_path(provider.name, provider.public_base_path + path, "")


def _chat_format(provider: Provider) -> str:
    if provider.usage_format not in _CHAT_FORMATS:
        raise ValueError(f"model: provider {provider.name!r} has no chat API the unified API can send to")
    return provider.usage_format


def _upstream_format(provider: Provider, client: str) -> str:
    """The API a request goes to: the provider's chat format, or "responses" for a Responses request to a provider
    the catalogue lists `POST /responses` for (the endpoints whose usage the gateway meters)."""
    up = _chat_format(provider)
    if client == "responses" and up == "openai" and any(
            e.method == "POST" and e.path == _ENDPOINT["responses"] for e in provider.managed_endpoints):
        return "responses"
    return up


def _endpoint(base: str, up: str, model: str, stream: bool) -> tuple[str, str]:
    """The path (from the origin) and query of a provider's chat endpoint, under its base path."""
    if up == "gemini":
        from .gemini import gemini_path  # a translator: loaded when first needed (see _attempt)
        if _URL_UNSAFE.search(model.removeprefix("models/")):
            raise ValueError(f"model: {model!r} is not a Gemini model name")
        path = gemini_path(model, stream)  # checks the model name; its "/v1beta" is the public base's
        return base + path[path.index("/models/"):].split("?", 1)[0], "alt=sse" if stream else ""
    return base + _ENDPOINT[up], ""


def _to_hub(client: str, body: dict[str, Any], model: str, stream: bool, provider: Provider) -> dict[str, Any]:
    """The client's request as an OpenAI chat completions request (the hub format)."""
    param = "max_completion_tokens" if provider.name == "openai" else "max_tokens"
    if client == "anthropic":
        from .anthropic import anthropic_request_to_openai  # translators: loaded when first needed (see _attempt)
        hub = anthropic_request_to_openai(body, max_tokens_param=param)
    elif client == "gemini":
        from .gemini import gemini_request_to_openai
        hub = gemini_request_to_openai(body, model, stream, max_tokens_param=param)
    elif client == "responses":
        from .responses import responses_request_to_openai
        hub = responses_request_to_openai(body, max_tokens_param=param)
    else:
        hub = dict(body)
    hub["model"] = model
    return hub


def _from_hub(up: str, hub: dict[str, Any]) -> dict[str, Any]:
    if up == "anthropic":
        from .anthropic import openai_request_to_anthropic  # translators: loaded when first needed (see _attempt)
        return openai_request_to_anthropic(hub)
    if up == "gemini":
        from .gemini import openai_request_to_gemini
        return openai_request_to_gemini(hub)[0]
    return hub


# --- model names ----------------------------------------------------------------------------------------------

class ModelIndex:
    """Catalogue names and aliases, and the price table's (provider, model) pairs, built once per worker."""

    def __init__(self, catalogue: Catalogue, prices: PriceTable) -> None:
        self.catalogue, self.prices = catalogue, prices
        self.names = set(catalogue.providers) | {a for p in catalogue.providers.values() for a in p.aliases}
        tables = prices.models
        self.providers = [p for p in tables if p in catalogue.providers]
        self.listing = [(p, m) for p in self.providers if catalogue.providers[p].usage_format in _CHAT_FORMATS
                        for m in tables[p]]

    def provider_for(self, name: str) -> tuple[Provider, str]:
        """The provider a request's model names, and the model name to send it (without the provider part)."""
        cat = self.catalogue
        qualifier, model = split_model(name, self.names)
        if qualifier is not None:
            return cat.by_name(qualifier), model
        guessed = guess_provider(model)
        order = ([guessed] if guessed in cat.providers else []) + self.providers
        for provider in order:
            if self.prices.has_own_price(provider, model):
                return cat.providers[provider], model
        if guessed in cat.providers:
            return cat.providers[guessed], model
        raise NotFound(f"unknown model {model!r}: name it with its provider (e.g. openai/{model}) or pick one "
                       "from GET /v1/models")
