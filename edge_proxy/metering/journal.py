"""The per-worker journal: every request record is on local disk before it is queued, so a crash loses none.

One directory (`EDGE_PROXY_SPILL_DIR`) serves every worker of every gateway process on the machine. Each worker
appends to its own segment files, `journal-<store>-<worker>-<seq>.jnl` (`store_id`: which database), one line
per entry:
- a final record: the `RequestRecord` as a JSON object;
- an opened entry: an attempt about to be sent upstream, as a JSON array (`metering/opened.py`).
A line is appended by copying it into a shared memory mapping of the segment (no system call): the worker maps a
window of the segment (`_WINDOW`, 256 KiB) and moves it along as it fills. What a process stored through a shared
file mapping is in the page cache, exactly like what `os.write` puts there, and it outlives the process, so a
process crash needs no fsync. The disk space of a window is claimed before it is mapped, by writing zeros there
(`_allocate`), so a full disk shows as an OSError there, like a refused write, never as a SIGBUS on a store into
the mapping; the unwritten rest of a segment therefore reads as zero bytes, which readers ignore. With
`fsync=True` (`EDGE_PROXY_JOURNAL_FSYNC=1`) every line also reaches the disk before the call returns (`msync` of
its pages), for machine crashes, at a cost per line; with `sync_every` (`EDGE_PROXY_JOURNAL_SYNC_SECONDS`) a
thread puts what was written on disk that often (`fdatasync`, which writes a mapping's dirty pages too), which
bounds what a machine crash can lose at almost no cost to requests.

A worker holds an exclusive `flock` on every segment it has not deleted; the kernel drops a process's locks when
it dies, however it dies. So a segment that another process can lock belongs to a dead worker: `claim_dead()`
locks all of that worker's segments together, and its caller replays them (idempotent by request id) and deletes
them. A segment is deleted by its own worker once every final record in it is committed and every opened entry
in it has its final record journaled, or, for the backlog (segments whose records left memory while the store
was down), once it was replayed.
"""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import mmap
import os
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from .opened import Opened, decode_opened
from .record import RequestRecord

log = logging.getLogger("edge_proxy.journal")
_decode_record = msgspec.json.Decoder(RequestRecord).decode
_PREFIX, _SUFFIX = "journal-", ".jnl"
_LEGACY = "spill-"  # whole-file segments an older version wrote to the same directory; replayed the same way
_STALE_TMP = 60.0   # seconds after which an unlocked half-created segment is a crash's leftover
_WINDOW = 256 << 10  # bytes of a segment mapped at a time: the pages a worker dirtied through it count in its RSS,
                     # and claiming a window's space stalls the loop (~0.1 ms here); 1 MiB was no cheaper per line
_PAGE = mmap.ALLOCATIONGRANULARITY
_ZEROS = memoryview(bytes(64 << 10))


class Segment:
    __slots__ = ("path", "fd", "size", "allocated", "window", "window_at", "window_end", "synced", "pending",
                 "backlog", "closed")

    def __init__(self, path: Path, fd: int, backlog: bool) -> None:
        self.path = path
        self.fd = fd
        self.size = 0          # bytes written: the segment's entries end here, zero bytes follow
        self.allocated = 0     # bytes of the file claimed from the disk (zeros, then entries)
        self.window: mmap.mmap | None = None  # the mapped part of the file appended to, from window_at
        self.window_at = 0
        self.window_end = 0
        self.synced = 0        # bytes known to be on disk (sync_every)
        self.pending = 0       # final records not yet committed + opened entries without their final record
        self.backlog = backlog  # its records are not in memory: it is replayed from disk
        self.closed = False    # rotated: nothing more is appended

    def map(self, window: mmap.mmap, at: int) -> None:
        self.unmap()
        window.seek(self.size - at)
        self.window, self.window_at, self.window_end = window, at, at + len(window)

    def unmap(self) -> None:
        """Drop the window. A mapping holds the file open, and with it the segment's flock, until it is closed;
        what was stored through it stays in the page cache."""
        if self.window is not None:
            self.window.close()
            self.window, self.window_end = None, 0


class Claim:
    """A dead worker's segments, locked by this process until they are replayed (`done`) or given back."""

    def __init__(self, owner: str, segments: list[tuple[Path, int]]) -> None:
        self.owner = owner
        self.segments = segments

    @property
    def paths(self) -> list[Path]:
        return [path for path, _ in self.segments]

    def done(self) -> None:
        for path, fd in self.segments:
            path.unlink(missing_ok=True)  # before the lock goes, so no one claims it again
            os.close(fd)
        self.segments = []

    def release(self) -> None:
        for _, fd in self.segments:
            os.close(fd)
        self.segments = []


