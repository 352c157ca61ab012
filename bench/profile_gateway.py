"""Profiles the gateway worker under load with py-spy, and summarises where the time goes.

    .venv/bin/pip install py-spy          # not a test dependency
    .venv/bin/python bench/profile_gateway.py [--seconds 10] [--stream] [--native]

Starts the upstream (nginx when installed, else bench/fast_upstream.py; --stream always uses the fast upstream,
which streams) and the gateway (1 worker) on 127.0.0.1, drives it at concurrency 32 with wrk (or the Python load
generators), and while that runs samples the worker process with py-spy (100 Hz, on-CPU samples only) twice:
  * bench/out/profile.svg        the flame graph, for a person;
  * bench/out/profile.txt        the same kind of samples as collapsed stacks, for this summary;
  * bench/out/profile_top.txt    top functions by self samples and by inclusive samples (% of all samples).
With --stream the names get a _stream suffix, with --native a _native one. --native adds C/Rust frames, but must
pause the worker for each sample (ptrace), which slows it and over-counts system calls: read it for the shape only.
The load stops by itself (wrk -d, bounded Python load generators); everything started is stopped at the end.
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402
import _load  # noqa: E402

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def short_file(path: str) -> str:
    for marker in ("/site-packages/", "/edge_proxy/", "/lib/python3"):
        i = path.find(marker)
        if i >= 0:
            return ("edge_proxy/" if marker == "/edge_proxy/" else "") + path[i + len(marker):]
    return path


def frame_key(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    return f"{m.group('func')} ({short_file(m.group('file'))})"


def _counts(stacks: list[tuple[list[str], int]], top: int) -> dict:
    self_c: collections.Counter[str] = collections.Counter()
    incl_c: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, n in stacks:
        total += n
        self_c[frames[-1]] += n
        for f in set(frames):
            incl_c[f] += n
    pc = lambda c: round(100.0 * c / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "self": [{"function": f, "samples": c, "pct": pc(c)} for f, c in self_c.most_common(top)],
        "inclusive": [{"function": f, "samples": c, "pct": pc(c)} for f, c in incl_c.most_common(top)],
    }


def summarise(collapsed: Path, top: int = 30) -> dict:
    """Self and inclusive samples per function, over all threads and over the thread that runs the event loop
    (py-spy --threads puts "thread (tid): name" first)."""
    stacks: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        raw = stack.split(";")
        thread = raw[0] if raw[0].startswith("thread ") else "?"
        frames = [frame_key(f) for f in raw if f and not f.startswith(("thread ", "process "))]
        stacks[thread].append((frames or ["(no Python frame: native code only)"], int(n)))
    per_thread = {t: sum(n for _, n in v) for t, v in stacks.items()}
    main = max((t for t in stacks if "MainThread" in t), key=lambda t: per_thread[t], default=None)
    out = _counts([s for v in stacks.values() for s in v], top)
    out["threads"] = dict(sorted(per_thread.items(), key=lambda kv: -kv[1]))
    if main is not None:
        out["main_thread"] = {"thread": main, **_counts(stacks[main], top)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each py-spy recording (default 10)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--stream", action="store_true", help="profile SSE streams instead of plain JSON requests")
    ap.add_argument("--native", action="store_true", help="py-spy --native (C and Rust frames too)")
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--bare", action="store_true",
                    help="profile the bare Granian forwarder (bench/bare_forwarder.py) instead, to compare")
    ap.add_argument("--out-dir", default=str(h.BENCH / "out"))
    args = ap.parse_args()

    py_spy = shutil.which("py-spy") or str(Path(h.PYTHON).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    nginx = None if args.stream else h.ensure_tool("nginx", ["nginx-light", "nginx"], False)[0]
    wrk = h.ensure_tool("wrk", ["wrk"], False)[0]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ("_bare" if args.bare else "") + ("_stream" if args.stream else "") + ("_native" if args.native else "")
    tmp = Path(tempfile.mkdtemp(prefix="edge-profile-"))
    h.snapshot_tree(tmp)
    procs: list[h.Proc] = []
    load_seconds = 2 * args.seconds + 6
    try:
        if nginx:
            up, up_port = h.start_nginx(nginx, tmp)
            upstream = "nginx"
        else:
            up, up_port = h.start_fast_upstream(tmp, max_seconds=load_seconds + 120)
            upstream = "fast_upstream"
        procs.append(up)
        env = h.gateway_env(tmp / "bench.db", f"http://{h.HOST}:{up_port}/v1")
        auth = h.create_merchant(env)["secret_key"]
        if args.bare:
            import bare_forwarder
            proc, port = bare_forwarder.start(tmp, up_port)
            procs.append(proc)
            deadline = time.monotonic() + 20
            while not (kids := h.children(proc.popen.pid)) and time.monotonic() < deadline:
                time.sleep(0.1)
            worker = kids[0]
        else:
            gw = h.start_gateway(tmp, env)
            procs.append(gw.proc)
            worker, port = gw.workers[0], gw.port
        body = h.STREAM_BODY if args.stream else h.PLAIN_BODY
        h.log(f"load: c={args.concurrency} for {load_seconds:.0f}s through the gateway (upstream {upstream}), "
              f"worker pid {worker}")
        load_result: dict = {}

        def load() -> None:
            if wrk:
                script = _load.wrk_script(tmp / "profile.lua", auth, body)
                load_result.update(_load.run_wrk(wrk, script, port, h.GATEWAY_PATH, load_seconds, args.concurrency))
            else:
                load_result.update(_load.run_python_load(port, h.GATEWAY_PATH, auth, body, load_seconds,
                                                     args.concurrency))
        t = threading.Thread(target=load, daemon=True)
        t.start()
        time.sleep(2.0)
        base = [py_spy, "record", "--pid", str(worker), "--rate", str(args.rate), "--duration",
                str(int(args.seconds)), "--threads"]
        # --nonblocking does not pause the worker to sample (less distortion), but cannot unwind native frames
        base.append("--native" if args.native else "--nonblocking")
        svg, txt = out_dir / f"profile{suffix}.svg", out_dir / f"profile{suffix}.txt"
        for fmt, path in (("flamegraph", svg), ("raw", txt)):
            h.log(f"py-spy record --format {fmt} for {args.seconds:g}s -> {path}")
            r = subprocess.run([*base, "--format", fmt, "-o", str(path)], capture_output=True, text=True,
                               timeout=args.seconds + 60)
            if r.returncode != 0:
                print(f"py-spy failed ({r.returncode}): {r.stderr.strip()}", file=sys.stderr)
                return 1
        dump = subprocess.run([py_spy, "dump", "--pid", str(worker)], capture_output=True, text=True, timeout=30)
        t.join(load_seconds + 60)
        summary = summarise(txt)
        summary.update({"upstream": upstream, "stream": args.stream, "concurrency": args.concurrency,
                        "load": {k: load_result.get(k) for k in ("rps", "loadgen", "errors")},
                        "py_spy": " ".join(base[1:]) + " --format raw", "threads_seen_by_py_spy": dump.stdout})
        (out_dir / f"profile_top{suffix}.json").write_text(json.dumps(summary, indent=2) + "\n")
        lines = [f"py-spy {'--native ' if args.native else ''}, worker pid {worker}, {summary['samples']} samples, "
                 f"load {summary['load']}", "", "samples per thread:"]
        lines += [f"  {n:>6}  {t}" for t, n in summary["threads"].items()]
        sections = [("all threads", summary)]
        if "main_thread" in summary:
            sections.insert(0, (f"the event-loop thread, {summary['main_thread']['thread']}", summary["main_thread"]))
        for title, part in sections:
            lines += ["", f"[{title}] top by self samples (% of its {part['samples']} samples):"]
            lines += [f"  {e['pct']:5.1f}%  {e['function']}" for e in part["self"]]
            lines += ["", f"[{title}] top by inclusive samples (% of samples with the function on the stack):"]
            lines += [f"  {e['pct']:5.1f}%  {e['function']}" for e in part["inclusive"]]
        text = "\n".join(lines) + "\n"
        (out_dir / f"profile_top{suffix}.txt").write_text(text)
        print(text)
        print(f"wrote {svg}, {txt}, {out_dir / f'profile_top{suffix}.txt'}")
    finally:
        for p in reversed(procs):
            p.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
