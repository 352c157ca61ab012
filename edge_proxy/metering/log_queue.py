"""The bounded, batched log queue between the request path and the log store.

The request path calls `put()`, which never waits and never does I/O. One writer task per worker flushes
batches by size or age. A batch leaves the queue only once its write has committed; a failed write is retried
with backoff; when the store stays down past `spill_after`, or the queue is full, records go to the spill
directory (fsynced) and are replayed once the store answers again. `stop()` drains the queue before exit.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from ..log_sinks import LogSink
from ..log_sinks.spill import SpillDir
from .record import RequestRecord

log = logging.getLogger("edge_proxy.log_queue")


class LogQueue:
    def __init__(self, sink: LogSink, spill: SpillDir, *,
                 commit: Callable[[list[RequestRecord]], Awaitable[None]] | None = None,
                 on_spill: Callable[[list[RequestRecord]], None] | None = None,
                 max_size: int = 100_000, batch_size: int = 500, max_age: float = 0.2,
                 spill_after: float = 5.0, replay_every: float = 5.0) -> None:
        self.sink = sink
        self.spill = spill
        self.commit = commit or sink.write  # commit(batch): bill and write in one transaction
        self.on_spill = on_spill
        self.max_size = max_size
        self.batch_size = batch_size
        self.max_age = max_age
        self.spill_after = spill_after
        self.replay_every = replay_every
        self._queue: deque[RequestRecord] = deque()
        self._overflow: list[RequestRecord] = []
        self._first_at = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._failing_since: float | None = None
        self._last_replay = 0.0
        # counters for /metrics
        self.written = 0
        self.spilled = 0
        self.replayed = 0
        self.write_failures = 0
        self.dropped = 0  # stays 0: nothing is ever dropped, it spills instead

    # -- the request path ----------------------------------------------------------------------------------
    def put(self, record: RequestRecord) -> None:
        queue = self._queue
        if len(queue) >= self.max_size:
            if not self._overflow:
                asyncio.get_running_loop().call_soon(self._spill_overflow)
            self._overflow.append(record)
            return
        if not queue:
            self._first_at = time.monotonic()
            queue.append(record)
            self._wake.set()
            return
        queue.append(record)
        if len(queue) == self.batch_size:
            self._wake.set()

    def failing_for(self) -> float:
        """Seconds since the store first refused a batch that is still not written (0 when it takes them)."""
        return 0.0 if self._failing_since is None else time.monotonic() - self._failing_since

    @property
    def depth(self) -> int:
        return len(self._queue) + len(self._overflow)

    # -- the writer ----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="edge-proxy-log-writer")

    async def _run(self) -> None:
        await self._replay()
        backoff = 0.05
        while not self._stopping:
            if not self._queue:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.replay_every)
                except TimeoutError:
                    await self._maybe_replay()
                continue
            wait = self.max_age - (time.monotonic() - self._first_at)
            if len(self._queue) < self.batch_size and wait > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
                if len(self._queue) < self.batch_size and time.monotonic() - self._first_at < self.max_age:
                    continue
            if await self._flush_one():
                backoff = 0.05
                await self._maybe_replay()
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _flush_one(self) -> bool:
        """Write the oldest batch. True when it left the queue (committed or spilled to disk)."""
        n = min(len(self._queue), self.batch_size)
        batch = [self._queue[i] for i in range(n)]
        try:
            await asyncio.wait_for(self.commit(batch), 30)
        except Exception as exc:  # any store failure: keep the batch, retry, spill if it lasts
            self.write_failures += 1
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
                log.warning("log store write failed (%s: %s); retrying", type(exc).__name__, exc)
            if now - self._failing_since < self.spill_after and not self._stopping:
                return False
            self._spill(batch)
        else:
            self.written += n
            if self._failing_since is not None:
                log.warning("log store is writable again")
            self._failing_since = None
        for _ in range(n):
            self._queue.popleft()
        self._first_at = time.monotonic()
        return True

    def _spill(self, records: list[RequestRecord]) -> None:
        self.spill.write(records)
        self.spilled += len(records)
        if self.on_spill is not None:
            self.on_spill(records)

    def _spill_overflow(self) -> None:
        records, self._overflow = self._overflow, []
        if records:
            log.warning("log queue full: spilling %d records to %s", len(records), self.spill.path)
            self._spill(records)

    async def _maybe_replay(self) -> None:
        if time.monotonic() - self._last_replay >= self.replay_every:
            await self._replay()

    async def _replay(self) -> None:
        self._last_replay = time.monotonic()
        claimed = self.spill.claim()
        for n, segment in enumerate(claimed):
            records = self.spill.read(segment)
            try:
                for i in range(0, len(records), self.batch_size):
                    await self.commit(records[i:i + self.batch_size])
            except Exception as exc:  # the store went away again: give every unfinished segment back for later
                log.warning("replay of %s failed (%s: %s); will retry", segment.name, type(exc).__name__, exc)
                for unfinished in claimed[n:]:
                    self.spill.release(unfinished)
                return
            self.spill.done(segment)
            self.replayed += len(records)
            self._failing_since = None

    async def stop(self, timeout: float = 10.0) -> None:
        """Drain on shutdown: write what is queued; whatever the store cannot take in time is spilled."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                self._task.cancel()
        self._spill_overflow()
        deadline = time.monotonic() + timeout
        while self._queue:
            if time.monotonic() > deadline:
                self._spill(list(self._queue))
                self._queue.clear()
                break
            await self._flush_one()
