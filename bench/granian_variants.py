"""Experiment: the same gateway code under different Granian / interpreter settings, to see what the serving
layer costs. Changes no edge_proxy code: each variant runs `edge_proxy.cli.main(["serve", ...])` in a launcher that
first sets the interpreter's GIL switch interval and/or adds keyword arguments to granian's Server(...).

    .venv/bin/python bench/granian_variants.py [--requests 1000] [--seconds 4] [--variants default,switch_0.5ms,...]

Per variant (gateway -> nginx, or -> bench/fast_upstream.py without nginx; 1 worker): c=1 latency, interleaved
with direct calls (default scheduling), and requests/s at c=32 with wrk (or Python load generators). Writes
bench/out/granian_variants.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402
import _load  # noqa: E402
import overhead  # noqa: E402

LAUNCHER = r"""
import json, sys
cfg = json.loads(sys.argv[1])
if cfg.get("switchinterval"):
    sys.setswitchinterval(cfg["switchinterval"])   # inherited by the forked workers
import granian.constants as gc
import granian.server as gs
_Server = gs.Server
_ENUMS = {"runtime_mode": gc.RuntimeModes, "task_impl": gc.TaskImpl, "http": gc.HTTPModes}
def Server(*args, **kwargs):
    for k, v in cfg.get("server", {}).items():
        kwargs[k] = _ENUMS[k](v) if k in _ENUMS else v
    return _Server(*args, **kwargs)
gs.Server = Server
from edge_proxy.cli import main
sys.exit(main(sys.argv[2:]))
"""

VARIANTS = {
    "default": {},
    "switch_0.5ms": {"switchinterval": 0.0005},
    "runtime_st": {"server": {"runtime_mode": "st"}},
    "runtime_mt": {"server": {"runtime_mode": "mt"}},
    "http1_only": {"server": {"http": "1"}},
    "task_rust": {"server": {"task_impl": "rust"}},
    "backpressure_64": {"server": {"backpressure": 64}},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--rounds", type=int, default=2, help="variants run in turn, this many times (a fresh gateway each)")
    ap.add_argument("--out", default=str(h.BENCH / "out" / "granian_variants.json"))
    args = ap.parse_args()
    nginx = h.ensure_tool("nginx", ["nginx-light", "nginx"], False)[0]
    wrk = h.ensure_tool("wrk", ["wrk"], False)[0]
    tmp = Path(tempfile.mkdtemp(prefix="edge-variants-"))
    h.snapshot_tree(tmp)   # every variant runs the same code
    procs: list[h.Proc] = []
    results = {}
    try:
        if nginx:
            up, up_port = h.start_nginx(nginx, tmp)
        else:
            up, up_port = h.start_fast_upstream(tmp, max_seconds=1800)
        procs.append(up)
        env = h.gateway_env(tmp / "bench.db", f"http://{h.HOST}:{up_port}/v1")
        auth = h.create_merchant(env)["secret_key"]
        for name, rnd in [(n, r) for r in range(args.rounds) for n in args.variants.split(",")]:
            cfg = VARIANTS[name]
            h.log(f"variant {name}: {cfg}")
            try:
                gw = h.start_gateway(tmp, env, launcher=[h.PYTHON, "-c", LAUNCHER, json.dumps(cfg)])
            except RuntimeError as exc:
                results.setdefault(name, []).append({"config": cfg, "error": str(exc)[-500:]})
                continue
            try:
                lat = uvloop.run(overhead.interleaved(up_port, gw.port, auth, h.PLAIN_BODY, args.requests,
                                                      min(200, args.requests // 5)))
                _load.wrk_script(tmp / "v.lua", auth, h.PLAIN_BODY)
                before = {w: h.thread_cpu(w) for w in gw.workers}
                t0 = time.monotonic()
                if wrk:
                    sat = _load.run_wrk(wrk, tmp / "v.lua", gw.port, h.GATEWAY_PATH, args.seconds, args.concurrency,
                                    watch={"gateway_worker": gw.workers[0]})
                else:
                    sat = _load.run_python_load(gw.port, h.GATEWAY_PATH, auth, h.PLAIN_BODY, args.seconds,
                                            args.concurrency, watch={"gateway_worker": gw.workers[0]})
                wall = time.monotonic() - t0
                results.setdefault(name, []).append({
                    "config": cfg, "round": rnd + 1,
                    "latency_ms": {k: lat["total"][k] for k in ("direct_ms", "gateway_ms", "added_ms")},
                    "rps": sat["rps"], "rps_latency_ms": sat["latency_ms"],
                    "worker_cpu_share": sat["cpu_share_of_one_core"].get("gateway_worker"),
                    "worker_threads_share": {str(w): h.thread_cpu_delta(before[w], h.thread_cpu(w), wall)
                                             for w in gw.workers},
                })
            finally:
                gw.proc.stop()
    finally:
        for p in reversed(procs):
            p.stop()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"upstream": "nginx" if nginx else "fast_upstream", "edge_proxy_tree_sha256": h.tree_hash(),
                               "variants": results}, indent=2) + "\n")
    print(f"{'variant':<18}{'added p50':>10}{'added p90':>10}{'added p99':>10}{'req/s c=32':>12}{'worker CPU':>11}")
    for name, rs in results.items():
        for r in rs:
            if "error" in r:
                print(f"{name:<18} failed: {r['error'].strip().splitlines()[-1] if r['error'].strip() else '?'}")
                continue
            a = r["latency_ms"]["added_ms"]
            print(f"{name:<18}{a['p50']:>10.3f}{a['p90']:>10.3f}{a['p99']:>10.3f}{r['rps']:>12,.0f}"
                  f"{r['worker_cpu_share'] or 0:>11.2f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
