"""The log writer's database work, off the event loop that serves requests.

Each worker starts one child process (`python -m edge_proxy.log_sinks.writer_process`) with its own database
connections, and feeds it batches of encoded records (the journal's lines) over a pipe. The child decodes them
and runs `BillingEngine.commit_tx`, the one transaction that writes the log rows and bills them, mirrors the
batch's debits to Redis (with Redis holds), then answers with what changed (`Committed`); the worker applies that
to its own state (`after_commit`: reservations, the Redis debits the child could not mirror, autopay) on its event
loop. Row building, SQLite's parameter binding, the settle logic and the Redis commands hold the child's GIL, not
the worker's, so a flush no longer stalls requests (bench/RESULTS.md).

Frames, both ways: 12 bytes (sequence number, payload length, little-endian), then the payload. Worker to
child: the batch's lines. Child to worker: a msgpack `Reply`. The child ignores SIGINT and SIGTERM and exits when
its stdin closes, so the worker decides when it ends (after draining); if the worker dies, the child finishes
its batch and exits. A child that dies, answers out of step or times out is killed and started again on the
next batch; the batch is retried, and a retry of a batch that did commit bills nothing twice.

`EDGE_PROXY_LOG_WRITER=inline` runs the same step on the worker's event loop instead (`InlineWriter`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import struct
import sys
from collections.abc import Iterator

import msgspec

from ..affinity import unpin_writer, writer_env
from ..billing.engine import BillingEngine, Committed
from ..gc_settle import settle_gc
from ..metering.record import RequestRecord
from ..money import parse_usd
from ..settings import Settings
from ..store.db import open_database
from . import APPLICATION_NAME, SQLLogSink

log = logging.getLogger("edge_proxy.log_writer")
_HEAD = struct.Struct("<QI")
# Bytes of a batch's lines sent to the child per turn of the worker's event loop: the whole batch (200-250 KB
# at c=1) in one turn was joined twice and copied into the transport's buffer, ~0.3 ms a flush (bench/RESULTS.md)
_PIECE = 1 << 16
_decode_lines = msgspec.json.Decoder(RequestRecord).decode_lines  # a batch's lines in one call


class Reply(msgspec.Struct, array_like=True):
    error: str | None = None
    done: Committed | None = None
    refused: list[int] = []  # indices of the batch's records the store refuses (kept aside by the worker)


_encode_reply = msgspec.msgpack.Encoder().encode
_decode_reply = msgspec.msgpack.Decoder(Reply).decode


class WriterFailed(Exception):
    """The log writer process could not commit a batch (the store failed, or the process did)."""


def _refused(exc: BaseException) -> bool:
    """Whether the store refused the records themselves (they can never be written as they are), rather than
    being unavailable (locked, unreachable, restarting), which passes."""
    if isinstance(exc, (TypeError, ValueError)):
        return True
    sqlite3 = sys.modules.get("sqlite3")  # loaded if the store is SQLite (store/db.py)
    if sqlite3 is not None and isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError,
                                                sqlite3.IntegrityError, sqlite3.DataError)):
        return True
    sqlstate = getattr(exc, "sqlstate", None)  # asyncpg: data exceptions and integrity violations
    return isinstance(sqlstate, str) and sqlstate[:2] in ("22", "23")


async def commit_isolating(billing: BillingEngine, payload: bytes) -> tuple[Committed, list[int]]:
    """Bill and write a batch (journal lines, each ending in a newline) in one transaction. If the store refuses
    it for its data, the batch is split in halves, each its own transaction, down to the records the store
    refuses alone: the others are committed and the refused ones returned (their indices), so one bad record
    cannot hold up every record after it. When every record is refused the error is raised instead: then the
    fault is not in the records."""
    try:
        return await billing.commit_tx(_decode_lines(payload)), []
    except Exception as exc:
        lines = [line + b"\n" for line in payload.split(b"\n")[:-1]]
        if len(lines) == 1 or not _refused(exc):
            raise
        first = exc
    done, refused = Committed([], [], 0), list[int]()
    await _halves(billing, lines, 0, done, refused)
    if len(refused) == len(lines):
        raise first
    log.error("the log store refused %d of %d records (%s: %s); they are kept aside", len(refused), len(lines),
              type(first).__name__, first)
    return done, refused


async def _halves(billing: BillingEngine, lines: list[bytes], offset: int, done: Committed,
                  refused: list[int]) -> None:
    mid = len(lines) // 2
    for part, at in ((lines[:mid], offset), (lines[mid:], offset + mid)):
        try:
            got = await billing.commit_tx(_decode_lines(b"".join(part)))  # afresh: a failed try changed records
        except Exception as exc:
            if not _refused(exc):
                raise
            if len(part) == 1:
                refused.append(at)
            else:
                await _halves(billing, part, at, done, refused)
            continue
        done.consumed += got.consumed
        done.debits += got.debits
        done.fired += got.fired


def _pieces(lines: list[bytes]) -> Iterator[bytes]:
    """A batch's lines joined into pieces of about `_PIECE` bytes (whole lines), in order."""
    start = size = 0
    for end, line in enumerate(lines, 1):
        size += len(line)
        if size >= _PIECE:
            yield b"".join(lines[start:end])
            start, size = end, 0
    if start < len(lines):
        yield b"".join(lines[start:])


