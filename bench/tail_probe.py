"""Where the c=1 tail comes from: which requests through the gateway are slow, and when.

Starts bench/fast_upstream.py and the gateway (configured as overhead.py does, plus any EDGE_PROXY_* given
with --set), sends --requests plain requests one after another on one keep-alive connection, and prints the
percentiles and each request over --slow-ms with its CLOCK_MONOTONIC start time (system-wide, so it lines
up with anything the gateway logs with time.monotonic()). Slow requests evenly spaced point at something
periodic per request count (a lease growing every N requests was one); clusters every log_flush_seconds point
at the log writer. The summary line counts bursts: runs of slow requests less than --burst-ms apart. With the
log writer on the event loop they came one per flush (every 0.2 s at c=1), several slow requests each; with
the writer in its own process, what is left should be single slow requests, not bursts.

The flushes themselves are read from the store afterwards: a batch's transfers share one `created_at` (the
writer's clock when it posts them), and at c=1 the requests are logged in the order they were sent, so the last
request of each batch says when its flush began (within a request or two), and the transfers' time about when
the writer finished it. The "at flushes" line compares the share of slow requests among those that ran while a
flush was under way with the share among the others: a ratio of 1 means no clustering at flushes. Other load on a
shared machine adds slow requests evenly, so the ratio and the slow requests the flushes added (per 1000) stay
readable where the burst count does not.

    .venv/bin/python bench/tail_probe.py [--requests 4000] [--slow-ms 1] [--set EDGE_PROXY_LOG_BATCH_SIZE=100]
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import shutil
import sqlite3
import tempfile
import time
from datetime import datetime
from pathlib import Path

import _harness as h


async def sequential(port: int, auth: str, n: int) -> list[tuple[float, float]]:
    conn = await h.LeanConn.open(port)
    req = h.request_bytes(port, h.GATEWAY_PATH, auth, h.PLAIN_BODY)
    try:
        for _ in range(min(300, n)):
            await conn.request(req)
        gc.collect()
        gc.disable()
        rows = []
        for _ in range(n):
            at = time.monotonic()
            r = await conn.request(req)
            rows.append((at, (r.t_end - r.t0) / 1e6))
        return rows
    finally:
        gc.enable()
        conn.close()


def bursts(slow: list[tuple[float, float]], gap: float) -> str:
    """How the slow requests cluster: runs of them less than `gap` seconds apart, and the time between runs."""
    runs: list[list[float]] = []
    for at, _ in slow:
        if runs and at - runs[-1][-1] < gap:
            runs[-1].append(at)
        else:
            runs.append([at])
    big = [r for r in runs if len(r) >= 3]
    if not big:
        return f"bursts (3+ slow requests within {gap * 1000:g} ms): none"
    starts = [r[0] for r in big]
    gaps = sorted(b - a for a, b in zip(starts, starts[1:]))
    median = f"{gaps[len(gaps) // 2] * 1000:.0f} ms" if gaps else "-"
    return (f"bursts (3+ slow requests within {gap * 1000:g} ms): {len(big)}, holding "
            f"{sum(map(len, big))} of {len(slow)} slow requests; median time between bursts {median}")


def flush_windows(db: Path, rows: list[tuple[float, float]], wall_offset: float) -> list[tuple[float, float]] | None:
    """When each flush began and when its writer posted the batch's transfers (monotonic), from the store; None
    when the store's requests cannot be lined up with `rows` (the last len(rows) requests in the order they were
    logged, which at c=1 is the order they were sent). `wall_offset`: time.time() - time.monotonic()."""
    with sqlite3.connect(db) as conn:
        batch_of = dict(conn.execute("SELECT request_id, min(created_at) FROM transfers GROUP BY request_id"))
        logged = [rid for (rid,) in conn.execute("SELECT request_id FROM requests ORDER BY rowid")]
    if len(logged) < len(rows):
        return None
    batches = [batch_of.get(rid) for rid in logged[len(logged) - len(rows):]]
    windows = []
    for i in range(len(rows) - 1):
        posted, following = batches[i], batches[i + 1]
        if posted is None or following is None:
            return None  # a request without a transfer: its batch cannot be told
        if following != posted:  # request i was the last of its batch: its flush began as it ended
            at, ms = rows[i]
            began = at + ms / 1000
            posted_at = datetime.fromisoformat(posted).timestamp() - wall_offset
            windows.append((began, max(began, posted_at) + 0.005))  # the commit and its reply follow the post
    return windows


def at_flushes(rows: list[tuple[float, float]], slow_ms: float, windows: list[tuple[float, float]]) -> str:
    """Slow requests while a flush was under way (from its start to its writer's post, + 5 ms) and elsewhere."""
    starts = [a for a, _ in windows]

    def during(at: float, ms: float) -> bool:
        i = bisect.bisect_right(starts, at + ms / 1000) - 1
        return i >= 0 and at <= windows[i][1]
    inside = [ms for at, ms in rows if during(at, ms)]
    slow_in = sum(ms > slow_ms for ms in inside)
    slow_out = sum(ms > slow_ms for _, ms in rows) - slow_in
    rate_in = slow_in / max(1, len(inside))
    rate_out = slow_out / max(1, len(rows) - len(inside))
    lengths = sorted(b - a for a, b in windows)
    median = lengths[len(lengths) // 2] * 1000 if lengths else 0.0
    return (f"at flushes ({len(windows)}, median {median:.0f} ms from start to post): {len(inside) / len(rows):.1%} "
            f"of requests ran during one; slow there {rate_in:.1%}, elsewhere {rate_out:.1%} (ratio "
            f"{rate_in / rate_out if rate_out else float('nan'):.2f}); slow requests the flushes added: "
            f"{(rate_in - rate_out) * len(inside) * 1000 / len(rows):.1f} per 1000 requests")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--slow-ms", type=float, default=1.0)
    ap.add_argument("--burst-ms", type=float, default=20.0, help="slow requests closer than this form a burst")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="gateway environment")
    args = ap.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.set)
    tmp = Path(tempfile.mkdtemp(prefix="edge-proxy-tail-"))
    up, up_port = h.start_fast_upstream(tmp)
    try:
        env = h.gateway_env(tmp / "bench.db", f"http://{h.HOST}:{up_port}/v1", extra)
        auth = h.create_merchant(env)["secret_key"]
        gw = h.start_gateway(tmp, env)
        try:
            rows = asyncio.run(sequential(gw.port, auth, args.requests))
        finally:
            gw.proc.stop()  # drains the log queue: every request is in the store after this
        windows = flush_windows(tmp / "bench.db", rows, time.time() - time.monotonic())
    finally:
        up.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    lat = sorted(ms for _, ms in rows)
    q = {p: lat[min(len(lat) - 1, int(p * len(lat)))] for p in (0.5, 0.9, 0.99, 0.999)}
    slow = [(at, ms) for at, ms in rows if ms > args.slow_ms]
    print(f"{len(rows)} requests, ms: p50 {q[0.5]:.3f}  p90 {q[0.9]:.3f}  p99 {q[0.99]:.3f}  p99.9 {q[0.999]:.3f}  "
          f"max {lat[-1]:.2f}  over {args.slow_ms:g} ms: {len(slow)} ({100 * len(slow) / len(rows):.1f}%)")
    print(bursts(slow, args.burst_ms / 1000))
    if windows is None:
        print("at flushes: the store's requests could not be lined up with the requests sent")
    else:
        print(at_flushes(rows, args.slow_ms, windows))
    start = rows[0][0]
    for at, ms in slow:
        print(f"  at +{(at - start) * 1000:9.1f} ms (monotonic {at:.4f}): {ms:.2f} ms")


if __name__ == "__main__":
    main()
