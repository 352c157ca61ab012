"""OpenTelemetry traces, off by default: one span per proxied request, a child span per upstream attempt.

On with `EDGE_PROXY_OTEL_ENDPOINT` (an OTLP/HTTP collector: `http://host:4318`, or a full `.../v1/traces` URL).
Spans carry the GenAI semantic conventions (`gen_ai.system`, `gen_ai.request.model`, `gen_ai.response.model`,
`gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`), and each attempt sends its span's W3C `traceparent` to
the provider. The SDK's BatchSpanProcessor exports from its own thread, in batches, off the request path.

When off, nothing here is imported (services.py checks the setting first) and the request path pays one
`if svc.tracer is not None` per step.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import MissingDriver

if TYPE_CHECKING:
    from granian.rsgi import Headers, Scope

    from ..metering.record import RequestRecord
    from ..request_path.exchange import Exchange
    from ..request_path.plan import Attempt
    from ..upstream import HeaderBlock

EXTRA_MISSING = ("EDGE_PROXY_OTEL_ENDPOINT: tracing needs the OpenTelemetry SDK and OTLP exporter, which are not "
                 "installed: pip install 'edge-proxy[otel]'")


def require_otel() -> None:
    """Fail at start-up, in one line naming the extra, when the OpenTelemetry packages are missing."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        raise MissingDriver(EXTRA_MISSING) from None


def _without_trace_context(headers: HeaderBlock) -> tuple[bytes, int]:
    """The upstream headers less a caller's own `traceparent`/`tracestate` (passed through as they came): the
    provider must see one trace context, the attempt span's, which is already the caller's trace's child."""
    if headers.find(b"traceparent:") < 0 and headers.find(b"tracestate:") < 0:
        return bytes(headers), headers.lines
    kept = [line for line in headers.split(b"\r\n")
            if line and not line.lower().startswith((b"traceparent:", b"tracestate:"))]
    return b"".join(line + b"\r\n" for line in kept), len(kept)


def traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class Tracer:
    """This worker's tracer provider, and the attempt spans still open (by request id)."""

    def __init__(self, endpoint: str, region: str) -> None:
        require_otel()
        from opentelemetry import context, trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace, self._context = trace, context
        self._propagator = TraceContextTextMapPropagator()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "edge-proxy",
                                                                 "edge_proxy.region": region}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
        self._tracer = self.provider.get_tracer("edge_proxy")
        self._server, self._client = trace.SpanKind.SERVER, trace.SpanKind.CLIENT
        self._error = trace.Status(trace.StatusCode.ERROR)
        self._attempts: dict[str, Any] = {}

    async def serve(self, serve: Callable[..., Awaitable[None]], svc: Any, scope: Scope, headers: Headers,
                    *args: Any) -> None:
        """Run the request path inside a request span (a child of the caller's `traceparent`, if it sent one)."""
        parent = None
        incoming = headers.get("traceparent")
        if incoming is not None:
            parent = self._propagator.extract({"traceparent": incoming})
        span = self._tracer.start_span(f"{scope.method} {scope.path}", context=parent, kind=self._server,
                                       attributes={"http.request.method": scope.method, "url.path": scope.path})
        token = self._context.attach(self._trace.set_span_in_context(span))
        try:
            await serve(svc, scope, headers, *args)
        finally:
            self._context.detach(token)
            span.end()

    def attempt_started(self, ex: Exchange, attempt: Attempt, headers: HeaderBlock) -> HeaderBlock:
        """Open the attempt's span (a child of the request's) and add its `traceparent` to the upstream headers."""
        from ..upstream import HeaderBlock
        provider = attempt.provider.name
        span = self._tracer.start_span(f"{attempt.method} {provider}", kind=self._client, attributes={
            "gen_ai.system": provider, "gen_ai.request.model": attempt.model or "",
            "server.address": attempt.target.host, "edge_proxy.request_id": ex.request_id})
        self._attempts[ex.request_id] = span
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=self._trace.set_span_in_context(span))
        added = "".join(f"{name}: {value}\r\n" for name, value in carrier.items())
        kept, lines = _without_trace_context(headers)
        return HeaderBlock(kept + added.encode("ascii"), lines + len(carrier))

    def attempt_finished(self, ex: Exchange, record: RequestRecord) -> None:
        """Close the attempt's span with what its record says; the request span gets the same GenAI figures (the
        last attempt's win), and ends when the request path returns (`serve`)."""
        requested = ex.attempt.model if ex.attempt is not None else None
        attributes: dict[str, str | int] = {
            "gen_ai.system": record.provider or "", "gen_ai.request.model": requested or "",
            "gen_ai.response.model": record.model or "", "gen_ai.usage.input_tokens": record.input_tokens,
            "gen_ai.usage.output_tokens": record.output_tokens, "http.response.status_code": record.status_code,
            "edge_proxy.outcome": record.outcome}
        self._trace.get_current_span().set_attributes(attributes)
        span = self._attempts.pop(ex.request_id, None)
        if span is not None:
            span.set_attributes(attributes)
            if record.outcome == "error":
                span.set_status(self._error)
            span.end()

    def close(self) -> None:
        """Export what is still queued, then stop the exporter's thread."""
        self.provider.shutdown()
