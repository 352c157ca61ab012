"""What relaying and scanning a long SSE stream costs per chunk: the gateway against the bare Granian forwarder.

    .venv/bin/python bench/stream_relay.py [--events 1000] [--streams 60] [--rounds 3]

Starts on 127.0.0.1 (free ports, a temporary SQLite store, everything stopped at the end) bench/fast_upstream.py
streaming `--events` content events per answer, each written on its own turn of its loop (`--chunk-delay-ms`
0.001: one write per event, so the relays see many small reads), the gateway (1 worker) and
bench/bare_forwarder.py (Granian + the gateway's upstream client, relaying the same chunks with nothing else).
Then, in `--rounds` alternating blocks of `--streams` streams each at concurrency 1: the worker CPU each relay
spent per stream (from /proc), and the last-byte time per stream. The figure the issue judges is
`cpu_per_stream_ratio` = gateway worker CPU / bare worker CPU per stream: with 1,000 events a stream's fixed cost
is a small part, so it is the per-chunk cost ratio (target <= 1.10). Prints JSON; --out writes it too.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402
import bare_forwarder  # noqa: E402


async def streams(port: int, path: str, auth: str, n: int) -> tuple[list[float], int]:
    """n streams one after the other on one connection: the last-byte times (ms) and the body bytes of one."""
    conn = await h.LeanConn.open(port)
    data = h.request_bytes(port, path, auth, h.STREAM_BODY)
    times, nbytes = [], 0
    try:
        for _ in range(n):
            r = await conn.request(data)
            if r.status != 200:
                raise RuntimeError(f"port {port} answered {r.status}")
            times.append((r.t_end - r.t0) / 1e6)
            nbytes = r.nbytes
    finally:
        conn.close()
    return times, nbytes


def block(pid: int, port: int, path: str, auth: str, n: int) -> tuple[float, list[float], int]:
    """CPU seconds per stream of the relay's worker, and the streams' last-byte times."""
    before = h.cpu_seconds(pid) or 0.0
    times, nbytes = uvloop.run(streams(port, path, auth, n))
    return ((h.cpu_seconds(pid) or 0.0) - before) / n, times, nbytes


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000, help="content events per stream (default 1000)")
    ap.add_argument("--streams", type=int, default=60, help="streams per block (default 60)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating gateway/bare blocks (default 3)")
    ap.add_argument("--chunk-delay-ms", type=float, default=0.001)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="gateway settings")
    ap.add_argument("--out")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edge-stream-"))
    procs: list[h.Proc] = []
    try:
        fast, fast_port = h.start_fast_upstream(tmp, chunks=args.events, delay_ms=args.chunk_delay_ms,
                                                max_seconds=900)
        procs.append(fast)
        env = h.gateway_env(tmp / "bench.db", f"http://{h.HOST}:{fast_port}/v1",
                            dict(kv.split("=", 1) for kv in args.set))
        auth = h.create_merchant(env)["secret_key"]
        gw = h.start_gateway(tmp, env)
        procs.append(gw.proc)
        bare, bare_port = bare_forwarder.start(tmp, fast_port)
        procs.append(bare)
        time.sleep(0.5)
        bare_pid = h.children(bare.pid)[0]
        block(gw.workers[0], gw.port, h.GATEWAY_PATH, auth, 20)  # warm-up
        block(bare_pid, bare_port, h.UPSTREAM_PATH, h.PROVIDER_KEY, 20)
        rows = []
        for i in range(args.rounds):
            h.log(f"round {i + 1}/{args.rounds}: {args.streams} streams of {args.events} events each way")
            g_cpu, g_times, g_bytes = block(gw.workers[0], gw.port, h.GATEWAY_PATH, auth, args.streams)
            b_cpu, b_times, b_bytes = block(bare_pid, bare_port, h.UPSTREAM_PATH, h.PROVIDER_KEY, args.streams)
            rows.append({"gateway_cpu_ms_per_stream": round(g_cpu * 1e3, 3), "bare_cpu_ms_per_stream": round(b_cpu * 1e3, 3),
                         "cpu_per_stream_ratio": round(g_cpu / b_cpu, 3) if b_cpu else None,
                         "gateway_last_byte_p50_ms": round(statistics.median(g_times), 3),
                         "bare_last_byte_p50_ms": round(statistics.median(b_times), 3),
                         "last_byte_p50_ratio": round(statistics.median(g_times) / statistics.median(b_times), 3),
                         "body_bytes": [g_bytes, b_bytes]})
    finally:
        for p in reversed(procs):
            p.stop()
    ratios = [r["cpu_per_stream_ratio"] for r in rows if r["cpu_per_stream_ratio"]]
    result = {"bench": "stream_relay", "events": args.events, "streams_per_block": args.streams, "rounds": rows,
              "ratios": {"stream_cpu_per_chunk_to_bare": round(statistics.median(ratios), 3) if ratios else None,
                         "stream_last_byte_to_bare": round(statistics.median(r["last_byte_p50_ratio"] for r in rows), 3)}}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