class Journal:
    def __init__(self, directory: str | os.PathLike[str], *, store: str = "local", segment_bytes: int = 16 << 20,
                 fsync: bool = False, sync_every: float = 0.0) -> None:
        self.path = Path(directory)
        self.store = store  # which database the records belong to (store_id): only its segments are replayed
        self.segment_bytes = segment_bytes
        self.window_bytes = min(_WINDOW, -(-segment_bytes // _PAGE) * _PAGE)  # mapped at a time
        self.fsync = fsync
        self.sync_every = sync_every  # > 0: fdatasync what was written, this often, off the event loop
        self.owner = f"{store}-{os.getpid()}x{os.urandom(3).hex()}"
        self.segments: list[Segment] = []  # this worker's, oldest first; the last one is appended to
        self.current: Segment | None = None
        self.parked = False  # the store is down: new segments belong to the backlog
        self.errors = 0
        self.refused = 0
        self._open: dict[str, tuple[Segment, bytes]] = {}  # request id -> where its opened entry is, and the entry
        self._seq = 0
        self._error_logged = 0.0

    def open(self) -> None:
        """Create the directory and the first segment; raises OSError when the directory is not writable."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._rotate()

    # -- the request path ----------------------------------------------------------------------------------
    def opened(self, request_id: str, line: bytes) -> None:
        seg = self._put(line)
        if seg is not None:
            seg.pending += 1
            self._open[request_id] = (seg, line)
            if seg.size >= self.segment_bytes:
                self._rotate_or_fail()

    def append(self, request_id: str, line: bytes) -> Segment | None:
        """Journal a final record; returns its segment, or None when the disk refused it (it is then in memory
        only, and its opened entry, if any, stays the journal's word on it)."""
        seg = self._put(line)
        if seg is None:
            return None
        seg.pending += 1
        entry = self._open.pop(request_id, None)
        if entry is not None:
            was = entry[0]
            was.pending -= 1
            if was.closed:
                self._maybe_delete(was)
        if seg.size >= self.segment_bytes:  # rotated only now, with the line counted: its segment stays
            self._rotate_or_fail()
        return seg

    def _put(self, line: bytes) -> Segment | None:
        """Copy one line into the current segment; the segment it went to, or None when the disk refused it."""
        seg = self.current
        n = len(line)
        try:
            if seg is None:
                seg = self._rotate()
            window = seg.window
            if window is None or seg.size + n > seg.window_end:
                window = self._slide(seg, n)
            window.write(line)  # a memory copy into the page cache, not a system call
            if self.fsync:
                start = (seg.size - seg.window_at) & -_PAGE  # msync takes whole pages
                window.flush(start, seg.size + n - seg.window_at - start)
        except OSError as exc:
            self._failed(exc)
            return None
        seg.size += n
        return seg

    def _slide(self, seg: Segment, n: int) -> mmap.mmap:
        """Map the segment from the page its end is in, with room for `n` more bytes: the next window."""
        at = seg.size & -_PAGE
        end = at + max(self.window_bytes, -(-(seg.size - at + n) // _PAGE) * _PAGE)
        if end > seg.allocated:
            _allocate(seg.fd, seg.allocated, end)  # from where the zeros end: never over written entries
            seg.allocated = end
        window = mmap.mmap(seg.fd, end - at, offset=at)
        seg.map(window, at)
        return window

    def _rotate_or_fail(self) -> None:
        try:
            self._rotate()
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.errors += 1
        if self.current is not None:
            self.current.closed = True
            self.current.unmap()
            self.current = None  # the next write starts a new segment
        now = time.monotonic()
        if now - self._error_logged > 10:
            self._error_logged = now
            log.error("journal write failed (%s: %s): records stay in memory only until the disk takes them",
                      type(exc).__name__, exc)

    # -- segments ------------------------------------------------------------------------------------------
    def _rotate(self) -> Segment:
        self._seq += 1
        name = f"{_PREFIX}{self.owner}-{self._seq:08d}{_SUFFIX}"
        tmp = self.path / f".{name}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        seg = Segment(self.path / name, fd, self.parked)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # locked before it has the name others look for
            self._slide(seg, 0)  # and its first window claimed from the disk: a full disk fails here
            os.rename(tmp, seg.path)
            if self.fsync:
                _fsync_dir(self.path)
        except OSError:
            seg.unmap()
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        old, self.current = self.current, seg
        self.segments.append(seg)
        if old is not None:
            old.closed = True
            old.unmap()
            self._maybe_delete(old)
        return seg

    def _maybe_delete(self, seg: Segment) -> None:
        if seg.closed and not seg.backlog and seg.pending <= 0:
            self.delete(seg)

    def delete(self, seg: Segment) -> None:
        seg.path.unlink(missing_ok=True)  # before the lock goes, so no one claims it
        seg.unmap()
        os.close(seg.fd)
        self.segments.remove(seg)
        if seg is self.current:
            self.current = None

    def committed(self, segments: Iterable[Segment | None]) -> None:
        """Final records of these segments (one item per record) are in the store."""
        for seg in segments:
            if seg is not None:
                seg.pending -= 1
        for seg in [s for s in self.segments if s.closed and not s.backlog and s.pending <= 0]:
            self.delete(seg)

    def park(self) -> None:
        """The store is down and the records leave memory: every segment so far, and each new one until
        `unpark`, belongs to the backlog, to be replayed from disk."""
        self.parked = True
        for seg in self.segments:
            seg.backlog = True

    def unpark(self) -> None:
        """The store answers again: records stay in memory from here on, in a new segment. Opened entries of
        attempts still in flight are written again there, so the backlog can go once replayed."""
        self.parked = False
        if self.current is not None and self.current.size == 0:
            self.current.backlog = False
        else:
            self._rotate_or_fail()
        for request_id, (_, line) in list(self._open.items()):
            self.opened(request_id, line)

    async def keep_synced(self) -> None:
        """Every `sync_every` seconds, put what was written since on disk, in a thread: a machine crash then
        loses at most that long of records. The descriptors are duplicated, so a segment deleted meanwhile
        cannot hand its number to another file."""
        while True:
            await asyncio.sleep(self.sync_every)
            dirty = [(seg, seg.size, os.dup(seg.fd)) for seg in self.segments if seg.size > seg.synced]
            if dirty:
                await asyncio.to_thread(_sync_all, [fd for _, _, fd in dirty])
                for seg, size, _ in dirty:
                    seg.synced = size

    def keep_refused(self, lines: list[bytes]) -> None:
        """Records the store refused (it can never take them as they are): kept in `refused-<worker>.jsonl`,
        never lost. After fixing the cause, renaming the file to `spill-<name>.jsonl` replays it."""
        self.refused += len(lines)
        path = self.path / f"refused-{self.owner}.jsonl"
        log.error("%d records the store refused are kept in %s", len(lines), path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"".join(lines))
            os.fsync(fd)
        finally:
            os.close(fd)

    def backlog(self) -> list[Segment]:
        return [seg for seg in self.segments if seg.backlog]

    def close(self) -> None:
        """At shutdown: delete what is fully committed, keep the rest (unlocked) for the next start."""
        for seg in list(self.segments):
            if not seg.backlog and seg.pending <= 0:
                self.delete(seg)
            else:
                seg.unmap()
                os.close(seg.fd)
                self.segments.remove(seg)
        self.current = None

    # -- dead workers --------------------------------------------------------------------------------------
    def claim_dead(self) -> list[Claim]:
        """Lock every dead worker's segments, each worker's as one claim. A worker with any segment still
        locked (alive, or being replayed by another process) is left alone."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        groups: dict[str, list[str]] = {}
        for name in names:
            if name.startswith(_PREFIX) and name.endswith(_SUFFIX):
                owner = name[len(_PREFIX):-len(_SUFFIX)].rsplit("-", 1)[0]
                if owner != self.owner and owner.split("-", 1)[0] == self.store:  # never another database's
                    groups.setdefault(owner, []).append(name)
            elif name.startswith(_LEGACY) and (name.endswith(".jsonl") or ".jsonl.replaying-" in name):
                groups[name] = [name]
            elif name.startswith("." + _PREFIX) and name.endswith(".tmp"):
                self._remove_stale_tmp(self.path / name)
        claims = []
        for owner, members in sorted(groups.items()):
            claim = self._lock_all(owner, sorted(members))
            if claim is not None:
                claims.append(claim)
        return claims

    def _lock_all(self, owner: str, names: list[str]) -> Claim | None:
        locked: list[tuple[Path, int]] = []
        for name in names:  # in sequence order, so two claimers of one worker meet at its first segment
            path = self.path / name
            try:
                fd = _try_lock(path)
            except BlockingIOError:
                Claim(owner, locked).release()
                return None
            if fd is None:
                continue
            if os.fstat(fd).st_nlink == 0:  # replayed and deleted between the listing and the lock
                os.close(fd)
                continue
            locked.append((path, fd))
        return Claim(owner, locked) if locked else None

    @staticmethod
    def _remove_stale_tmp(path: Path) -> None:
        try:
            fd = _try_lock(path)
        except BlockingIOError:
            return  # a live worker is creating it
        if fd is None:
            return
        try:
            if time.time() - os.fstat(fd).st_mtime > _STALE_TMP:
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def store_id(database_url: str) -> str:
    """A short name for the database a journal's records belong to: where it is, without credentials (so a
    password change does not orphan a journal), so that gateways of different databases can share a directory
    without replaying each other's records into the wrong one."""
    parts = urlsplit(database_url)
    where = f"{parts.scheme}://{parts.hostname or ''}:{parts.port or ''}{parts.path}"
    return hashlib.sha256(where.encode()).hexdigest()[:12]


def _try_lock(path: Path) -> int | None:
    """A descriptor holding the file's exclusive lock, or None when the file is gone. Raises BlockingIOError
    when another process holds the lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    return fd


# -- reading segments --------------------------------------------------------------------------------------
class Entries:
    """What a segment holds: final records (request id and line, in order) and opened entries."""

    __slots__ = ("finals", "opened", "bad")

    def __init__(self) -> None:
        self.finals: list[tuple[str, bytes]] = []
        self.opened: list[Opened] = []
        self.bad: list[bytes] = []

    def parse(self, lines: list[bytes]) -> None:
        for line in lines:
            if line[:1] == b"\0":  # a page that never reached the disk before a machine crash: what follows it
                line = line.lstrip(b"\0")  # may be a whole entry (a cut one cannot parse, and is kept aside)
            if not line.strip():
                continue
            try:
                if line[0] == 0x7B:  # {
                    self.finals.append((_decode_record(line).request_id, line + b"\n"))
                elif line[0] == 0x5B:  # [
                    self.opened.append(decode_opened(line))
                else:
                    raise msgspec.DecodeError("not a journal entry")
            except msgspec.DecodeError:
                self.bad.append(line)


def split_lines(data: bytes, where: Path) -> list[bytes]:
    """The whole lines of a segment. What follows the last newline is the segment's unwritten space (zero
    bytes), and before them, if anything, a write a crash tore: it is ignored. A segment an older version wrote
    (with `os.write`) has no zeros: it is read the same way."""
    lines = data.split(b"\n")
    torn = lines.pop().rstrip(b"\0")
    if torn:
        log.warning("%s ends in a torn line (%d bytes, a crash in the middle of a write): ignored", where, len(torn))
    return lines


def keep_bad(path: Path, bad: list[bytes]) -> None:
    """Lines that are no journal entry (a disk fault) are kept beside the segment, never replayed or lost."""
    log.error("%s: %d lines are not journal entries; kept in %s.bad", path, len(bad), path.name)
    with open(str(path) + ".bad", "ab") as out:
        out.write(b"".join(line + b"\n" for line in bad))


def read_head(path: Path, limit: int) -> bytes:
    """Up to `limit` bytes from the start of a segment, cut after its last whole line."""
    with open(path, "rb") as f:
        data = f.read(limit)
    return data[:data.rfind(b"\n") + 1]


def _allocate(fd: int, start: int, end: int) -> None:
    """Claim the disk space of a segment's bytes from `start` to `end` by writing zeros there, so that storing
    into them through a mapping cannot fail (a store the disk has no room for is a SIGBUS, which kills the
    worker). Raises OSError when the disk refuses. Zeros rather than `posix_fallocate`: a page of a fallocated
    extent is still "unwritten", and the first store into each such page then costs about as much as the
    `os.write` the mapping replaces (bench/journal_append.py). On a copy-on-write filesystem (btrfs, ZFS) a
    rewrite needs new space, so nothing claimed ahead holds there (README, *Metering*)."""
    while start < end:
        start += os.pwrite(fd, _ZEROS[:end - start], start)  # a short write (disk full) raises on the next turn


def _sync_all(fds: list[int]) -> None:
    try:
        for fd in fds:
            os.fdatasync(fd)
    finally:
        for fd in fds:
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
