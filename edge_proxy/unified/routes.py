"""The unified API's HTTP routes: one API for every model in the catalogue.

| route | client format | where it goes |
|---|---|---|
| `POST /v1/chat/completions` | OpenAI | the provider the `model` names (`gpt-4o-mini`, `anthropic/claude-haiku-4-5`) |
| `POST /v1/messages` | Anthropic | the same |
| `POST /v1/rewrite/{openai,anthropic,google}/{provider_url}` | the one in the path | `provider_url` (catalogue only) |
| `GET /v1/models` | OpenAI's model list | the price table's models; a spend key sees only what it may use |

A model name picks its provider: `provider/model` with a catalogue name or alias, else the first provider whose
price table lists the model (the one its prefix suggests first), else the provider its prefix suggests
(`unified.models.guess_provider`); anything else is a 404. The provider's catalogue `usage_format` says what it
speaks. The request is translated only when that differs from the client's format; `fallbacks` (Lava's `prompt`
tool) adds more attempts, tried in order by `attempts.run`. Authentication, spend keys, reservations, metering and
errors are the forward path's: the same pieces of `proxy.py`, one Exchange (one log record) per attempt.
"""
from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from .. import headers as hdr
from ..billing.charging import request_limits
from ..errors import (BrowserRequest, GatewayError, InvalidRequest, InvalidToken, MethodNotAllowed, NotFound,
                      ServiceUnavailable)
from ..metadata import parse_metadata, split_metadata_param
from ..proxy import Exchange, _read_body, send_error
from ._common import dumps, include_usage
from .anthropic import anthropic_request_to_openai, openai_request_to_anthropic
from .attempts import Attempt, Call, run
from .gemini import gemini_path, gemini_request_to_openai, openai_request_to_gemini
from .models import Fallback, guess_provider, parse_fallbacks, split_model
from .rewrite import parse_rewrite_path

if TYPE_CHECKING:
    from ..app import Gateway
    from ..providers import Provider

_JSON = [("content-type", "application/json")]
_CHAT_FORMATS = ("openai", "anthropic", "gemini")
_FORMAT = {"openai": "openai", "anthropic": "anthropic", "google": "gemini"}  # client format → catalogue format
_ENDPOINT = {"openai": "/chat/completions", "anthropic": "/messages"}
_GEMINI_MODEL = re.compile(r"/models/([^/:?#]+):(generateContent|streamGenerateContent)$")
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f\\%:]")  # a Gemini model name goes in the URL path


# --- handlers -------------------------------------------------------------------------------------------------

async def chat_completions(gw: Gateway, scope, proto) -> None:
    """`POST /v1/chat/completions`: an OpenAI chat completions request for any model."""
    await _serve(gw, scope, proto, "openai", None)


async def messages(gw: Gateway, scope, proto) -> None:
    """`POST /v1/messages`: an Anthropic Messages request for any model."""
    await _serve(gw, scope, proto, "anthropic", None)


async def rewrite(gw: Gateway, scope, proto) -> None:
    """`POST /v1/rewrite/{client_format}/{provider_url}`, as Lava's SDK `gateway(url, {format})` sends it."""
    if scope.method not in ("POST", "OPTIONS"):
        raise MethodNotAllowed(f"{scope.method} is not allowed here; use POST")
    query, meta = split_metadata_param(scope.query_string)
    try:
        client_format, url = parse_rewrite_path(scope.path, query)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    await _serve(gw, scope, proto, client_format, url, meta)


async def list_models(gw: Gateway, scope, proto) -> None:
    """`GET /v1/models`: OpenAI's `{object: "list", data: [...]}`, filtered by a spend key's policy."""
    principal = await gw.auth.authenticate(hdr.credential(scope.headers))
    key = principal.spend_key
    if key is not None and (key.status != "active" or key.expired()):
        raise InvalidToken("this spend key has expired" if key.status == "active" else
                           f"this spend key is {key.status}")
    data, seen = [], set()
    for provider, model in _index(gw).listing:
        if model in seen:
            continue
        if key is not None and (
                (key.allowed_providers is not None and provider not in key.allowed_providers)
                or (key.allowed_models is not None and model not in key.allowed_models
                    and f"{provider}/{model}" not in key.allowed_models)):
            continue
        seen.add(model)
        data.append({"id": model, "object": "model", "created": 0, "owned_by": provider})
    proto.response_bytes(200, _JSON, msgspec.json.encode({"object": "list", "data": data}))