class WriterProcess:
    """The worker's side: starts the child, sends it batches, returns its `Committed` answers."""

    def __init__(self, settings: Settings) -> None:
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_PROXY_")}
        self._env.update(settings.to_env())
        self._proc: asyncio.subprocess.Process | None = None
        self._seq = 0
        self._lock = asyncio.Lock()
        self.restarts = 0

    async def start(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            if self._proc is not None:
                self.restarts += 1
                log.warning("the log writer process exited (%s); starting another", self._proc.returncode)
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge_proxy.log_sinks.writer_process", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env={**self._env, **writer_env()})  # a pinned worker's: off its CPU

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (EDGE_PROXY_PIN_WORKERS moves it off its worker's CPU)."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def commit(self, lines: list[bytes]) -> tuple[Committed, list[int]]:
        """Bill and write a batch of journal lines; returns what changed and the indices of refused records."""
        async with self._lock:
            await self.start()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            self._seq += 1
            try:
                proc.stdin.write(_HEAD.pack(self._seq, sum(map(len, lines))))
                for piece in _pieces(lines):  # a turn of the event loop each: requests are served in between
                    proc.stdin.write(piece)
                    await proc.stdin.drain()  # waits only while the child is behind
                    await asyncio.sleep(0)
                seq, size = _HEAD.unpack(await proc.stdout.readexactly(_HEAD.size))
                reply = _decode_reply(await proc.stdout.readexactly(size))
                if seq != self._seq:
                    raise WriterFailed(f"the log writer answered batch {seq} for batch {self._seq}")
            except BaseException:  # a dead child, a broken pipe, a timeout: start afresh with the next batch
                self._kill()
                raise
        if reply.error is not None or reply.done is None:
            raise WriterFailed(reply.error or "the log writer sent no result")
        return reply.done, reply.refused

    def _kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    async def close(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class InlineWriter:
    """The same step on the worker's own event loop (`EDGE_PROXY_LOG_WRITER=inline`)."""

    pid = None  # no process of its own

    def __init__(self, billing: BillingEngine) -> None:
        self.billing = billing

    async def start(self) -> None:
        pass

    async def commit(self, lines: list[bytes]) -> tuple[Committed, list[int]]:
        return await commit_isolating(self.billing, b"".join(lines))

    async def close(self) -> None:
        pass


# -- the child ---------------------------------------------------------------------------------------------------
class _Step:
    """The child's own connections and billing engine (prices are not needed: records arrive priced)."""

    def __init__(self, settings: Settings) -> None:
        # SQLite on this process's loop thread: the loop has nothing else to serve while a batch commits
        self.db = open_database(settings.database_url, APPLICATION_NAME, sqlite_on_loop=True)
        self.sink = SQLLogSink(self.db)
        self.redis = None
        redis_holds = None
        if settings.redis_url:  # spend-key counters are mirrored to Redis from the billing transaction
            from ..billing.holds import RedisHolds
            from ..store.redis_client import open_redis
            self.redis = open_redis(settings.redis_url, settings.redis_timeout)  # standalone, Cluster or Sentinel
            redis_holds = RedisHolds(self.redis, self.db, settings.region, settings.region_lease_ttl)
        self.billing = BillingEngine(self.db, self.sink, None, None,  # type: ignore[arg-type]
                                     byok_fee_nanos=parse_usd(settings.byok_fee, "EDGE_PROXY_BYOK_FEE"),
                                     redis_holds=redis_holds)

    async def commit(self, payload: bytes) -> Reply:
        try:
            await self.db.open()
            done, refused = await commit_isolating(self.billing, payload)
            if done.debits:  # Redis holds: mirrored from here; what Redis did not take, the worker retries
                done.debits = await self.billing.mirror(done.debits)
            return Reply(done=done, refused=refused)
        except Exception as exc:  # the worker retries; say why
            return Reply(error=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        await self.db.close()
        if self.redis is not None:
            await self.redis.aclose()


async def _serve(out: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    step = _Step(Settings.load())
    settled = False
    try:
        while True:
            try:
                seq, size = _HEAD.unpack(await reader.readexactly(_HEAD.size))
                payload = await reader.readexactly(size)
            except asyncio.IncompleteReadError:
                return  # the worker closed the pipe, or died
            body = _encode_reply(await step.commit(payload))
            _write_all(out, _HEAD.pack(seq, len(body)) + body)
            if not settled:  # its connections and statement caches are made: they live as long as it does
                settle_gc()
                settled = True
    finally:
        await step.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main() -> None:
    unpin_writer()  # EDGE_PROXY_PIN_WORKERS: off its worker's CPU
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker ends this process by closing its stdin
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out = os.dup(1)
    os.dup2(2, 1)  # a stray print goes to the log, never into the frames
    logging.basicConfig(level=logging.INFO, format="[edge-proxy log writer %(process)d] %(levelname)s %(message)s")
    import uvloop  # a dependency of the gateway (Granian's loop)
    uvloop.run(_serve(out))


if __name__ == "__main__":
    main()
