"""EDGE_PROXY_PIN_WORKERS: each worker on a CPU of its own, its log writer process on every other CPU it had.

Affinity belongs to a process, so each case runs in processes of its own: a pin made in this test process would
stay for the rest of the suite.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .gateway_process import ROOT, GatewayProcess, base_env

CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
pytestmark = pytest.mark.skipif(len(CPUS) < 2, reason="pinning needs at least 2 CPUs to choose from")

# A worker stand-in: pins itself as a worker does, says where each of its threads may run (a thread started before
# the pin, as Granian's are, included), then starts a log writer the way a worker does and says where it runs, and
# holds its CPU until its stdin closes.
WORKER = """
import json, os, subprocess, sys, threading
from edge_proxy import affinity
early = threading.Event()
threading.Thread(target=early.wait, daemon=True).start()
cpu = affinity.pin_worker(sys.argv[1])
threads = {t: open(f"/proc/self/task/{t}/status").read().split("Cpus_allowed_list:")[1].split()[0]
           for t in os.listdir("/proc/self/task")}
probe = "import os; from edge_proxy import affinity; affinity.unpin_writer(); print(sorted(os.sched_getaffinity(0)))"
def child(env):
    return json.loads(subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                                     check=True).stdout)
base = {k: v for k, v in os.environ.items() if k != affinity.WRITER_CPUS}
print(json.dumps({"cpu": cpu, "threads": sorted(set(threads.values())), "writer": child({**base,
      **affinity.writer_env()}), "inherited": child(base)}), flush=True)
sys.stdin.read()
early.set()
"""


def start_worker(lock_dir: Path) -> tuple[subprocess.Popen, dict]:
    p = subprocess.Popen([sys.executable, "-c", WORKER, str(lock_dir)], cwd=ROOT, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    return p, json.loads(p.stdout.readline())


def stop(p: subprocess.Popen) -> None:
    assert p.stdin is not None
    p.stdin.close()
    p.wait(10)


def test_each_worker_takes_a_free_cpu_and_its_writer_runs_on_every_other_cpu(tmp_path):
    workers = [start_worker(tmp_path) for _ in range(len(CPUS) + 1)]
    try:
        cpus = [info["cpu"] for _, info in workers]
        assert sorted(cpus[:len(CPUS)]) == CPUS  # one worker per CPU before any CPU takes a second
        assert cpus[-1] in CPUS  # one more than there are CPUs: a second round, not unpinned
        for _, info in workers:
            assert info["threads"] == [str(info["cpu"])]  # every thread, one started before the pin too
            assert info["inherited"] == [info["cpu"]]  # without its worker's word, a child keeps the pin...
            assert info["writer"] == [c for c in CPUS if c != info["cpu"]]  # ...which the log writer moves off
        # a worker that ends gives its CPU back: the next one takes it, not a second place on another CPU
        p, info = workers.pop(0)
        stop(p)
        workers.append(start_worker(tmp_path))
        assert workers[-1][1]["cpu"] == info["cpu"]
    finally:
        for p, _ in workers:
            stop(p)


def test_without_the_setting_workers_and_writers_stay_on_every_cpu_and_with_it_each_worker_has_one(tmp_path):
    for setting in ("0", "1"):
        env = base_env(tmp_path / f"pin{setting}.db", None, {"EDGE_PROXY_PIN_WORKERS": setting})
        gw = GatewayProcess(env, workers=2).start(tmp_path)
        try:
            expected = [CPUS, CPUS] if setting == "0" else [[CPUS[0]], [CPUS[1]]]
            deadline = time.monotonic() + 10
            while True:  # a worker pins itself at the end of its start, after starting its log writer, then moves it
                workers = _children(gw.proc.pid)
                pinned = sorted(_allowed(w) for w in workers)
                # each worker's log writer: where it may run, beside where its worker may
                placed = [(_allowed(w), _allowed(c)) for w in workers for c in _children(w)]
                other = [(mine, CPUS if setting == "0" else [c for c in CPUS if c not in mine]) for mine in pinned]
                if sorted(placed) == sorted(other) and pinned == expected or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert pinned == expected, gw.log()
            assert len(placed) == 2 and sorted(placed) == sorted(other), (placed, gw.log())
        finally:
            gw.stop()


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _allowed(pid: int) -> list[int]:
    return sorted(os.sched_getaffinity(pid))
