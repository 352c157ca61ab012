"""One CPU per worker (`EDGE_PROXY_PIN_WORKERS=1`), with each worker's log writer process left free.

A trade of throughput for latency, off by default. A pinned worker is not moved between cores when its log writer
process wakes, and its event loop and Granian's threads hand each request over on one core. On 2 cores
(bench/RESULTS.md, "Fourth session on issue 17") it cut the slow requests each log flush adds at c=1 by more than
half, the c=1 p50 through the gateway by ~0.05 ms and its p99 by ~0.3-0.5 ms; the bare forwarder pinned the same
way gains about as much, so what the gateway adds over forwarding stays as it was. At saturation a pinned worker
did 10-18 % fewer requests per second: its Granian threads then share its one core. On a host whose cores other
programs also need, a pinned worker cannot move away from them either.

Each worker claims a CPU of the set it may run on (`os.sched_getaffinity`) that no other worker of this gateway
holds, by an exclusive lock on a file per CPU in the spill directory. The lock goes with the process, however it
ends, so a worker that Granian starts again takes the freed CPU. With more workers than CPUs, a second round of
locks puts a second worker on each CPU, and so on. The log writer process inherits its worker's pin; it undoes it
at start (`unpin_writer`), from the CPU set its worker had before, which the worker passes in its environment.
"""
from __future__ import annotations

import fcntl
import logging
import os

log = logging.getLogger("edge_proxy")
WRITER_CPUS = "EDGE_PROXY_WRITER_CPUS"  # the log writer's CPUs: its worker's set before the worker pinned itself
_ROUNDS = 64  # workers per CPU at most; beyond that a worker is left unpinned
_held: list[int] = []  # the lock files' descriptors: open for the worker's life
_writer_cpus: str | None = None  # this worker's CPU set before it pinned itself, as WRITER_CPUS says it


def pin_worker(lock_dir: str) -> int | None:
    """Pin every thread of this process to one CPU that no other worker holds; that CPU, or None when there is
    only one CPU to run on (nothing to gain) or every slot is taken."""
    global _writer_cpus
    if not hasattr(os, "sched_setaffinity"):  # Linux only
        log.warning("EDGE_PROXY_PIN_WORKERS: this system cannot pin a process to a CPU; the worker is not pinned")
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    for slot in range(_ROUNDS):
        for cpu in allowed:
            fd = os.open(os.path.join(lock_dir, f"worker-cpu-{cpu}.{slot}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another worker's CPU
                os.close(fd)
                continue
            _held.append(fd)
            _writer_cpus = ",".join(map(str, allowed))
            for tid in os.listdir("/proc/self/task"):  # Granian's threads too: they serve the same requests
                try:
                    os.sched_setaffinity(int(tid), {cpu})
                except ProcessLookupError:  # a thread that ended meanwhile
                    pass
            return cpu
    log.warning("EDGE_PROXY_PIN_WORKERS: %d workers already hold each of %d CPUs; this one is not pinned", _ROUNDS,
                len(allowed))
    return None


def writer_env() -> dict[str, str]:
    """What a pinned worker adds to its log writer's environment, so that the writer runs on every CPU."""
    return {WRITER_CPUS: _writer_cpus} if _writer_cpus is not None else {}


def unpin_writer() -> None:
    """In a log writer process: run on the CPUs its worker had before pinning itself (when it did)."""
    cpus = os.environ.get(WRITER_CPUS)
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