# --- the shared request path ----------------------------------------------------------------------------------

async def _serve(gw: Gateway, scope, proto, client_format: str, url: str | None, meta: str | None = None) -> None:
    started = time.perf_counter()
    request_id = gw.request_ids.next()
    exchange: Exchange | None = None
    try:
        headers = scope.headers
        if scope.method == "OPTIONS" or "origin" in headers:
            raise BrowserRequest()
        principal = await gw.auth.authenticate(hdr.credential(headers))
        exchange = Exchange(gw, request_id, principal, started)
        if url is None:
            _, meta = split_metadata_param(scope.query_string)
        raw_meta = headers.get("x-lava-metadata")
        if raw_meta is not None:
            exchange.metadata = parse_metadata(raw_meta, "x-lava-metadata")
        elif meta is not None:
            exchange.metadata = parse_metadata(meta, "metadata")
        raw = await _read_body(proto, headers, gw.settings.max_body_bytes)
        try:
            body = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            raise InvalidRequest("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        try:
            attempts = _plan(gw, client_format, url, body, raw, principal.provider_key is not None)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        exchange.target, exchange.limits = attempts[0].target, attempts[0].limits
        for attempt in attempts:
            if principal.provider_key is None and attempt.provider.managed_key is None:
                raise ServiceUnavailable(
                    f"no managed key for provider {attempt.provider.name!r}: set EDGE_PROXY_PROVIDER_KEY_"
                    f"{attempt.provider.env_name} or send provider_key in the forward token")
    except GatewayError as exc:
        gw.metrics.errors += 1
        send_error(proto, exc, request_id)
        if exchange is not None:
            exchange.finish(exc.status, "error", exc.type)
        return
    call = Call(gw, proto, principal, exchange, client_format,
                client_format == "openai" and include_usage(body), list(headers.items()))
    await run(call, attempts)


def _plan(gw: Gateway, client_format: str, url: str | None, body: dict, raw: bytes, byok: bool) -> list[Attempt]:
    """Every attempt, built before anything is sent: a bad fallback is a 400 (or 403, 404) up front."""
    if "fallbacks" in body:
        fallbacks, raw = parse_fallbacks(body.pop("fallbacks")), b""  # the body upstream is without them
    else:
        fallbacks = []
    fmt = _FORMAT[client_format]
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
    attempts = [_attempt(gw, fmt, body, raw, spec, stream, passthrough_url=i == 0 and url is not None)
                for i, spec in enumerate(specs)]
    if byok and any(a.provider is not attempts[0].provider for a in attempts):
        raise ValueError("fallbacks: a forward token's provider_key belongs to one provider; fallbacks to "
                         "another provider need the gateway's managed key")
    return attempts


def _attempt(gw: Gateway, client: str, body: dict, raw: bytes, spec: Fallback, stream: bool,
             passthrough_url: bool) -> Attempt:
    """The upstream request for one (url, model): which provider, which path, which body. `raw` is the client's
    body as it came when it can go upstream as is (same format, same model name, no `fallbacks`), else b""."""
    cat = gw.catalogue
    if spec.url is None:
        provider, model = _provider_for(gw, spec.model)
        up = _chat_format(provider)
        path, query = _endpoint(provider.public_base_path, up, model, stream)
        target = cat.resolve_provider_path(provider.name, path, query)
    else:
        provider = cat.resolve_url(spec.url).provider  # 403 for anything off the catalogue
        up = _chat_format(provider)
        _, model = split_model(spec.model, _index(gw).names)
        url = spec.url
        if not (passthrough_url and up == client):  # translated: the URL names the provider, we name the endpoint
            head, _, query = url.partition("?")
            parts = urlsplit(head)
            base = parts.path.rstrip("/")
            if up == "gemini" and "/models/" in base:
                base = base[:base.rindex("/models/")]
            elif up != "gemini" and base.endswith(_ENDPOINT[up]):
                base = base[:-len(_ENDPOINT[up])]
            path, alt = _endpoint(base, up, model, stream)
            params = [p for p in query.split("&") if p and not (up == "gemini" and p.startswith("alt="))]
            query = "&".join(params + ([alt] if alt else []))
            url = f"{parts.scheme}://{parts.netloc}{path}" + (f"?{query}" if query else "")
        target = cat.resolve_url(url)
    if client == up:
        upstream = body if up == "gemini" else {**body, "model": model}
        data = raw if raw and (up == "gemini" or body.get("model") == model) else dumps(upstream)
    else:
        upstream = _from_hub(up, _to_hub(client, body, model, stream, provider))
        data = dumps(upstream)
    if up == "gemini":
        config = upstream.get("generationConfig")
        max_out = config.get("maxOutputTokens") if isinstance(config, dict) else None
        valid = isinstance(max_out, int) and not isinstance(max_out, bool)
        limits = request_limits(dumps({"model": model, "max_output_tokens": max_out if valid else None}))
    else:
        limits = request_limits(data)
    return Attempt(provider, target, model, data, stream, limits)


def _chat_format(provider: Provider) -> str:
    if provider.usage_format not in _CHAT_FORMATS:
        raise ValueError(f"model: provider {provider.name!r} has no chat API the unified API can send to")
    return provider.usage_format


def _endpoint(base: str, up: str, model: str, stream: bool) -> tuple[str, str]:
    """The path (from the origin) and query of a provider's chat endpoint, under its base path."""
    if up == "gemini":
        if _URL_UNSAFE.search(model.removeprefix("models/")):
            raise ValueError(f"model: {model!r} is not a Gemini model name")
        path = gemini_path(model, stream)  # checks the model name; its "/v1beta" is the public base's
        return base + path[path.index("/models/"):].split("?", 1)[0], "alt=sse" if stream else ""
    return base + _ENDPOINT[up], ""


def _to_hub(client: str, body: dict, model: str, stream: bool, provider: Provider) -> dict:
    """The client's request as an OpenAI chat completions request (the hub format)."""
    param = "max_completion_tokens" if provider.name == "openai" else "max_tokens"
    if client == "anthropic":
        hub = anthropic_request_to_openai(body, max_tokens_param=param)
    elif client == "gemini":
        hub = gemini_request_to_openai(body, model, stream, max_tokens_param=param)
    else:
        hub = dict(body)
    hub["model"] = model
    return hub


def _from_hub(up: str, hub: dict) -> dict:
    if up == "anthropic":
        return openai_request_to_anthropic(hub)
    if up == "gemini":
        return openai_request_to_gemini(hub)[0]
    return hub


# --- model names ----------------------------------------------------------------------------------------------

class _Index:
    """Per gateway: catalogue names and aliases, and the price table's (provider, model) pairs."""

    def __init__(self, gw: Gateway) -> None:
        cat = gw.catalogue
        self.names = set(cat.providers) | {a for p in cat.providers.values() for a in p.aliases}
        tables = _price_models(gw.prices)
        self.providers = [p for p in tables if p in cat.providers]
        self.listing = [(p, m) for p in self.providers if cat.providers[p].usage_format in _CHAT_FORMATS
                        for m in tables[p]]


_indexes: dict[int, tuple[Any, _Index]] = {}


def _index(gw: Gateway) -> _Index:
    entry = _indexes.get(id(gw))
    if entry is None or entry[0] is not gw:
        entry = _indexes[id(gw)] = (gw, _Index(gw))
    return entry[1]


def _price_models(prices) -> dict[str, dict]:
    """provider → {model: price} from the price table (its own `models` if it grows one, else its table)."""
    models = getattr(prices, "models", None)
    return models if isinstance(models, dict) else prices._models


def _provider_for(gw: Gateway, name: str) -> tuple[Provider, str]:
    """The provider a request's model names, and the model name to send it (without the provider part)."""
    index = _index(gw)
    qualifier, model = split_model(name, index.names)
    if qualifier is not None:
        return gw.catalogue.by_name(qualifier), model
    guessed = guess_provider(model)
    order = ([guessed] if guessed in gw.catalogue.providers else []) + index.providers
    for provider in order:
        if gw.prices.lookup(provider, model) is not None:
            return gw.catalogue.providers[provider], model
    if guessed in gw.catalogue.providers:
        return gw.catalogue.providers[guessed], model
    raise NotFound(f"unknown model {model!r}: name it with its provider (e.g. openai/{model}) or pick one from "
                   "GET /v1/models")

