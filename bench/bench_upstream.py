"""Upstream-hop client cost: edge_proxy.upstream.UpstreamPool vs aiohttp.ClientSession.

Starts an aiohttp.web server (its own process, uvloop) on 127.0.0.1 answering a fixed ~300-byte
JSON body, then, in one uvloop client process, measures interleaved:
  * sequential latency p50/p99 (one request at a time, keep-alive), and
  * requests/s with 32 concurrent workers.
Prints a table and writes bench/out/upstream.json.

    /work/main/.venv/bin/python bench/bench_upstream.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edge_proxy.upstream import UpstreamPool  # noqa: E402

BODY = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
}).encode()
HEADERS = [(b"authorization", b"Bearer sk-bench"), (b"content-type", b"application/json"),
           (b"user-agent", b"edge-proxy-bench")]
REQ_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'


def serve(port: int, ready) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=BODY, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        ready.set()
        await asyncio.Event().wait()

    uvloop.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ours:
    name = "edge_proxy UpstreamPool"

    def __init__(self, port: int) -> None:
        self.port = port
        self.pool = UpstreamPool()

    async def one(self) -> None:
        r = await self.pool.request("POST", "http", "127.0.0.1", self.port, "/v1/chat/completions",
                                    HEADERS, REQ_BODY)
        body = await r.read()
        assert r.status == 200 and len(body) == len(BODY)

    async def close(self) -> None:
        await self.pool.close()


class Aiohttp:
    name = "aiohttp ClientSession"

    def __init__(self, port: int) -> None:
        import aiohttp
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self.headers = {k.decode(): v.decode() for k, v in HEADERS}
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60), auto_decompress=False)

    async def one(self) -> None:
        async with self.session.post(self.url, data=REQ_BODY, headers=self.headers) as r:
            body = await r.read()
        assert r.status == 200 and len(body) == len(BODY)

    async def close(self) -> None:
        await self.session.close()


async def sequential(clients, n: int, block: int = 100) -> dict[str, list[float]]:
    """Alternate blocks of requests between clients so drift (CPU clocks, noise) hits both."""
    samples = {c.name: [] for c in clients}
    for _ in range(n // block):
        for c in clients:
            out = samples[c.name]
            for _ in range(block):
                t0 = time.perf_counter_ns()
                await c.one()
                out.append((time.perf_counter_ns() - t0) / 1e6)
    return samples


async def throughput(client, total: int, concurrency: int) -> float:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await client.one()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - t0)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(port: int, n: int, concurrency: int, rounds: int) -> dict:
    clients = [Ours(port), Aiohttp(port)]
    await sequential(clients, max(300, n // 10))   # warm-up: connections, caches, JIT-free paths
    samples = await sequential(clients, n)
    rps: dict[str, list[float]] = {c.name: [] for c in clients}
    for _ in range(rounds):   # interleaved rounds; the best round is reported
        for c in clients:
            rps[c.name].append(await throughput(c, max(2000, n), concurrency))
    result = {}
    for c in clients:
        s = samples[c.name]
        result[c.name] = {
            "sequential_requests": len(s),
            "p50_ms": round(pct(s, 0.50), 4), "p90_ms": round(pct(s, 0.90), 4),
            "p99_ms": round(pct(s, 0.99), 4), "mean_ms": round(statistics.fmean(s), 4),
            f"rps_c{concurrency}": round(max(rps[c.name])), f"rps_c{concurrency}_rounds": [round(x) for x in rps[c.name]],
        }
    ours = clients[0].pool
    result["edge_proxy UpstreamPool"]["connections_opened"] = ours.opened
    for c in clients:
        await c.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=serve, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(20):
            raise SystemExit("bench server did not start")
        result = uvloop.run(run(port, args.requests, args.concurrency, args.rounds))
    finally:
        server.terminate()
        server.join(5)

    c = args.concurrency
    print(f"upstream hop, 127.0.0.1, {len(BODY)}-byte JSON response, uvloop, "
          f"{args.requests} sequential requests each (interleaved)")
    print(f"{'client':<26}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'mean ms':>9}{f'req/s c={c}':>13}")
    for name, r in result.items():
        print(f"{name:<26}{r['p50_ms']:>9.3f}{r['p90_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['mean_ms']:>9.3f}"
              f"{r[f'rps_c{c}']:>13,}")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(parents=True, exist_ok=True)
    doc = {"bench": "upstream", "response_bytes": len(BODY), "loop": "uvloop",
           "python": platform.python_version(), "cpus": os.cpu_count(), "concurrency": c,
           "results": result}
    (out / "upstream.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out / 'upstream.json'}")


if __name__ == "__main__":
    main()
