"""A gateway worker's resident memory after N requests, and the size of its journal segments on disk.

Starts bench/fast_upstream.py and the gateway (1 worker) from `--src` (a folder holding an edge_proxy/, by default
this checkout: point it at an export of another commit to compare), reads the worker's memory at idle (after
start-up and one /healthz, as bench/overhead.py does), sends 400 requests to warm it up, reads
/proc/<worker>/status, sends `--requests` more over 8 keep-alive connections, and reads it again; then the
worker's log writer process (its child) likewise. `--database-url` points the gateway at another store (a
PostgreSQL database) instead of a temporary SQLite file, and `--redis-url` gives it Redis holds.

    .venv/bin/python bench/worker_rss.py [--requests 20000] [--src PATH] [--database-url postgresql://...]
                                         [--redis-url redis://127.0.0.1:6379/14]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()


def memory(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)
                if k in ("VmRSS", "RssAnon", "RssFile")}


async def load(port: int, key: str, n: int, connections: int = 8) -> None:
    data = h.request_bytes(port, "/providers/openai/v1/chat/completions", key, BODY)
    conns = [await h.LeanConn.open(port) for _ in range(connections)]

    async def run(conn: h.LeanConn, k: int) -> None:
        for _ in range(k):
            r = await conn.request(data)
            if r.status != 200:
                raise RuntimeError(f"status {r.status}")
    try:
        await asyncio.gather(*(run(c, n // connections) for c in conns))
    finally:
        for c in conns:
            c.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--src", default=str(h.ROOT))
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--redis-url", help="default: none (SQL holds)")
    args = parser.parse_args()
    h.SRC = Path(args.src)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        upstream, port = h.start_fast_upstream(tmp)
        try:
            env = h.gateway_env(tmp / "g.db", f"http://{h.HOST}:{port}/v1")
            if args.database_url:
                env["EDGE_PROXY_DATABASE_URL"] = args.database_url
            if args.redis_url:
                env["EDGE_PROXY_REDIS_URL"] = args.redis_url
            key = h.create_merchant(env)["secret_key"]
            gw = h.start_gateway(tmp, env)
            try:
                worker = gw.workers[0]
                idle = memory(worker)
                asyncio.run(load(gw.port, key, 400))
                before = memory(worker)
                asyncio.run(load(gw.port, key, args.requests))
                after = memory(worker)
                writer = [memory(pid)["VmRSS"] for pid in h.children(worker)]
                sizes = [p.stat().st_size for p in sorted((tmp / "spill").glob("journal-*.jnl"))]
            finally:
                gw.proc.stop()
        finally:
            upstream.stop()
    print(f"{args.src}: worker kB idle {idle}, after 400 requests {before}, after {args.requests} more {after}; "
          f"log writer process VmRSS kB {writer}; journal segments, bytes on disk: {sizes}")


if __name__ == "__main__":
    main()
