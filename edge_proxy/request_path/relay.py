"""Relaying one attempt's answer to the client: whole or streamed, translated or not.

- A pass-through answer (the provider speaks the client's format) keeps its bytes: bodies up to 1 MiB with a
  Content-Length are sent in one piece, anything else (chunked, close-delimited, every SSE stream) chunk by chunk
  as it arrives.
- A translated answer is translated whole (JSON bodies and error bodies) or event by event (SSE streams).
Usage is always read from the provider's own bytes, in its own format. While a stream is relayed, a watcher
notices a client that leaves and cancels the upstream request; a provider that dies mid-stream ends a
server-sent-event stream with one error event in the client's format (Granian cannot abort a response whose
headers are out), never a `[DONE]`.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import msgspec
from granian.rsgi import ProtocolClosed, ProtocolError

from .. import headers as hdr
from ..errors import GatewayError, UpstreamTimedOut, UpstreamUnreachable
from ..metering.estimate import answer_outcome
from ..metering.usage import StreamScanner, usage_from_body
from ..stream_errors import sse_error_event
from ..upstream import UpstreamError, UpstreamEventTooLarge, UpstreamTimeout

if TYPE_CHECKING:
    from collections.abc import Callable

    from granian._granian import RSGIHTTPStreamTransport as StreamTransport
    from granian.rsgi import HTTPProtocol

    from ..upstream import UpstreamResponse
    from .exchange import Exchange
    from .plan import Attempt, Plan, StreamTranslator

# Pass-through bodies up to this size that come with a Content-Length are read whole and sent in one piece.
WHOLE_BODY_LIMIT = 1 << 20
_JSON_TYPE = ("content-type", "application/json")
_SSE_TYPES = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]
# How the last event of a provider's stream begins, by usage format: a pass-through client that had it had the whole
# answer (the OpenAI SDK closes its connection there), even if the provider's connection then ends late or badly.
_END_EVENTS = {"openai": (b"data: [DONE]", b"event: response.completed"), "anthropic": (b"event: message_stop",)}
# The Responses events that carry the whole response, its id and output items with its usage
_FINAL_EVENT, _INCOMPLETE_EVENT = b"response.completed", b"response.incomplete"


class BodyBroken(GatewayError):
    """The provider's body broke before anything was sent: the pipeline may still fall back."""

    reason = "upstream_body_incomplete"

    def __init__(self, cause: GatewayError) -> None:
        super().__init__(cause.message)
        self.status, self.type = cause.status, cause.type


class Untranslatable(UpstreamUnreachable):
    reason = "untranslatable_response"
    message = "the provider's response could not be translated: it is not the JSON its API documents"


async def relay(proto: HTTPProtocol, plan: Plan, attempt: Attempt, ex: Exchange,
                response: UpstreamResponse) -> None:
    """Send the answer and finish the exchange (its log record). Raises `BodyBroken` when a body to be sent
    whole broke before any byte of it went out, so the caller decides between a fallback and an error."""
    translation = attempt.translation
    out_headers = hdr.response_headers(response.headers, managed=ex.principal.provider_key is None)
    if translation is not None:
        out_headers = [h for h in out_headers if h[0] not in ("content-type", "content-encoding")]
    out_headers.append(("x-lava-request-id", ex.request_id))
    if plan.unified:
        out_headers.append(("x-edge-proxy-model", attempt.label))
    if translation is None and (response.content_length is None or response.content_length > WHOLE_BODY_LIMIT):
        if response.content_length is not None:
            out_headers.append(("content-length", str(response.content_length)))
        await _stream(proto, response, out_headers, ex, None, _is_sse(response))
        return
    if translation is not None and response.status < 400 and _is_sse(response):
        out_headers += [h for h in _SSE_TYPES
                        if h[0] == "content-type" or not any(n == h[0] for n, _ in out_headers)]
        await _stream(proto, response, out_headers, ex, translation.stream(), True)
        return
    try:
        raw = await response.read()
    except UpstreamError as exc:
        raise BodyBroken(UpstreamTimedOut() if isinstance(exc, UpstreamTimeout) else UpstreamUnreachable()) from None
    data = raw
    if translation is not None:
        try:
            data = translation.body(raw, response.status)
        except (ValueError, msgspec.DecodeError):
            raise Untranslatable() from None
        out_headers.append(_JSON_TYPE)
    ex.stamp(out_headers)
    proto.response_bytes(response.status, out_headers, data)
    # the provider's own bytes, in its own format (ex.usage_format without the property's frame: ex.attempt is attempt)
    ex.usage = usage = usage_from_body(attempt.provider.usage_format, raw)
    ex.finish(response.status, *answer_outcome(response.status, usage))


def _ends_answer(fmt: str, chunk: bytes) -> bool:
    """Whether a relayed chunk ends with its format's last event (`_END_EVENTS`), so what the client had is whole."""
    tail = chunk.rstrip()
    at = tail.rfind(b"\n\n")  # where the chunk's last event begins
    return tail.startswith(_END_EVENTS.get(fmt, ()), at + 2 if at >= 0 else 0)


def _cut_reason(exc: UpstreamError, deadline: asyncio.TimerHandle) -> str:
    """The request log's error_reason for a stream whose body failed before its end."""
    if isinstance(exc, UpstreamEventTooLarge):
        return "upstream_event_too_large"
    return "stream_deadline" if deadline.when() <= asyncio.get_running_loop().time() else "upstream_interrupted"


