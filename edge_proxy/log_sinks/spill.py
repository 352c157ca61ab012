"""The spill directory: where records wait, on local disk, when the log store is down or the queue is full.

Each spill is one segment file, written whole to a temporary name, fsynced, then renamed into place, so a
segment is either complete or absent. Segments are never appended to. A replayer claims a segment by renaming
it (atomic, so two workers never replay the same one), writes its records to the store (idempotent by request
id, so a replay that is interrupted and repeated never duplicates a record) and deletes it.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

from ..metering.record import RequestRecord, from_json_line, to_json_line

log = logging.getLogger("edge_proxy.spill")
_SEGMENT = ".jsonl"
_CLAIMED = ".replaying-"


class SpillDir:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._seq = 0

    def write(self, records: Iterable[RequestRecord]) -> Path:
        """Durably store records in a new segment; returns its path."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"spill-{os.getpid()}-{time.time_ns()}-{self._seq}"
        tmp = self.path / (name + ".tmp")
        data = b"".join(to_json_line(r) for r in records)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        final = self.path / (name + _SEGMENT)
        os.rename(tmp, final)
        _fsync_dir(self.path)
        return final

    def claim(self) -> list[Path]:
        """Segments this process may replay now: new ones, and ones a dead process had claimed."""
        if not self.path.is_dir():
            return []
        claimed = []
        me = os.getpid()
        for entry in sorted(self.path.iterdir()):
            name = entry.name
            if name.endswith(_SEGMENT):
                pass
            elif _CLAIMED in name and not _alive(int(name.rsplit("-", 1)[1])):
                pass
            else:
                continue
            target = self.path / f"{name.split(_SEGMENT)[0]}{_SEGMENT}{_CLAIMED}{me}"
            try:
                os.rename(entry, target)
            except FileNotFoundError:
                continue  # another worker claimed it first
            claimed.append(target)
        return claimed

    @staticmethod
    def read(segment: Path) -> list[RequestRecord]:
        records = []
        for n, line in enumerate(segment.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(from_json_line(line))
            except msgspec.DecodeError:
                log.error("spill segment %s line %d is not a request record; kept in %s.bad", segment, n, segment)
                with open(str(segment) + ".bad", "ab") as bad:
                    bad.write(line + b"\n")
        return records

    @staticmethod
    def done(segment: Path) -> None:
        segment.unlink(missing_ok=True)

    def release(self, segment: Path) -> None:
        """Give a claimed segment back (the store failed mid-replay); it is replayed later."""
        base = segment.name.split(_CLAIMED)[0]
        os.rename(segment, self.path / base)

    def pending(self) -> int:
        if not self.path.is_dir():
            return 0
        return sum(1 for e in self.path.iterdir() if e.name.endswith(_SEGMENT) or _CLAIMED in e.name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
