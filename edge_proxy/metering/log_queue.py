"""The log queue between the request path and the log writer, with the journal under it.

The request path calls `opened()` right before an attempt goes upstream and `put()` when it ends: each writes one
line to this worker's journal (metering/journal.py) and never waits; `put()` also queues the encoded record in
memory. One writer task per worker sends batches, by size or age, to `commit(request_ids, lines)` (the log writer
process bills and writes them in one transaction, services.py). A batch leaves memory only once it committed; a
failed commit is retried with backoff. When the store stays down past `spill_after`, or the queue is full, the
records leave memory (they are in the journal already) and keep their reservations; once the store answers they
are replayed from disk. Every `replay_every` seconds, and at start, the writer also replays the segments of dead
workers, billing their opened attempts that have no final record as cut (metering/opened.py). `stop()` drains.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

from .journal import Claim, Entries, Journal, Segment, keep_bad, read_head, split_lines
from .opened import cut_record, opened_line
from .record import RequestRecord

if TYPE_CHECKING:
    from pathlib import Path

    from ..request_path.exchange import Exchange

log = logging.getLogger("edge_proxy.log_queue")
_encode_lines = msgspec.json.Encoder().encode_lines  # of a 1-tuple: the JSON and its newline in one buffer
_PARSE_SLICE = 1000  # lines parsed between two turns of the event loop while replaying
_PROBE_BYTES = 1 << 20

Commit = Callable[[list[str], list[bytes]], Awaitable[None]]


class LogQueue:
    def __init__(self, journal: Journal, commit: Commit, *, price: Callable[[RequestRecord], None] | None = None,
                 max_size: int = 100_000, batch_size: int = 500, max_age: float = 0.2, spill_after: float = 5.0,
                 replay_every: float = 5.0) -> None:
        self.journal = journal
        self.commit = commit  # commit(request_ids, lines): bill and write in one transaction; raises on failure
        self.price = price    # prices a cut record before it is billed
        self.max_size = max_size
        self.batch_size = batch_size
        self.max_age = max_age
        self.spill_after = spill_after
        self.replay_every = replay_every
        self._queue: deque[tuple[str, bytes, Segment | None]] = deque()
        self._parked = False
        self._generation = 0  # bumped when the queue is dropped, so a batch in flight does not pop newer ones
        self._first_at = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing_since: float | None = None
        self._last_replay = 0.0
        # counters for /metrics
        self.written = 0   # committed from memory
        self.spilled = 0   # left memory to wait in the journal (the store was down, or the queue full)
        self.replayed = 0  # committed from the journal: this worker's backlog and dead workers' segments
        self.cut = 0       # attempts a dead worker left in flight, billed as gateway_crashed
        self.write_failures = 0
        self.dropped = 0   # stays 0: a record is in the journal or in memory until it is committed

    # -- the request path ----------------------------------------------------------------------------------
    def opened(self, ex: Exchange) -> None:
        """Journal an attempt about to be sent upstream (its record if this process dies before it ends)."""
        self.journal.opened(ex.request_id, opened_line(ex))

    def put(self, record: RequestRecord) -> None:
        request_id = record.request_id
        line = _encode_lines((record,))
        seg = self.journal.append(request_id, line)
        if seg is not None and self._parked:
            self.spilled += 1
            return
        queue = self._queue
        if len(queue) >= self.max_size and seg is not None:
            self._park("the log queue is full")
            self.spilled += 1
            return
        if not queue:
            self._first_at = time.monotonic()
            queue.append((request_id, line, seg))
            self._wake.set()
            return
        queue.append((request_id, line, seg))
        if len(queue) == self.batch_size:
            self._wake.set()

    @property
    def depth(self) -> int:
        """Records waiting in memory (the journal's backlog is not counted)."""
        return len(self._queue)

    def oldest_age(self) -> float:
        """Seconds the oldest record in memory has waited (0 when none waits): measured from when the queue last
        started filling or last committed a batch, so it never overstates a wait (metrics, observability/)."""
        return time.monotonic() - self._first_at if self._queue else 0.0

    def failing_for(self) -> float:
        """Seconds since the first failed commit (from its start) of a batch that is still uncommitted; 0 while
        the store takes writes. Past the lease TTL, admission should refuse new reservations (503)."""
        since = self._failing_since
        return 0.0 if since is None else time.monotonic() - since

    # -- the writer ----------------------------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="edge-proxy-log-writer")
        if self.journal.sync_every > 0:
            self._sync_task = loop.create_task(self.journal.keep_synced(), name="edge-proxy-journal-sync")

    async def _run(self) -> None:
        await self._replay_dead()
        backoff = 0.05
        while not self._stopping:
            if self._parked:
                if await self._probe():
                    self._unpark()
                    await self._replay_backlog()
                    backoff = 0.05
                else:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                continue
            if not self._queue:
                self._wake.clear()
                try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (gh-86296)
                    async with asyncio.timeout(self.replay_every):
                        await self._wake.wait()
                except TimeoutError:
                    await self._maybe_replay()
                continue
            wait = self.max_age - (time.monotonic() - self._first_at)
            if len(self._queue) < self.batch_size and wait > 0:
                self._wake.clear()
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
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
        """Commit the oldest batch in memory. True when it committed."""
        queue = self._queue
        n = min(len(queue), self.batch_size)
        batch = [queue[i] for i in range(n)]
        generation = self._generation
        if not await self._commit([e[0] for e in batch], [e[1] for e in batch]):
            if self.failing_for() >= self.spill_after and not self._stopping:
                self._park(f"the log store has been failing for {self.failing_for():.1f} s")
            return False
        self.written += n
        if generation == self._generation:
            # Only what is still at the head leaves: each record is counted off its segment once, even if a
            # second flusher (a shutdown that outran a cancelled writer task) committed the same batch.
            done = []
            for entry in batch:
                if not queue or queue[0] is not entry:
                    break
                done.append(queue.popleft())
            self.journal.committed(e[2] for e in done)
        self._first_at = time.monotonic()
        return True

    async def _commit(self, request_ids: list[str], lines: list[bytes]) -> bool:
        started = time.monotonic()
        try:
            async with asyncio.timeout(30):
                await self.commit(request_ids, lines)
        except Exception as exc:  # any store or writer failure: the records stay, and are tried again
            self.write_failures += 1
            if self._failing_since is None:
                self._failing_since = started  # a store that hangs has been failing since the attempt began
                log.warning("log store write failed (%s: %s); retrying", type(exc).__name__, exc)
            return False
        if self._failing_since is not None:
            log.warning("log store is writable again")
            self._failing_since = None
        return True

    async def _commit_all(self, finals: list[tuple[str, bytes]]) -> bool:
        for i in range(0, len(finals), self.batch_size):
            chunk = finals[i:i + self.batch_size]
            if not await self._commit([rid for rid, _ in chunk], [line for _, line in chunk]):
                return False
        return True

    # -- the store is down: records wait in the journal, not in memory -----------------------------------------
    def _park(self, why: str) -> None:
        kept = [e for e in self._queue if e[2] is None]  # the disk refused these: memory is all they have
        self.spilled += len(self._queue) - len(kept)
        log.warning("%s: %d records leave memory and wait in the journal (%s)", why,
                    len(self._queue) - len(kept), self.journal.path)
        self._queue = deque(kept)
        self._generation += 1
        self._parked = True
        self.journal.park()

    def _unpark(self) -> None:
        self._parked = False
        self.journal.unpark()

    async def _probe(self) -> bool:
        """Whether the store takes writes again, tried with the oldest records of the backlog."""
        for seg in self.journal.backlog():
            head = await asyncio.to_thread(read_head, seg.path, _PROBE_BYTES)
            entries = Entries()
            entries.parse(head.split(b"\n")[:self.batch_size * 2])
            if entries.finals:
                return await self._commit_all(entries.finals[:self.batch_size])
        return True  # nothing on disk to try it with: the queue will tell

    async def _maybe_replay(self) -> None:
        if time.monotonic() - self._last_replay >= self.replay_every:
            self._last_replay = time.monotonic()
            if await self._replay_backlog():
                await self._replay_dead()

    async def _replay_backlog(self) -> bool:
        """Commit this worker's backlog from disk; each segment goes once it is in the store."""
        for seg in self.journal.backlog():
            if seg is self.journal.current:
                continue
            entries = await self._read([seg.path])
            if not await self._commit_all(entries.finals):
                return False
            self.journal.delete(seg)
            self.replayed += len(entries.finals)
        return True

    async def _replay_dead(self) -> bool:
        """Claim dead workers' segments and commit them: their final records, and their opened attempts without
        one as cut requests. Idempotent by request id, so a replay that is interrupted and repeated, or of
        records committed before the crash, bills nothing twice."""
        for claim in self.journal.claim_dead():
            try:
                done = await self._replay_claim(claim)
            except BaseException:
                claim.release()
                raise
            if not done:
                claim.release()
                return False
        return True

    async def _replay_claim(self, claim: Claim) -> bool:
        entries = await self._read(claim.paths)
        finals = dict(entries.finals)
        cuts = []
        for o in entries.opened:
            if o.request_id not in finals:
                record = cut_record(o)
                if self.price is not None:
                    self.price(record)
                finals[o.request_id] = _encode_lines((record,))
                cuts.append(record)
        if not await self._commit_all(list(finals.items())):
            return False
        claim.done()
        self.replayed += len(finals) - len(cuts)
        self.cut += len(cuts)
        if finals:
            log.warning("replayed a dead worker's journal (%s): %d records, %d of them attempts cut by the crash "
                        "(billed as %s)", claim.owner, len(finals), len(cuts), "gateway_crashed")
        return True

    async def _read(self, paths: list[Path]) -> Entries:
        entries = Entries()
        for path in paths:
            data = await asyncio.to_thread(path.read_bytes)
            lines = split_lines(data, path)
            bad_before = len(entries.bad)
            for i in range(0, len(lines), _PARSE_SLICE):
                entries.parse(lines[i:i + _PARSE_SLICE])
                await asyncio.sleep(0)  # a long segment must not hold up requests
            if len(entries.bad) > bad_before:
                keep_bad(path, entries.bad[bad_before:])
        return entries

    # -- shutdown ------------------------------------------------------------------------------------------
    async def stop(self, timeout: float = 10.0) -> None:
        """Drain: commit what is in memory. What the store cannot take in time stays in the journal, which the
        next start replays."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                pass  # wait_for cancelled it; the drain below takes over
            with contextlib.suppress(asyncio.CancelledError):
                await self._task  # one flusher at a time: it must be over before the drain starts
        deadline = time.monotonic() + timeout
        while self._queue and not self._parked and time.monotonic() < deadline:
            if not await self._flush_one():
                await asyncio.sleep(0.05)
        if self._sync_task is not None:
            self._sync_task.cancel()
        self.journal.close()
