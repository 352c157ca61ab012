"""The unified API's forward path: try each attempt in order (primary, then `fallbacks`) and answer with one.

`routes.py` turns a request into a list of `Attempt`s (the provider, the upstream request, and which format the
client speaks); `run()` sends them. Each attempt has its own Exchange: its own request id, reservation and log
record. An attempt that answers 5xx or 429, or that cannot be reached (connect error, timeout, a body that broke
before the gateway sent anything), is logged as an error (never charged: settle skips status >= 400) and the next
one is tried; that happens only before any byte of the response has gone to the client. The attempt that
answers is relayed, translated into the client's format when the provider speaks another one:

- same format: the bytes pass through untouched (`proxy._stream` for bodies that are streamed);
- another format: JSON bodies and error bodies are translated whole, SSE streams event by event through the
  translators' feed/finish contract. A stream that dies mid-way ends with the translators' in-band error event.

Usage is always read from the upstream's own bytes, in its own format (the Exchange's `usage_format`).
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec
from granian.rsgi import ProtocolClosed, ProtocolError

from .. import headers as hdr
from ..errors import GatewayError, UpstreamTimedOut, UpstreamUnreachable
from ..metering.usage import StreamScanner, usage_from_body
from ..proxy import Exchange, _stream, send_error
from ..upstream import UpstreamError, UpstreamTimeout
from ._common import ChainStream, dumps, loads, openai_error_body
from .anthropic import (AnthropicToOpenAIStream, OpenAIToAnthropicStream, anthropic_error_to_openai,
                        anthropic_response_to_openai, openai_error_to_anthropic, openai_response_to_anthropic)
from .gemini import (GeminiToOpenAIStream, OpenAIToGeminiStream, gemini_error_to_openai, gemini_response_to_openai,
                     openai_response_to_gemini)

if TYPE_CHECKING:
    from ..app import Gateway
    from ..auth import Principal
    from ..providers import Provider, Target

# Pass-through bodies up to this size that come with a Content-Length are read whole (as proxy.forward does).
_WHOLE_BODY_LIMIT = 1 << 20
_JSON_TYPE = ("content-type", "application/json")
_SSE_TYPES = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]
_GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
                  503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
FELL_BACK = "fell_back"  # the error_reason of an attempt that failed and was followed by the next one


class Attempt:
    """One way to answer the request: a provider and model, and the exact upstream request to send."""

    __slots__ = ("provider", "target", "model", "body", "stream", "limits")

    def __init__(self, provider: Provider, target: Target, model: str, body: bytes, stream: bool, limits) -> None:
        self.provider, self.target, self.model = provider, target, model
        self.body, self.stream, self.limits = body, stream, limits

    @property
    def fmt(self) -> str:
        return self.provider.usage_format

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.model}"


class Call:
    """What every attempt of one client request shares: who asks, in which format, with which headers."""

    __slots__ = ("gw", "proto", "principal", "exchange", "client_format", "include_usage", "header_items",
                 "_anthropic_items")

    def __init__(self, gw: Gateway, proto, principal: Principal, exchange: Exchange, client_format: str,
                 include_usage: bool, header_items: list[tuple[str, str]]) -> None:
        self.gw, self.proto, self.principal, self.exchange = gw, proto, principal, exchange
        self.client_format, self.include_usage = client_format, include_usage
        # The client's headers less its Content-Type (the upstream body is always JSON, and maybe not its own).
        items = [(n, v) for n, v in header_items if n != "content-type"]
        items.append(("content-type", "application/json"))
        self.header_items = items
        # Anthropic requires anthropic-version; clients of other formats never send it.
        self._anthropic_items = items if any(n == "anthropic-version" for n, _ in items) else \
            [*items, ("anthropic-version", "2023-06-01")]

    def upstream_headers(self, attempt: Attempt):
        """The headers for one attempt (in `headers.request_headers`' representation)."""
        provider = attempt.provider
        key = self.principal.provider_key or provider.managed_key
        items = self._anthropic_items if attempt.fmt == "anthropic" else self.header_items
        return hdr.request_headers(items, provider.key_header, key)


async def run(call: Call, attempts: list[Attempt]) -> None:
    """Send the attempts in order until one answers, and relay that answer. Every attempt is logged once."""
    gw, principal = call.gw, call.principal
    last = len(attempts) - 1
    for i, attempt in enumerate(attempts):
        ex = call.exchange if i == 0 else Exchange(gw, gw.request_ids.next(), principal, time.perf_counter())
        ex.target, ex.body, ex.limits = attempt.target, attempt.body, attempt.limits
        if i:
            ex.metadata = call.exchange.metadata
        target = attempt.target
        try:
            if principal.spend_key is not None:
                await gw.spend_keys.admit(principal.spend_key, attempt.provider.name, attempt.model)
            if principal.billing is not None:
                ex.lease, ex.reserved = await gw.billing.reserve(
                    ex.request_id, principal.billing, attempt.provider.name, len(attempt.body), attempt.limits,
                    principal.provider_key is not None)
            ex.sent_at = time.perf_counter()
            try:
                response = await gw.upstream.request("POST", target.scheme, target.host, target.port, target.path,
                                                     call.upstream_headers(attempt), attempt.body)
            except UpstreamTimeout:
                raise UpstreamTimedOut() from None
            except UpstreamError:
                raise UpstreamUnreachable() from None
        except GatewayError as exc:
            if i < last and isinstance(exc, (UpstreamTimedOut, UpstreamUnreachable)):
                ex.finish(exc.status, "error", FELL_BACK)
                continue
            _fail(call, ex, attempt, exc, exc.type)
            return
        ex.head_at = time.perf_counter()
        status = response.status
        if i < last and (status >= 500 or status == 429):
            response.abort()
            ex.finish(status, "error", FELL_BACK)
            continue
        if await _answer(call, ex, attempt, response, can_fall_back=i < last):
            return


def _fail(call: Call, ex: Exchange, attempt: Attempt | None, exc: GatewayError, reason: str) -> None:
    call.gw.metrics.errors += 1
    if attempt is not None:
        exc.headers = [*exc.headers, ("x-edge-proxy-model", attempt.label)]
    send_error(call.proto, exc, ex.request_id)
    ex.finish(exc.status, "error", reason)


async def _answer(call: Call, ex: Exchange, attempt: Attempt, response, can_fall_back: bool) -> bool:
    """Relay one attempt's response. False when its body broke before anything was sent and a fallback is left."""
    same = attempt.fmt == _upstream_format(call.client_format)
    out_headers = hdr.response_headers(response.headers)
    sse = any(n == "content-type" and v.startswith("text/event-stream") for n, v in out_headers)
    if not same:
        out_headers = [h for h in out_headers if h[0] not in ("content-type", "content-encoding")]
    out_headers += [("x-lava-request-id", ex.request_id), ("x-edge-proxy-model", attempt.label)]
    if same and (response.content_length is None or response.content_length > _WHOLE_BODY_LIMIT):
        await _stream(call.proto, response, out_headers, ex)
        return True
    if not same and sse and response.status < 400:
        await _translated_stream(call, ex, attempt, response, out_headers)
        return True
    try:
        data = await response.read()
    except UpstreamError as exc:
        err = UpstreamTimedOut() if isinstance(exc, UpstreamTimeout) else UpstreamUnreachable()
        if can_fall_back:
            ex.finish(err.status, "error", FELL_BACK)
            return False
        _fail(call, ex, attempt, err, "upstream_body_incomplete")
        return True
    status, raw = response.status, data
    if not same:
        try:
            data = _translate_body(attempt.fmt, call.client_format, raw, status, attempt.model)
        except (ValueError, msgspec.DecodeError):
            _fail(call, ex, attempt, UpstreamUnreachable("the provider's response could not be translated: "
                                                         "it is not the JSON its API documents"),
                  "untranslatable_response")
            return True
        out_headers.append(_JSON_TYPE)
    ex.replied_at = now = time.perf_counter()
    out_headers.append(("x-edge-proxy-overhead-ms", f"{ex.overhead(now) * 1000:.3f}"))
    call.proto.response_bytes(status, out_headers, data)
    ex.usage = usage_from_body(ex.usage_format, raw)  # the upstream's own bytes, in its own format
    ex.finish(status, "completed")
    return True


async def _translated_stream(call: Call, ex: Exchange, attempt: Attempt, response, out_headers) -> None:
    """Translate an SSE stream as it arrives; usage is read from the upstream's events, not ours. A client that
    leaves cancels the upstream request; an upstream that dies mid-stream ends with the client format's error."""
    translator = stream_translator(attempt.fmt, call.client_format, attempt.model, call.include_usage)
    proto = call.proto
    ex.stream = True
    scanner = StreamScanner(ex.usage_format)
    events = 0
    out_headers += [h for h in _SSE_TYPES if h[0] == "content-type" or not any(n == h[0] for n, _ in out_headers)]
    ex.replied_at = now = time.perf_counter()
    out_headers.append(("x-edge-proxy-overhead-ms", f"{ex.overhead(now) * 1000:.3f}"))
    transport = proto.response_stream(response.status, out_headers)
    watcher = asyncio.ensure_future(proto.client_disconnect())
    watcher.add_done_callback(lambda _: response.abort())
    outcome, reason = "completed", None
    try:
        complete: bool | None = True
        try:
            async for chunk in response:
                scanner.feed(chunk)
                events += chunk.count(b"\n\n")
                if out := translator.feed(chunk):
                    await transport.send_bytes(out)
        except UpstreamError:
            if watcher.done():
                outcome, reason, complete = "partial", "client_disconnected", None
            else:
                outcome, reason, complete = "error", "upstream_interrupted", False
        if complete is not None and (tail := translator.finish(complete)):
            await transport.send_bytes(tail)
    except (ProtocolClosed, ProtocolError):
        response.abort()
        outcome, reason = "partial", "client_disconnected"
    finally:
        watcher.cancel()
        del transport  # Granian ends the body when the transport is freed (see proxy._stream)
        ex.usage = scanner.result()
        ex.events = events
        ex.finish(response.status, outcome, reason)


# --- format dispatch ------------------------------------------------------------------------------------------

def _upstream_format(client_format: str) -> str:
    return "gemini" if client_format == "google" else client_format


def stream_translator(upstream: str, client: str, model: str, include_usage: bool) -> Any:
    """upstream SSE → OpenAI chunks (the hub) → the client's SSE; only the halves that are needed."""
    first = second = None
    hub_usage = include_usage or client != "openai"  # the second half needs the usage chunk to report usage
    if upstream == "anthropic":
        first = AnthropicToOpenAIStream(model, hub_usage)
    elif upstream == "gemini":
        first = GeminiToOpenAIStream(model, hub_usage)
    if client == "anthropic":
        second = OpenAIToAnthropicStream(model)
    elif client == "google":
        second = OpenAIToGeminiStream(model)
    if first is not None and second is not None:
        return ChainStream(first, second)
    return first or second


def _translate_body(upstream: str, client: str, data: bytes, status: int, model: str) -> bytes:
    """A whole upstream body (an answer, or an error when status >= 400) in the client's format."""
    if status >= 400:
        return dumps(translate_error(upstream, client, data, status))
    body = loads(data)
    if upstream == "anthropic":
        hub = anthropic_response_to_openai(body, model)
    elif upstream == "gemini":
        hub = gemini_response_to_openai(body, model)
    else:
        hub = body
    if client == "anthropic":
        return dumps(openai_response_to_anthropic(hub, model))
    if client == "google":
        return dumps(openai_response_to_gemini(hub, model))
    return dumps(hub)


def translate_error(upstream: str, client: str, data: bytes, status: int) -> dict:
    """A provider's error body (any shape, even not JSON) as the client format's error body."""
    try:
        body = loads(data)
    except (msgspec.DecodeError, ValueError):
        body = None
    if upstream == "anthropic":
        hub = anthropic_error_to_openai(body)
    elif upstream == "gemini":
        hub = gemini_error_to_openai(body)
    elif isinstance(body, dict) and isinstance(body.get("error"), dict):
        hub = body
    else:
        text = data[:500].decode("utf-8", "replace").strip()
        hub = openai_error_body(text or "the provider returned an error", "api_error")
    if client == "anthropic":
        return openai_error_to_anthropic(hub, status)
    if client == "google":
        error = hub.get("error") if isinstance(hub.get("error"), dict) else {}
        return {"error": {"code": status, "message": str(error.get("message") or "the provider returned an error"),
                          "status": _GEMINI_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")}}
    return hub
