"""A request's plan: the attempts that may answer it, built before anything is sent.

A forward request (`/v1/forward?u=`, `/providers/{name}/...`) is a plan of one pass-through attempt: the
client's method, path, headers and body go to the provider, and the answer's bytes come back unchanged. A unified
request (`/v1/chat/completions`, `/v1/messages`, `/v1/rewrite/...`) is a plan of up to six attempts (the primary
and its `fallbacks`, built by `unified/planner.py`), each with the upstream request already translated and a
`Translation` for its answer when the provider speaks another format than the client.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from .. import headers as hdr
from ..billing.bounds import Bounds, request_bounds
from ..billing.charging import Quote
from ..errors import InvalidRequest
from ..providers.catalogue import decode_forward_url

if TYPE_CHECKING:
    from granian.rsgi import Headers, Scope

    from ..auth import Principal
    from ..providers import Provider, Target
    from ..services import Services
    from ..upstream import HeaderBlock
    from .ownership import StoredIds


FREE = Quote(0, 0, 0)


class StreamTranslator(Protocol):
    """Bytes of one format's SSE stream in, the client format's out (unified/_common.py has the contract)."""

    @property
    def closed(self) -> bool:
        """The client's stream is over (its end marker or an error event went out): nothing more is sent."""

    @property
    def failed(self) -> str | None:
        """The request log's error_reason when the stream ended with the translator's own error event in place
        of its end (the provider's stream ended before its end marker, or sent an event it could not translate)."""

    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self, complete: bool = True) -> bytes: ...


class Translation(Protocol):
    """How an attempt's answer becomes the client's format (unified/translation.py builds these)."""

    client_format: str

    def body(self, data: bytes, status: int) -> bytes: ...
    def stream(self) -> StreamTranslator: ...


class Attempt:
    """One way to answer: a provider and model, and the exact upstream request to send."""

    __slots__ = ("provider", "target", "model", "body", "bounds", "method", "stream", "translation", "free",
                 "metered", "reads_stored", "stored_ids", "quote", "input_estimate")

    def __init__(self, provider: Provider, target: Target, model: str | None, body: bytes, bounds: Bounds,
                 method: str = "POST", stream: bool = False, translation: Translation | None = None) -> None:
        self.provider, self.target, self.model, self.body, self.bounds = provider, target, model, body, bounds
        self.method, self.stream, self.translation = method, stream, translation
        self.free = False  # the endpoint costs nothing (the pipeline learns it from the catalogue)
        self.metered = False  # the catalogue lists the endpoint as one whose usage is read and priced, not free
        self.reads_stored = False  # on the managed key, to an endpoint that reads stored responses by id
        self.stored_ids: StoredIds | None = None  # the stored responses and items it names there (ownership.py)
        self.quote = FREE  # the most it can cost whom (the pipeline asks billing before anything is sent)
        # the input tokens to bill when an answer reports none because its API has no counts (Gemini embeddings)
        self.input_estimate: int | None = None

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.model}"


class Plan:
    """The attempts, in order, and what they share: the client's headers and the format errors are sent in.

    `unified` plans name the answering model in `x-edge-proxy-model`; pass-through plans relay the provider's
    answer untouched."""

    __slots__ = ("attempts", "error_format", "unified", "_items", "_anthropic_items")
    _items: Iterable[tuple[str, str]]
    _anthropic_items: Iterable[tuple[str, str]]

    def __init__(self, attempts: list[Attempt], header_items: Iterable[tuple[str, str]],
                 error_format: str | None = None, unified: bool = False) -> None:
        self.attempts = attempts
        self.error_format = error_format
        self.unified = unified
        if unified:
            # The client's headers less its Content-Type: the upstream body is always JSON, and maybe not its own.
            items: list[tuple[str, str]] = [(n, v) for n, v in header_items if n != "content-type"]
            items.append(("content-type", "application/json"))
            self._items = items
            # Anthropic requires anthropic-version; clients of other formats never send it.
            self._anthropic_items = items if any(n == "anthropic-version" for n, _ in items) else \
                [*items, ("anthropic-version", "2023-06-01")]
        else:
            self._items = self._anthropic_items = header_items

    def upstream_headers(self, attempt: Attempt, principal: Principal) -> HeaderBlock:
        provider = attempt.provider
        items = self._anthropic_items if provider.usage_format == "anthropic" else self._items
        if principal.provider_key is not None:
            return hdr.request_headers(items, provider.key_header, principal.provider_key)
        return hdr.request_headers(items, provider.key_header, provider.managed_key, managed=True)


# --- the forward routes: one pass-through attempt --------------------------------------------------------------

def forward_plan(svc: Services, scope: Scope, headers: Headers, query: str, body: bytes) -> Plan:
    """`/v1/forward?u=<url>[&more]`: `u` percent-encoded or raw; the other parameters go upstream. A path after
    `/v1/forward/` is appended to `u`'s path, which is what HTTP clients that treat `<gateway>/v1/forward?u=<base>`
    as a base URL send."""
    return _pass_through(scope, headers, forward_target(svc, scope.path[len("/v1/forward"):], query), body)


def forward_target(svc: Services, suffix: str, query: str) -> Target:
    url, rest = None, []
    for part in query.split("&") if query else ():
        if url is None and part.startswith("u="):
            url = decode_forward_url(part[2:])
        elif part:
            rest.append(part)
    if not url:
        raise InvalidRequest("missing the `u` query parameter: /v1/forward?u=<provider URL>")
    return svc.catalogue.resolve_url(svc.catalogue.join_forward_url(url, suffix), "&".join(rest))


def providers_plan(svc: Services, scope: Scope, headers: Headers, query: str, body: bytes) -> Plan:
    """`/providers/{name}/{path}`: the provider's own path from its origin."""
    return _pass_through(scope, headers, svc.catalogue.resolve_providers_route(scope.path, query), body)


def provider_path(path: str) -> tuple[str, str]:
    name, _, rest = path[len("/providers/"):].partition("/")
    return name, "/" + rest


def _pass_through(scope: Scope, headers: Headers, target: Target, body: bytes) -> Plan:
    bounds = request_bounds(body)
    model = bounds.model  # the model a request names: in its body, or (Gemini) in its path
    if "/models/" in target.path:
        bare = target.path.split("?", 1)[0]
        if ":" in bare:
            model = bare.rsplit("/models/", 1)[1].split(":", 1)[0] or None
    attempt = Attempt(target.provider, target, model, body, bounds, scope.method)
    # positional: a keyword argument makes the call cost ~1.2k instructions more (bench/RESULTS.md wave/front5)
    return Plan([attempt], headers.items(), target.provider.error_format)
