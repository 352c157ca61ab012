"""One CPU per worker (`EDGE_PROXY_PIN_WORKERS=1`), with each worker's log writer process on the other CPUs.

A trade of throughput for latency, off by default. A pinned worker is not moved between cores when its log writer
process wakes, and its event loop and Granian's threads hand each request over on one core. Its log writer runs
on every CPU of the worker's set but the worker's own, so a flush never takes the worker's core. On 2 cores
(bench/RESULTS.md, "Fourth session on issue 17" and "Fifth session") pinning cut the c=1 p50 through the gateway by
~0.05 ms and its p99 by ~0.3-0.5 ms (the bare forwarder pinned the same way gains about as much, so what the
gateway adds over forwarding stays as it was) and the slow requests that log flushes add at c=1 by more than half;
with other load on the cores, keeping the writer off the worker's core took those from 6-13 per 1000 to 0-5 (on a
quiet machine both placements left ~3 per 1000). At saturation a pinned worker did 10-18 % fewer requests per
second: its Granian threads then share its one core. On a host whose cores other programs also need,
a pinned worker cannot move away from them either; with as many workers as CPUs, each writer runs on the other
workers' CPUs.

Each worker claims a CPU of the set it may run on (`os.sched_getaffinity`) that no other worker of this gateway
holds, by an exclusive lock on a file per CPU in the spill directory. The lock goes with the process, however it
ends, so a worker that Granian starts again takes the freed CPU. With more workers than CPUs, a second round of
locks puts a second worker on each CPU, and so on. The log writer process, started before its worker pins itself,
is moved off the worker's CPU then (`place_writer`); one started later inherits the worker's pin and moves itself
at start (`unpin_writer`), to the CPU set the worker passes in its environment.
"""
from __future__ import annotations

import fcntl
import logging
import os

log = logging.getLogger("edge_proxy")
WRITER_CPUS = "EDGE_PROXY_WRITER_CPUS"  # the log writer's CPUs: its worker's set before the pin, less the worker's
_ROUNDS = 64  # workers per CPU at most; beyond that a worker is left unpinned
_held: list[int] = []  # the lock files' descriptors: open for the worker's life
_writer_cpus: str | None = None  # the CPUs for this worker's log writer, as WRITER_CPUS says them


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
            _writer_cpus = ",".join(str(c) for c in allowed if c != cpu)  # 2 or more allowed: never empty
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
    """What a pinned worker adds to its log writer's environment, so that the writer runs on the other CPUs."""
    return {WRITER_CPUS: _writer_cpus} if _writer_cpus is not None else {}


def place_writer(pid: int | None) -> None:
    """Move a log writer process started before its worker pinned itself (every thread of it) to the CPUs
    `writer_env` names; nothing when the worker is not pinned or the writer is gone."""
    if _writer_cpus is None or pid is None:
        return
    cpus = {int(c) for c in _writer_cpus.split(",")}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:  # it ended meanwhile: the next one starts with writer_env
        return
    for tid in tids:
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            pass


def unpin_writer() -> None:
    """In a log writer process started by a pinned worker: run on the CPUs the worker names (not its own)."""
    cpus = os.environ.get(WRITER_CPUS)
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
