"""One JSON line per request (`EDGE_PROXY_ACCESS_LOG=1`), to stdout or `EDGE_PROXY_ACCESS_LOG_FILE`.

The request path only hands its finished record to the metrics list; the publisher (publisher.py) writes the lines
a few times a second, in one write per batch. A line is built field by field from the record, never by dumping it,
so nothing the record may carry from the caller (metadata) or any credential can reach the log.
"""
from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING

import msgspec

from ..money import usd

if TYPE_CHECKING:
    from ..metering.record import RequestRecord


class AccessLine(msgspec.Struct, omit_defaults=False):
    time: str
    request_id: str
    merchant_id: str
    customer_id: str | None
    provider: str | None
    model: str | None
    status: int
    outcome: str
    error_reason: str | None
    stream: bool
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: str | None  # None: not priced
    latency_ms: float
    overhead_ms: float
    region: str | None


_encode = msgspec.json.Encoder().encode


def access_line(r: RequestRecord) -> AccessLine:
    return AccessLine(
        time=r.created_at, request_id=r.request_id, merchant_id=r.merchant_id, customer_id=r.customer_id,
        provider=r.provider, model=r.model, status=r.status_code, outcome=r.outcome, error_reason=r.error_reason,
        stream=r.stream, input_tokens=r.input_tokens, output_tokens=r.output_tokens, cached_tokens=r.cached_tokens,
        reasoning_tokens=r.reasoning_tokens, cost_usd=usd(r.cost_nanos) if r.priced and r.cost_nanos is not None
        else None, latency_ms=r.latency_ms, overhead_ms=r.overhead_ms, region=r.region)


class AccessLog:
    """Writes access lines to a file (opened for appending) or to stdout."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._out: IO[bytes] | None = None

    def open(self) -> None:
        if self.path:
            # one write per batch, appended: lines from several workers never interleave inside a line
            self._out = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        else:
            self._out = sys.stdout.buffer

    def write(self, records: list[RequestRecord]) -> None:
        if self._out is None:
            return
        self._out.write(b"".join(_encode(access_line(r)) + b"\n" for r in records))
        if not self.path:
            self._out.flush()

    def close(self) -> None:
        if self._out is not None and self.path:
            self._out.close()
        self._out = None

