"""Saturation load for the benchmark scripts: wrk with a Lua script that sends what the OpenAI SDK sends, or,
when wrk is missing, Python load-generator processes (this file run as a script: asyncio + the lean client from
_harness). Both stop by themselves after the given seconds and report requests/s, latency, errors and the CPU
each watched process used meanwhile.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import _harness as h

_WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,\"err_connect\":%d,\"err_read\":%d," ..
    "\"err_write\":%d,\"err_status\":%d,\"err_timeout\":%d,\"lat_mean_us\":%.1f,\"lat_p50_us\":%d," ..
    "\"lat_p90_us\":%d,\"lat_p99_us\":%d,\"lat_max_us\":%d}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def _lua_str(s: str) -> str:
    return "[==[" + s + "]==]"


def wrk_script(path: Path, auth: str, body: bytes) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_str(body.decode())}"]
    for k, v in h.SDK_HEADERS:
        if k != "connection":
            lines.append(f"wrk.headers[ {_lua_str(k)} ] = {_lua_str(v)}")
    lines.append(f'wrk.headers["authorization"] = {_lua_str("Bearer " + auth)}')
    path.write_text("\n".join(lines) + "\n" + _WRK_DONE)
    return path


def run_wrk(wrk: str, script: Path, port: int, path: str, seconds: float, concurrency: int,
            threads: int = 1, watch: dict[str, int] | None = None) -> dict:
    """wrk for `seconds` (it stops by itself); CPU seconds used by wrk and by each watched pid meanwhile."""
    before = {k: h.cpu_seconds(p) for k, p in (watch or {}).items()}
    p = subprocess.Popen([wrk, f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
                          "-s", str(script), f"http://{h.HOST}:{port}{path}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + seconds + 30
    ru = None
    while True:   # reap it ourselves: wait4 also gives the CPU time wrk used
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            ru, p.returncode = usage, os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            break
        time.sleep(0.05)
    out = p.stdout.read().decode(errors="replace")
    after = {k: h.cpu_seconds(pid) for k, pid in (watch or {}).items()}
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    r = json.loads(line[8:])
    dur = r["duration_us"] / 1e6
    res = {
        "rps": round(r["requests"] / dur, 1), "requests": r["requests"], "duration_s": round(dur, 3),
        "errors": {k[4:]: r[k] for k in r if k.startswith("err_") and r[k]},
        "latency_ms": {q: round(r[f"lat_{q}_us"] / 1000, 3) for q in ("p50", "p90", "p99", "max")},
        "loadgen": f"wrk -t{threads} -c{concurrency}",
    }
    cpu = {}
    if ru is not None:
        cpu["wrk"] = round(ru.ru_utime + ru.ru_stime, 3)
    for k in before:
        if before[k] is not None and after[k] is not None:
            cpu[k] = round(after[k] - before[k], 3)
    res["cpu_seconds"] = cpu
    res["cpu_share_of_one_core"] = {k: round(v / dur, 3) for k, v in cpu.items()}
    _check_errors(res, port, path)
    return res


def _check_errors(res: dict, port: int, path: str) -> None:
    bad = sum(res["errors"].values())
    if bad > max(10, res["requests"] * 0.005):
        raise RuntimeError(f"load against {h.HOST}:{port}{path}: {bad} errors of {res['requests']} requests "
                           f"({res['errors']}): the figures would be meaningless")


def run_python_load(port: int, path: str, auth: str, body: bytes, seconds: float, concurrency: int,
                    procs: int = 2, watch: dict[str, int] | None = None) -> dict:
    """`procs` load-generator processes (this file run as a script), concurrency split between them."""
    before = {k: h.cpu_seconds(p) for k, p in (watch or {}).items()}
    per = [c for c in (concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)) if c > 0]
    with tempfile.TemporaryDirectory(prefix="edge-loadgen-") as tmp:
        outs = [Path(tmp) / f"loadgen{i}.json" for i in range(len(per))]
        ps = [subprocess.Popen([h.PYTHON, __file__, "--port", str(port), "--path", path, "--auth", auth, "--body",
                                body.decode(), "--seconds", str(seconds), "--concurrency", str(c), "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
              for c, out in zip(per, outs)]
        results = []
        for p, out in zip(ps, outs):
            try:
                _, err = p.communicate(timeout=seconds + 60)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"loadgen failed: {err.decode(errors='replace')}")
            results.append(json.loads(out.read_text()))
    after = {k: h.cpu_seconds(pid) for k, pid in (watch or {}).items()}
    total = sum(r["requests"] for r in results)
    dur = max(r["duration_s"] for r in results)
    cpu = {"loadgen": round(sum(r["cpu_s"] for r in results), 3)}
    for k in before:
        if before[k] is not None and after[k] is not None:
            cpu[k] = round(after[k] - before[k], 3)
    lat = sorted(x for r in results for x in r["sample_ms"])
    res = {
        "rps": round(total / dur, 1), "requests": total, "duration_s": round(dur, 3),
        "errors": {"status": sum(r["bad_status"] for r in results)} if any(r["bad_status"] for r in results) else {},
        "latency_ms": {"p50": h.pct(lat, 0.5), "p90": h.pct(lat, 0.9), "p99": h.pct(lat, 0.99)} if lat else {},
        "loadgen": f"{len(ps)} python processes (asyncio+httptools), c={concurrency} total",
        "cpu_seconds": cpu, "cpu_share_of_one_core": {k: round(v / dur, 3) for k, v in cpu.items()},
    }
    _check_errors(res, port, path)
    return res


async def _loadgen(port: int, path: str, auth: str, body: bytes, seconds: float, concurrency: int) -> dict:
    data = h.request_bytes(port, path, auth, body)
    conns = [await h.LeanConn.open(port) for _ in range(concurrency)]
    count = bad = 0
    samples: list[float] = []
    t_start = time.perf_counter()
    deadline = t_start + seconds
    max_requests = 2_000_000  # a hard bound besides the time

    async def worker(c: h.LeanConn) -> None:
        nonlocal count, bad
        while time.perf_counter() < deadline and count < max_requests:
            r = await c.request(data, timeout=10)
            count += 1
            if r.status != 200:
                bad += 1
            if count % 16 == 0:
                samples.append((r.t_end - r.t0) / 1e6)

    await asyncio.gather(*(worker(c) for c in conns))
    dur = time.perf_counter() - t_start
    for c in conns:
        c.close()
    t = os.times()
    return {"requests": count, "duration_s": dur, "bad_status": bad, "sample_ms": samples,
            "cpu_s": t.user + t.system}


def _main() -> None:
    ap = argparse.ArgumentParser(description="a load-generator process; run_python_load starts it")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--auth", required=True)
    ap.add_argument("--body", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--concurrency", type=int, required=True)
    ap.add_argument("--out", required=True, help="where to write the JSON result")
    a = ap.parse_args()
    import uvloop
    r = uvloop.run(_loadgen(a.port, a.path, a.auth, a.body.encode(), min(a.seconds, 600), a.concurrency))
    # a file, not stdout: over a pipe, results larger than its 64 KiB came back cut short
    Path(a.out).write_text(json.dumps(r))


if __name__ == "__main__":
    _main()
