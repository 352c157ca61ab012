"""What operators read: one set of Prometheus metrics for the gateway, OpenTelemetry traces, an access log.

The request path touches this package at two points, each one call: `Exchange.finish` hands over the attempt's
record (`Observability.finished`: a list append, plus the tracer when tracing is on), and the billing engine's
`after_commit` reports what a batch charged (`Observability.settled`). Everything else (turning records into
metric figures, writing access lines, exporting spans) runs off the request path: in the publisher task below, at
a scrape, or in the OpenTelemetry SDK's export thread.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .access_log import AccessLog
from .publisher import Publisher
from .worker_metrics import WorkerMetrics

if TYPE_CHECKING:
    from ..billing.engine import Committed
    from ..metering.record import RequestRecord
    from ..request_path.exchange import Exchange
    from ..services import Services
    from .tracing import Tracer

__all__ = ["Observability", "WorkerMetrics"]
log = logging.getLogger("edge_proxy")
PUBLISH_SECONDS = 0.25  # how stale a scrape of the other workers may be; this worker publishes at each scrape
# A worker where nothing moved parks its publisher until a request arrives or finishes, or this long: the figures
# that move without a request (webhook deliveries, lease top-ups) are at most this stale on an idle worker.
QUIET_PUBLISH_SECONDS = 5.0


class Observability:
    def __init__(self, svc: Services) -> None:
        settings = svc.settings
        self.metrics = svc.metrics
        self.access_log = AccessLog(settings.access_log_file) if settings.access_log else None
        self.publisher = Publisher(svc, self.access_log)
        self.tracer: Tracer | None = None
        if settings.otel_endpoint:
            from .tracing import Tracer
            self.tracer = Tracer(settings.otel_endpoint, settings.region)
        self._task: asyncio.Task[None] | None = None

    # -- the request path's hooks ----------------------------------------------------------------------------
    def finished(self, ex: Exchange, record: RequestRecord) -> None:
        """An attempt's record is on the log queue: count it (later, in the publisher), and close its span."""
        metrics = self.metrics
        metrics.finished.append((record, ex.head_at - ex.sent_at if ex.head_at else -1.0))
        if metrics.waiting is not None:  # a stream outlived the publisher's last busy turn
            metrics.wake()
        if self.tracer is not None:
            self.tracer.attempt_finished(ex, record)

    def settled(self, done: Committed) -> None:
        """A batch was billed: what its requests took from their payers."""
        self.metrics.charged.append(sum(payer for _, payer, _ in done.consumed))
        self.metrics.wake()  # once per batch: no need for the request path's test before the call

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.access_log is not None:
            self.access_log.open()
        self._task = asyncio.get_running_loop().create_task(self._publish_often(), name="edge-proxy-metrics")

    async def _publish_often(self) -> None:
        """Publish every PUBLISH_SECONDS while anything moves; after a turn where nothing did, wait for a wake
        (WorkerMetrics.wake) or QUIET_PUBLISH_SECONDS. Each wake-up of an idle worker costs ~0.2 ms of CPU on
        our VMs, whatever it does (bench/RESULTS.md), which a relayed stream would otherwise pay by the clock."""
        metrics, loop = self.metrics, asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PUBLISH_SECONDS)
            try:
                moved = self.publisher.publish()
            except Exception:  # a bug here must not stop the figures for good: say so, and try again next time
                log.exception("publishing metrics failed")
                moved = True
            if not moved:
                metrics.waiting = waiting = loop.create_future()
                try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (gh-86296)
                    async with asyncio.timeout(QUIET_PUBLISH_SECONDS):
                        await waiting
                except TimeoutError:
                    metrics.waiting = None

    async def render(self) -> bytes:
        return await self.publisher.render()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.publisher.close()
        if self.access_log is not None:
            self.access_log.close()
        if self.tracer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.tracer.close)
