"""Instructions per request of the gateway's own request path: a figure that a busy or slower machine does not move.

Timings on a shared 2-core machine move by 30-50 % between identical runs, which hides a 5 % change. This runs
`bench_request_path.py --only-requests` (the app in-process, network stubbed: auth, plan, reservation, headers,
relay, record, journal) under valgrind's callgrind at two request counts and divides the difference by the extra
requests, so start-up cancels out. It does that for the compiled build and for the pure-Python twins
(`EDGE_PROXY_PURE_PYTHON=1`), and with --top the C functions that take the most instructions per request
(callgrind sees C and Cython frames; cProfile, bench/profile_stages.py, sees the Python ones).

    apt-get install valgrind          # not a test dependency
    .venv/bin/python bench/instructions.py [--requests 3000] [--top 25] [--builds compiled,pure] [--credential token]

Instructions are not time (a cache miss or a system call costs more than its count), so read them beside the
timed benchmarks, not instead of them. Work that runs by the clock would count more the slower valgrind runs (on a
busy machine, two runs of one tree were 5 % apart), so the key-event poll and the metrics publisher's ticks are
stopped for the run; the publisher's work per record is still counted, by a publish every 100 requests. Lease
top-ups, which requests start, are counted. About 30 s plus 2-3 s per 100 requests.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
_TOTAL = re.compile(r"Collected : (\d+)")
_LINE = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(.*?)(?: \[[^\]]*\])?$")


def callgrind(requests: int, env: dict[str, str], out: Path, credential: str = "secret") -> int:
    """Total instructions of one run of the request loop; the per-function profile goes to `out`."""
    return instructions_of([sys.executable, str(BENCH / "bench_request_path.py"), "--only-requests", "--requests",
                            str(requests), "--credential", credential], env, out)


def instructions_of(cmd: list[str], env: dict[str, str], out: Path) -> int:
    """Total instructions of one run of `cmd` under callgrind; the per-function profile goes to `out`."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    found = _TOTAL.search(r.stderr)
    if r.returncode != 0 or not found:
        raise SystemExit(f"callgrind run failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return int(found.group(1))


def functions(profile: Path) -> dict[str, int]:
    """Exclusive instructions per C function, from callgrind_annotate."""
    text = subprocess.run(["callgrind_annotate", "--threshold=100", str(profile)], capture_output=True, text=True,
                          timeout=600).stdout
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and ":" in m.group(2) and not m.group(2).startswith("=>"):
            name = re.sub(r"^.*?/Python-3[^/]*/", "", m.group(2))
            out[name] = out.get(name, 0) + int(m.group(1).replace(",", ""))
    return out


def measure(build: str, requests: int, top: int, tmp: Path, credential: str = "secret") -> dict[str, Any]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("EDGE_PROXY_PURE_PYTHON", None)
    if build == "pure":
        env["EDGE_PROXY_PURE_PYTHON"] = "1"
    base, more = tmp / f"{build}-base.out", tmp / f"{build}-more.out"
    warm = 200
    low = callgrind(warm, env, base, credential)
    high = callgrind(warm + requests, env, more, credential)
    result: dict[str, Any] = {"build": build, "credential": credential, "requests": requests, "instructions_per_request": round((high - low) / requests)}
    if top:
        a, b = functions(more), functions(base)
        diff = {k: (a.get(k, 0) - b.get(k, 0)) / requests for k in set(a) | set(b)}
        result["top"] = [{"function": k, "per_request": round(v)}
                         for k, v in sorted(diff.items(), key=lambda kv: -kv[1])[:top]]
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000, help="extra requests between the two runs")
    ap.add_argument("--top", type=int, default=0, help="also list the C functions with the most instructions")
    ap.add_argument("--builds", default="compiled,pure")
    ap.add_argument("--credential", choices=["secret", "token"], default="secret",
                    help="a merchant's secret key, or a customer's forward token on a meter")
    ap.add_argument("--out", default=str(BENCH / "out" / "instructions.json"))
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="edge-proxy-callgrind-"))
    try:
        results = [measure(b, args.requests, args.top, tmp, args.credential) for b in args.builds.split(",")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for r in results:
        print(f"{r['build']:>8}: {r['instructions_per_request']:>9,} instructions per request "
              f"({r['requests']} requests)")
        for f in r.get("top", []):
            print(f"          {f['per_request']:>9,}  {f['function'][:110]}")
    if len(results) == 2 and results[1]["instructions_per_request"]:
        print(f"compiled / pure: {results[0]['instructions_per_request'] / results[1]['instructions_per_request']:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
