"""What journaling a request costs the event loop: its opened entry and its final record, appended to a segment.

Two tables. "ways" times one line appended the three ways a worker could: `os.write` to a file opened O_APPEND
(the journal before the mapping), and a copy into a shared mapping whose window's space was claimed by
`posix_fallocate` or by writing zeros (what `metering/journal.py` does: the first store into each page of a
fallocated, still unwritten extent costs nearly a system call). The ways alternate round by round, so all see
the same machine noise; it prints microseconds per line (min / median / max over the rounds). "journal" times
`Journal.opened` + `Journal.append` per request, the module as this checkout has it, and the worker's resident
memory (VmRSS, and RssFile: file pages mapped) before and after.

    .venv/bin/python bench/journal_append.py [--lines 50000] [--rounds 7] [--journal-only]
"""
from __future__ import annotations

import argparse
import mmap
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_proxy.metering.journal import Journal  # noqa: E402

LINE = b'{"request_id":"req_' + b"x" * 560 + b'"}\n'  # about a final record's size
OPENED = b'["req_' + b"y" * 280 + b'"]\n'            # about an opened entry's size
WINDOW = 256 << 10  # as metering/journal.py's _WINDOW
ZEROS = bytes(64 << 10)


def by_write(path: str, n: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for _ in range(n):
        os.write(fd, LINE)
    os.close(fd)


def by_mapping(claim: Callable[[int, int, int], None]) -> Callable[[str, int], None]:
    def append(path: str, n: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        size = end = 0
        window: mmap.mmap | None = None
        for _ in range(n):
            if window is None or size + len(LINE) > end:
                at = size - size % mmap.PAGESIZE
                claim(fd, end, at + WINDOW)
                if window is not None:
                    window.close()
                window, end = mmap.mmap(fd, WINDOW, offset=at), at + WINDOW
                window.seek(size - at)
            window.write(LINE)
            size += len(LINE)
        if window is not None:
            window.close()
        os.close(fd)
    return append


def fallocate(fd: int, start: int, end: int) -> None:
    os.posix_fallocate(fd, start, end - start)


def zeros(fd: int, start: int, end: int) -> None:
    while start < end:
        start += os.pwrite(fd, ZEROS[:end - start], start)


def ways(lines: int, rounds: int) -> None:
    tried = {"os.write": by_write, "mapping, fallocate": by_mapping(fallocate), "mapping, zeros": by_mapping(zeros)}
    times: dict[str, list[float]] = {name: [] for name in tried}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, append in tried.items():
                path = f"{tmp}/{r}-{name}"
                started = time.perf_counter()
                append(path, lines)
                times[name].append((time.perf_counter() - started) / lines * 1e6)
                os.unlink(path)
    print(f"one line of {len(LINE)} bytes, us (min / median / max of {rounds} rounds of {lines}):")
    for name, t in times.items():
        print(f"  {name:20} {min(t):6.2f} {statistics.median(t):6.2f} {max(t):6.2f}")


def memory() -> dict[str, int]:
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f) if k in ("VmRSS", "RssFile")}


def journal(requests: int, rounds: int) -> None:
    times = []
    before = memory()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            j = Journal(f"{tmp}/{r}")
            j.open()
            started = time.perf_counter()
            for i in range(requests):
                rid = f"req_{i}"
                j.opened(rid, OPENED)
                j.append(rid, LINE)
            times.append((time.perf_counter() - started) / requests * 1e6)
            after = memory()
            j.close()
    print(f"Journal.opened + Journal.append per request, us (min / median / max of {rounds} rounds of {requests}):"
          f" {min(times):.2f} {statistics.median(times):.2f} {max(times):.2f}")
    print(f"  memory, kB: before {before}, after the last round's requests {after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--journal-only", action="store_true", help="skip the ways table")
    args = parser.parse_args()
    if not args.journal_only:
        ways(args.lines, args.rounds)
    journal(args.lines, args.rounds)


if __name__ == "__main__":
    main()
