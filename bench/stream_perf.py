"""Where each relay's worker CPU goes per relayed chunk of a long SSE stream, by thread and shared object, with perf.

bench/stream_relay.py times the gateway's worker against the bare forwarder's per relayed chunk; callgrind
(bench/stream_instructions.py) counts the Python side in-process, without Granian and the kernel. This samples
the real workers instead: the same upstream (bench/fast_upstream.py, one event per ms), gateway (1 worker) and
bare forwarder as stream_relay.py, then `--rounds` alternated rounds, each a block of `--streams` streams through
each relay under `perf record -F 4999 -e cpu-clock -g -p <worker>`. It prints, for each relay, microseconds of
CPU per relayed chunk over all the rounds: all threads, then the event loop's thread and Granian's Rust threads,
by shared object (libpython is the interpreter, `[kernel.kallsyms]` the kernel, `_granian` Granian's Rust side,
`loop.cpython` uvloop, `_usage_scan_c` the gateway's usage scan), and the gateway minus the bare forwarder. The
gateway's clock-driven idle work (metrics publishing, key-event polls) is in its figures, as in stream_relay.py's.

    apt-get install linux-perf          # not a test dependency
    .venv/bin/python bench/stream_perf.py [--rounds 6] [--streams 2] [--events 1000] [--hz 4999]

Sampling adds a few % to both. Loopback only; everything started is stopped at the end.
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402
from perf_threads import per_thread  # noqa: E402
from stream_relay import start_relays, streams  # noqa: E402


def sampled_block(pid: int, port: int, path: str, auth: str, n: int, data: Path, hz: int) -> tuple[dict, float]:
    """n streams through one relay under perf: its samples per thread and shared object, and the chunks relayed."""
    perf = subprocess.Popen(["perf", "record", "-q", "-F", str(hz), "-e", "cpu-clock", "-g", "-p", str(pid),
                             "-o", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # perf attached
    try:
        _, _, chunks = uvloop.run(streams(port, path, auth, n))
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=60)
    return per_thread(data), chunks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--streams", type=int, default=2, help="streams per block (default 2)")
    ap.add_argument("--rounds", type=int, default=6, help="rounds of one gateway and one bare block (default 6)")
    ap.add_argument("--hz", type=int, default=4999, help="perf's sampling frequency (default 4999)")
    ap.add_argument("--top", type=int, default=8, help="shared objects listed per thread kind (default 8)")
    args = ap.parse_args()
    if not shutil.which("perf"):
        raise SystemExit("perf is not installed (apt-get install linux-perf)")
    tmp = Path(tempfile.mkdtemp(prefix="edge-stream-perf-"))
    procs: list[h.Proc] = []
    # relay -> thread kind ("loop" or "rust") -> shared object -> samples; and chunks relayed
    samples: dict[str, dict[str, collections.Counter[str]]] = {
        r: collections.defaultdict(collections.Counter) for r in ("gateway", "bare")}
    chunks = {"gateway": 0.0, "bare": 0.0}
    try:
        gateway, plain = start_relays(tmp, procs, args.events, 1.0, {})
        relays = {"gateway": gateway, "bare": plain}
        for _pid, port, path, key in relays.values():  # warm-up
            uvloop.run(streams(port, path, key, 2))
        load = [round(x, 2) for x in os.getloadavg()]
        for i in range(args.rounds):
            h.log(f"round {i + 1}/{args.rounds}")
            for name in (("gateway", "bare") if i % 2 == 0 else ("bare", "gateway")):
                pid, port, path, key = relays[name]
                threads, n = sampled_block(pid, port, path, key, args.streams, tmp / f"{name}-{i}.data",
                                              args.hz)
                chunks[name] += n
                for tid, counts in threads.items():
                    samples[name]["loop" if int(tid) == pid else "rust"].update(counts)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def us(relay: str, n: float) -> float:
        return n / args.hz / chunks[relay] * 1e6

    print(f"{args.rounds} rounds x {args.streams} streams of {args.events} events each way; load average {load} at "
          f"the start, {[round(x, 2) for x in os.getloadavg()]} at the end; chunks relayed: gateway "
          f"{chunks['gateway']:.0f}, bare {chunks['bare']:.0f}")
    total = {r: sum(sum(c.values()) for c in samples[r].values()) for r in samples}
    print(f"us of worker CPU per relayed chunk: gateway {us('gateway', total['gateway']):.2f}, bare "
          f"{us('bare', total['bare']):.2f}, gateway / bare "
          f"{us('gateway', total['gateway']) / us('bare', total['bare']):.3f}")
    for kind in ("loop", "rust"):
        g, b = samples["gateway"][kind], samples["bare"][kind]
        print(f"  {kind} thread{'s' if kind == 'rust' else ''}: gateway {us('gateway', sum(g.values())):.2f}, "
              f"bare {us('bare', sum(b.values())):.2f}")
        dsos = sorted(g.keys() | b.keys(), key=lambda d: -(us("gateway", g[d]) + us("bare", b[d])))[:args.top]
        for dso in dsos:
            print(f"    {dso[:40]:<40} gateway {us('gateway', g[dso]):6.2f}  bare {us('bare', b[dso]):6.2f}  "
                  f"difference {us('gateway', g[dso]) - us('bare', b[dso]):+6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