def _is_sse(response: UpstreamResponse) -> bool:
    return any(n == b"content-type" and v.startswith(b"text/event-stream") for n, v in response.headers)


async def _stream(proto: HTTPProtocol, response: UpstreamResponse, out_headers: list[tuple[str, str]],
                  ex: Exchange, translator: StreamTranslator | None, sse: bool) -> None:
    ex.stream = True
    scanner = StreamScanner(ex.usage_format)
    feed = _owning_feed(scanner, ex) if ex.attempt is not None and ex.attempt.reads_stored else scanner.feed
    ex.stamp(out_headers)
    transport = proto.response_stream(response.status, out_headers)
    watcher = asyncio.ensure_future(proto.client_disconnect())
    watcher.add_done_callback(lambda _: response.abort())
    # EDGE_PROXY_MAX_STREAM_SECONDS: a provider that drips within the read timeout cannot hold a stream (and its
    # reservation) open for ever; past it the body is given up, and the stream ends as a cut one
    loop = asyncio.get_running_loop()
    deadline = loop.call_later(ex.svc.settings.max_stream_seconds, response.abort)
    last = [b""]  # the last chunk relayed as it came (pass-through): did the client have the provider's end?

    def whole() -> bool:  # the client had its whole answer, end marker included
        return translator.closed if translator is not None else _ends_answer(ex.usage_format, last[0])

    pump = loop.create_task(_pass(response, transport, feed, last) if translator is None
                                                  else _translate(response, transport, feed, translator))
    outcome, reason = "completed", None
    try:
        complete: bool | None = True
        try:
            await pump
        except UpstreamError as exc:
            response.abort()  # what failed may be ours (an event past the translator's bound): let the body go
            if whole():
                pass  # the client had its whole answer, end marker included, before the upstream's end: not cut
            elif watcher.done():
                outcome, reason, complete = "partial", "client_disconnected", None
            else:
                outcome, reason, complete = "error", _cut_reason(exc, deadline), False
        if translator is not None:
            if complete is not None and (tail := translator.finish(complete)):
                await transport.send_bytes(tail)
        elif complete is False and sse:
            await transport.send_bytes(sse_error_event(ex.usage_format))
    except (ProtocolClosed, ProtocolError):
        response.abort()
        if not whole():
            outcome, reason = "partial", "client_disconnected"
    finally:
        watcher.cancel()
        deadline.cancel()
        pump.cancel()  # if this was cancelled while the pump ran: nothing is fed to the scanner after this
        ex.usage = usage = scanner.result()
        # A provider error status or an in-band error event is an error, also when the client left after it (an
        # SDK stops reading at the error event, often before the provider's end).
        answered = answer_outcome(response.status, usage)
        if outcome == "completed" or answered[0] == "error":
            outcome, reason = answered
        if outcome == "completed" and translator is not None and translator.failed:
            outcome, reason = "error", translator.failed  # the client's SDK raised on our error event
        ex.finish(response.status, outcome, reason)  # journaled before the body ends (below): a crash loses nothing
        # Granian ends the body when the transport is freed. A traceback kept by the upstream response can hold
        # this frame alive, so let go of the transport explicitly.
        del transport


def _owning_feed(scanner: StreamScanner, ex: Exchange) -> Callable[[bytes], None]:
    """`scanner.feed` for a stream whose answer is stored in the operator's project: its ids become the merchant's
    as soon as the scanner has read them (`response.completed`), before the chunk that completes them is relayed,
    so a client that continues the conversation at once is not refused (`Exchange.finish` comes later)."""
    caller, owners, scan = ex.principal, ex.svc.owners, scanner.feed
    pending = False  # a final event began: look for its ids after each chunk until they are read

    def feed(chunk: bytes) -> None:
        nonlocal pending
        scan(chunk)
        if pending or _FINAL_EVENT in chunk or _INCOMPLETE_EVENT in chunk:
            usage = scanner.result()
            pending = usage.response_id is None
            if usage.response_id is not None:
                owners.remember(caller, usage.response_id, usage.output_item_ids)

    return feed


# Each chunk is relayed by one of these two, run as a task of its own by _stream: a chunk that arrives then
# resumes only this coroutine, not every caller up to the app (4 frames fewer per chunk). An error's traceback keeps
# the frame alive, and Granian ends the body only when the transport is freed: hence the `del`.
async def _pass(response: UpstreamResponse, transport: StreamTransport, feed: Callable[[bytes], None],
                last: list[bytes]) -> None:
    """Relay every chunk unchanged, each scanned for usage first; `last` holds the last one sent."""
    try:
        async for chunk in response:
            feed(chunk)
            await transport.send_bytes(chunk)
            last[0] = chunk
    finally:
        del transport


async def _translate(response: UpstreamResponse, transport: StreamTransport, feed: Callable[[bytes], None],
                     translator: StreamTranslator) -> None:
    """Relay every chunk translated, each scanned for usage in the provider's own format first."""
    try:
        async for chunk in response:
            feed(chunk)
            if out := translator.feed(chunk):
                await transport.send_bytes(out)
    finally:
        del transport
