"""What a Redis call costs the gateway, by deployment and by reply parser, on loopback.

Starts a private standalone redis-server and a 6-node Redis Cluster (tests/redis_server.py, tests/redis_cluster.py),
reaches each through edge_proxy.store.redis_client.open_redis (the client EDGE_PROXY_REDIS_URL gives), and times,
interleaved round by round so that machine noise hits every variant alike:
  - hold:        one RedisHolds.hold() call (the one Redis call a request can make, when its lease runs dry)
  - debit-500:   one RedisHolds.apply() of 500 payers' debits (the log writer's pipeline, off the request path)
  - hgetall-500: a pipeline of 500 HGETALLs (bulky replies: where a faster parser would show)
with redis-py's pure-Python reply parser and, when the `hiredis` package is installed, its hiredis parser.
    .venv/bin/python bench/redis_clients.py [--rounds 8]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser
from redis.utils import HIREDIS_AVAILABLE

from edge_proxy.billing.holds import RedisHolds
from edge_proxy.billing.payer import Payer
from edge_proxy.store.redis_client import open_redis
from tests.redis_cluster import LocalRedisCluster
from tests.redis_server import RedisServer

PAYERS = [Payer("customer", f"cus_bench_{i}") for i in range(500)]


class _NoDatabase:
    """The database RedisHolds would grow leases in: never reached here, every payer's lease is seeded in Redis."""
    dialect = "sqlite"


def client(url: str, parser):
    c = open_redis(url, 1.0)
    if hasattr(c, "nodes_manager"):   # cluster: every node's connections take the parser
        c.nodes_manager.connection_kwargs["parser_class"] = parser
    else:
        c.connection_pool.connection_kwargs["parser_class"] = parser
    return c


async def one_round(c, holds: RedisHolds, r: int, out: dict, name: str) -> None:
    t = time.perf_counter()
    for i in range(1000):
        await holds.hold(PAYERS[i % 500], "w1", 1, 60)
    out.setdefault((name, "hold us"), []).append((time.perf_counter() - t) / 1000 * 1e6)
    t = time.perf_counter()
    await holds.apply([(p, f"r{r}_{name}_{p.id}", -1, "w1", 1) for p in PAYERS])
    out.setdefault((name, "debit-500 ms"), []).append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    async with c.pipeline(transaction=False) as pipe:
        for p in PAYERS:
            pipe.hgetall(p.redis_key)
        await pipe.execute()
    out.setdefault((name, "hgetall-500 ms"), []).append((time.perf_counter() - t) * 1e3)


async def main(urls: dict[str, str], rounds: int) -> dict:
    parsers = {"python": _AsyncRESP2Parser}
    if HIREDIS_AVAILABLE:
        parsers["hiredis"] = _AsyncHiredisParser
    variants = {}
    for deployment, url in urls.items():
        for pname, parser in parsers.items():
            c = client(url, parser)
            holds = RedisHolds(c, _NoDatabase())  # type: ignore[arg-type]  # every lease is seeded below
            holds._renew_at.update({p: float("inf") for p in PAYERS})  # so a hold never renews in the database
            variants[f"{deployment}/{pname}"] = (c, holds)
    for url in urls.values():
        c = open_redis(url, 1.0)
        for p in PAYERS:
            await c.hset(p.redis_key, mapping={"b": 10**15, "e": time.time() + 3600})
        await c.aclose()
    out: dict = {}
    for r in range(rounds):
        for name, (c, holds) in variants.items():
            await one_round(c, holds, r, out, name)
    for name, (c, _) in variants.items():   # each variant really ran on the parser it is named after
        nodes = c.nodes_manager.nodes_cache.values() if hasattr(c, "nodes_manager") else [None]
        pools = [n._connections for n in nodes] if nodes != [None] else [c.connection_pool._available_connections]
        used = {type(conn._parser).__name__ for conns in pools for conn in conns}
        hiredis = name.endswith("/hiredis")
        assert used and all((u == "_AsyncHiredisParser") == hiredis for u in used), (name, used)
        await c.aclose()
    return out


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    standalone, cluster = RedisServer().start(), LocalRedisCluster().start()
    try:
        import uvloop
        out = uvloop.run(main({"standalone": standalone.url, "cluster": cluster.url}, args.rounds))
    finally:
        standalone.stop()
        cluster.stop()
    print(f"{'variant':<22} {'measure':<16} {'median':>9} {'min':>9}   ({args.rounds} rounds, interleaved)")
    for (name, measure), values in out.items():
        print(f"{name:<22} {measure:<16} {statistics.median(values):9.1f} {min(values):9.1f}")
    if not HIREDIS_AVAILABLE:
        print("(hiredis is not installed: .venv/bin/pip install hiredis to compare its parser)")


if __name__ == "__main__":
    run()
