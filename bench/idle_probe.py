"""What a request costs when it finds the machine idle, as c=1 traffic with gaps between requests does.

overhead.py sends its c=1 requests back to back, so the gateway's threads and both vCPUs are still awake when
the next request arrives. Real c=1 traffic has gaps, and a stream with events milliseconds apart
(`overhead.py --chunk-delay-ms 1`) leaves the gateway idle between them. This sends plain requests with a fixed
sleep before each, interleaved A B C on one keep-alive connection each: A direct to bench/fast_upstream.py, B
through the gateway, C through bench/bare_forwarder.py (Granian + our upstream client, nothing else), for each
--gaps value. If B and C grow alike with the gap, the cost is waking threads and vCPUs, not our code.

    .venv/bin/python bench/idle_probe.py [--requests 300] [--gaps 0,1,10]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import tempfile
import time
from pathlib import Path

import _harness as h
import bare_forwarder


async def interleaved(targets: list[tuple[int, bytes]], n: int, gap: float) -> list[list[float]]:
    conns = [await h.LeanConn.open(port) for port, _ in targets]
    out: list[list[float]] = [[] for _ in targets]
    try:
        for _ in range(100):
            for conn, (_, req) in zip(conns, targets):
                await conn.request(req)
        gc.collect()
        gc.disable()
        for _ in range(n):
            for i, (conn, (_, req)) in enumerate(zip(conns, targets)):
                if gap:
                    time.sleep(gap)  # a blocking sleep: nothing runs in this process meanwhile either
                r = await conn.request(req)
                out[i].append((r.t_end - r.t0) / 1e6)
        return out
    finally:
        gc.enable()
        for conn in conns:
            conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=300, help="requests per target and gap")
    ap.add_argument("--gaps", default="0,1,10", help="ms to sleep before each request, comma-separated")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edge-proxy-idle-"))
    up, up_port = h.start_fast_upstream(tmp)
    try:
        env = h.gateway_env(tmp / "bench.db", f"http://{h.HOST}:{up_port}/v1")
        auth = h.create_merchant(env)["secret_key"]
        gw = h.start_gateway(tmp, env)
        bare, bare_port = bare_forwarder.start(tmp, up_port)
        try:
            targets = [(up_port, h.request_bytes(up_port, h.UPSTREAM_PATH, h.PROVIDER_KEY, h.PLAIN_BODY)),
                       (gw.port, h.request_bytes(gw.port, h.GATEWAY_PATH, auth, h.PLAIN_BODY)),
                       (bare_port, h.request_bytes(bare_port, h.UPSTREAM_PATH, h.PROVIDER_KEY, h.PLAIN_BODY))]
            print("c=1 plain requests, ms      p50: direct  gateway     bare   gateway added  bare added")
            for gap in (float(g) for g in args.gaps.split(",")):
                direct, gateway, bare_ms = (h.pct(sorted(v), 0.5) for v in
                                            asyncio.run(interleaved(targets, args.requests, gap / 1000)))
                print(f"  {gap:5g} ms idle before each    {direct:7.3f}  {gateway:7.3f}  {bare_ms:7.3f}"
                      f"   {gateway - direct:12.3f}  {bare_ms - direct:10.3f}")
        finally:
            bare.stop()
            gw.proc.stop()
    finally:
        up.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
