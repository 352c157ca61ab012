"""Where a worker's CPU goes per request at saturation, thread by thread and library by library, with Linux `perf`:
the gateway's worker beside the bare forwarder's (and, with --spin, bare forwarders that burn N us of Python per
request on top of forwarding), each under the same wrk load (c=32, nginx upstream), one after the other.

    apt-get install linux-perf nginx-light wrk      # not test dependencies
    .venv/bin/python bench/perf_threads.py [--seconds 6] [--spin 20,40] [--credential token]

For each server it prints requests/s and, per thread (the Python thread that runs the event loop, and Granian's
Rust runtime threads), microseconds of CPU per request: all of it, then by shared object (libpython is the
interpreter running Python code, `[kernel.kallsyms]` the kernel, `_granian` Granian's Rust side, `_core` msgspec),
from perf's cpu-clock samples (`perf record -F 1999 -p <worker>`): samples / 1999 / seconds / (requests/s).

What it answers: how much of the gateway's extra CPU per request is its own Python, and how much is kernel and
Granian work that follows from serving fewer requests per second (fewer requests per wake-up and per system
call). A bare forwarder burning N us of Python per request (`BARE_SPIN_US`, bench/bare_forwarder.py) moves those
the same way, so a gateway whose kernel and Granian figures match the spinning forwarder's at the same req/s adds
nothing there but its Python. Sampling adds its own cost (a few %), the same on each side. Loopback only; each
wrk run stops by itself; everything started is stopped at the end.
"""
from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402
import _load  # noqa: E402
import bare_forwarder  # noqa: E402

HZ = 1999


def per_thread(data: Path) -> dict[str, collections.Counter[str]]:
    """Samples per thread id and shared object (the sampled frame's, not its callers')."""
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "tid,ip,sym,dso"], capture_output=True, text=True,
                         timeout=600).stdout
    threads: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    tid, first = None, False
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line.startswith("\t"):  # a sample's head: its thread id (padded: it may start with a space)
            tid, first = line.split()[0], True
            continue
        if tid is None or not first:
            continue
        first = False  # the frame the sample was taken in; the rest of the stack is its callers
        threads[tid][line.split()[-1].strip("()").rsplit("/", 1)[-1]] += 1
    return threads


def profile(name: str, pid: int, port: int, path: str, auth: str, seconds: float, tmp: Path) -> None:
    script = _load.wrk_script(tmp / f"wrk-{name}.lua", auth, h.PLAIN_BODY)
    wrk = subprocess.Popen(["wrk", "-t1", "-c32", f"-d{seconds + 3:.0f}s", "-s", str(script),
                            f"http://{h.HOST}:{port}{path}"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)  # past the connections' start
    data = tmp / f"{name}.data"
    subprocess.run(["perf", "record", "-q", "-F", str(HZ), "-g", "-p", str(pid), "-o", str(data), "--", "sleep",
                    str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 60)
    report = wrk.communicate(timeout=seconds + 60)[0]
    rps = float(next(line for line in report.splitlines() if "Requests/sec" in line).split()[-1])
    threads = per_thread(data)

    def us(n: int) -> float:
        return n / HZ / seconds / rps * 1e6

    print(f"== {name}: {rps:,.0f} req/s; all threads {us(sum(sum(c.values()) for c in threads.values())):.1f} "
          "us of CPU per request", flush=True)
    for tid, counts in sorted(threads.items(), key=lambda kv: -sum(kv[1].values()))[:3]:
        parts = ", ".join(f"{dso} {us(n):.1f}" for dso, n in counts.most_common(6) if us(n) >= 0.5)
        print(f"   thread {tid}: {us(sum(counts.values())):.1f} us ({parts})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0, help="perf's sampling time per server (default 6)")
    ap.add_argument("--spin", default="", help="comma-separated us of Python per request for extra bare runs")
    ap.add_argument("--credential", choices=["secret", "token"], default="secret")
    args = ap.parse_args()
    for tool in ("perf", "wrk"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install linux-perf wrk)")
    nginx = h.ensure_tool("nginx", ["nginx-light", "nginx"], False)[0]
    if nginx is None:
        raise SystemExit("nginx is not installed (apt-get install nginx-light)")
    tmp = Path(tempfile.mkdtemp(prefix="perf_threads."))
    h.snapshot_tree(tmp)
    procs: list[h.Proc] = []
    try:
        up, up_port = h.start_nginx(nginx, tmp)
        procs.append(up)
        env = h.gateway_env(tmp / "bench.db", f"http://{h.HOST}:{up_port}/v1")
        auth = h.create_merchant(env)["secret_key"]
        if args.credential == "token":
            customer = h.create_customer(env, auth)
            auth = h.create_token(env, auth, customer, h.create_meter(env, auth, "bench-meter"))
        gw = h.start_gateway(tmp, env)
        procs.append(gw.proc)
        profile("gateway", gw.workers[0], gw.port, h.GATEWAY_PATH, auth, args.seconds, tmp)
        gw.proc.stop()
        for spin in ["0", *[s.strip() for s in args.spin.split(",") if s.strip()]]:
            bare, port = bare_forwarder.start(tmp, up_port, spin_us=float(spin))
            procs.append(bare)
            time.sleep(1)
            name = "bare forwarder" if spin == "0" else f"bare forwarder + {spin} us of Python"
            profile(name, h.children(bare.pid)[0], port, h.UPSTREAM_PATH, h.PROVIDER_KEY, args.seconds, tmp)
            bare.stop()
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
