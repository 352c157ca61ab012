"""The request path's side of the metrics: plain counters and a list, nothing else.

prometheus-client's multiprocess mode writes every observation to a memory-mapped file under a lock: about 2.4 µs
per counter increment and 6.7 µs per histogram observation on our machine, ~20 µs for one request's figures. So
the request path only counts in memory (a few tenths of a µs: `bench/metrics_cost.py`), and `publisher.py` moves the
figures into prometheus-client's files a few times a second, off the request path.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..metering.record import RequestRecord


class WorkerMetrics:
    """What one worker counted since the publisher last took it."""

    __slots__ = ("requests", "errors", "finished", "charged", "waiting")

    def __init__(self) -> None:
        self.requests = 0   # every HTTP request this worker received (app.py)
        self.errors = 0     # requests the gateway itself answered with an error
        # each logged attempt with its upstream seconds (to the response head; -1: never sent or no head)
        self.finished: list[tuple[RequestRecord, float]] = []
        self.charged: list[int] = []  # nano-USD each settled request took from its payer (billing after_commit)
        # the publisher parked while nothing moves (observability/__init__.py): a request's arrival, its record
        # and its charge wake it, so an idle worker does no clock-driven publishing
        self.waiting: asyncio.Future[None] | None = None

    def wake(self) -> None:
        """Something will move: the parked publisher goes back to publishing every PUBLISH_SECONDS."""
        waiting, self.waiting = self.waiting, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def take_finished(self) -> list[tuple[RequestRecord, float]]:
        taken, self.finished = self.finished, []
        return taken

    def take_charged(self) -> list[int]:
        taken, self.charged = self.charged, []
        return taken
