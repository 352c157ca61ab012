"""What the log writer process spends per record: its whole step for a batch of journal lines (split, decode,
`commit_isolating` -> `BillingEngine.commit_tx`, the reply's encoding), in this process, against a throwaway
SQLite file or PostgreSQL database, in CPU-us per record: the process's (every thread: SQLite's too), its event
loop thread's, and on PostgreSQL the server backends' that serve the throwaway database (read from /proc: the
server must run on this machine).

The records are the gateway's own (request_path/exchange.py fills the same fields, with time-ordered ids): `merchant` is a merchant's secret
key on its managed provider key (bench/overhead.py's saturation run), `customer` a customer forward token on a
percentage meter (Lava's main flow, overhead.py --also-token), `mixed` alternates them. Each batch holds new
request ids; `--replay` sends every batch a second time (a retried batch). It checks as it goes that each batch
bills every record once and a replay none, and at the end that the ledger verifies (`edge-proxy ledger verify`).
Not counted: the pipe's framing between the worker and its writer process.

    .venv/bin/python bench/writer_cost.py [--db sqlite|postgres] [--flow merchant|customer|mixed]
        [--batch 500] [--batches 40] [--replay] [--profile] [--redis redis://127.0.0.1:6379/13]

`--profile` prints cProfile's top functions (by own time) instead of the timing. For before/after pairs, run the
same command in two checkouts with the same .venv, alternately.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_proxy.billing import accounts, ledger
from edge_proxy.billing.payer import Payer
from edge_proxy.billing.reconcile import verify
from edge_proxy.clock import now_iso
from edge_proxy.gc_settle import settle_gc
from edge_proxy.log_sinks import open_log_sink
from edge_proxy.log_sinks.writer_process import _encode_reply, _Step
from edge_proxy.metering.record import RequestRecord, to_json_line
from edge_proxy.services import RequestIds
from edge_proxy.settings import Settings
from edge_proxy.store import open_store

USD = 1_000_000_000
PG_ADMIN = os.environ.get("EDGE_PROXY_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")
MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"]


class World:
    """One merchant with a large wallet, one customer funded by it, a percentage meter, and their worker holds."""

    async def make(self, url: str) -> None:
        store, sink = open_store(url), open_log_sink(url)
        await store.open()
        await sink.open()
        merchant, _ = await store.create_merchant("bench", 10**6 * USD)
        self.mid = merchant.merchant_id
        self.cus = (await accounts.create_customer(store.db, self.mid, {})).customer_id
        await accounts.create_meter(store.db, self.mid, "bench-meter", "Bench", "percentage", "tokens_1m",
                                    [accounts.Tier(0, Decimal("10"))])
        self.ids = RequestIds()  # the gateway's own: time-ordered, so the log's indexes grow at their end
        worker = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.merchant_hold = f"{worker}:merchant:{self.mid}"
        self.customer_hold = f"{worker}:customer:{self.cus}"
        async with store.db.transaction() as tx:
            await ledger.post(tx, [ledger.Transfer("bench_fund", Payer("merchant", self.mid),
                                                   Payer("customer", self.cus), 10**5 * USD, "credit", self.mid)])
            for hold, kind, payer in ((self.merchant_hold, "merchant", self.mid),
                                      (self.customer_hold, "customer", self.cus)):
                await tx.execute("INSERT INTO holds VALUES (?, ?, ?, ?, ?)", hold, kind, payer, 10**4 * USD,
                                 time.time() + 3600)
        await sink.close()
        await store.close()

    def record(self, i: int, customer: bool) -> RequestRecord:
        inp, out = 900 + i % 200, 120 + i % 50
        r = RequestRecord(
            request_id=self.ids.next(), created_at=now_iso(), merchant_id=self.mid,
            provider="openai", model=MODELS[i % 3], endpoint="/v1/chat/completions", stream=bool(i % 2),
            status_code=200, input_tokens=inp, output_tokens=out, cached_tokens=128 if i % 4 == 0 else 0,
            cost_nanos=inp * 150 + out * 600, input_cost_nanos=inp * 150, output_cost_nanos=out * 600, priced=True,
            latency_ms=12.345 + i % 7, overhead_ms=0.321, region="default")
        if customer:
            r.customer_id, r.meter_slug, r.payer = self.cus, "bench-meter", "customer"
            r.reserved_nanos, r.hold_id = 5_000_000, self.customer_hold
            r.merchant_reserved_nanos, r.merchant_hold_id = 1_000_000, self.merchant_hold
        else:
            r.reserved_nanos, r.hold_id = 5_000_000, self.merchant_hold
        return r

    def payload(self, n: int, flow: str) -> bytes:
        return b"".join(to_json_line(self.record(i, flow == "customer" or (flow == "mixed" and i % 2 == 1)))
                        for i in range(n))


ServerCpu = Callable[[], Awaitable[float]]


async def run(url: str, args: argparse.Namespace, server_cpu: ServerCpu | None) -> dict[str, list[float]]:
    """CPU-us per record of each batch: the whole process's, its event loop thread's, and (PostgreSQL) the
    server's backends' for this database."""
    world = World()
    await world.make(url)
    step = _Step(Settings(database_url=url, redis_url=args.redis))  # with Redis: the debits it mirrors too
    payloads = [world.payload(args.batch, args.flow) for _ in range(args.batches + 2)]
    for p in payloads[:2]:  # warm-up: connections, statement caches
        reply = await step.commit(p)
        assert reply.error is None, reply.error
    settle_gc()  # as the writer process does after its first batch (writer_process._serve)
    out: dict[str, list[float]] = {"process": [], "event loop thread": [], "server": []}
    profile = cProfile.Profile() if args.profile else None
    try:
        for p in payloads[2:]:
            sends = [p, p] if args.replay else [p]
            server = await server_cpu() if server_cpu is not None else 0.0
            if profile is not None:
                profile.enable()
            cpu, main = time.process_time(), time.thread_time()
            for again, body in enumerate(sends):
                reply = await step.commit(body)
                _encode_reply(reply)
                assert reply.error is None and not reply.refused and reply.done is not None, reply.error
                assert len(reply.done.consumed) == (0 if again else args.batch)  # a replay bills nothing
            cpu, main = time.process_time() - cpu, time.thread_time() - main
            if profile is not None:
                profile.disable()
            n = args.batch * len(sends)
            out["process"].append(cpu / n * 1e6)
            out["event loop thread"].append(main / n * 1e6)  # SQLite works on a thread of its own
            if server_cpu is not None:
                out["server"].append((await server_cpu() - server) / n * 1e6)
        proof = await verify(step.db)  # what `edge-proxy ledger verify` checks: the money adds up
        assert proof["ok"], proof["problems"]
    finally:
        await step.close()
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return {k: v for k, v in out.items() if v}


def backends_cpu(admin: Any, database: str) -> ServerCpu:
    """The CPU seconds so far of the PostgreSQL backends connected to `database` (the server runs here)."""
    tick = os.sysconf("SC_CLK_TCK")

    async def cpu() -> float:
        total = 0.0
        for (pid,) in await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:  # it has just ended
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return total
    return cpu


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--flow", choices=["merchant", "customer", "mixed"], default="merchant")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--replay", action="store_true", help="send each batch twice (the second bills nothing)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the batches instead")
    parser.add_argument("--redis", metavar="URL", help="Redis holds too (EDGE_PROXY_REDIS_URL): the writer then "
                        "builds the Redis copy of each batch's debits")
    args = parser.parse_args()
    if args.db == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            got = await run(f"sqlite:///{tmp}/writer.db", args, None)
    else:
        import asyncpg
        name = "edge_proxy_bench_" + secrets.token_hex(4)
        admin = await asyncpg.connect(PG_ADMIN, timeout=10)
        try:
            await admin.execute(f"CREATE DATABASE {name}")
            got = await run(PG_ADMIN.rsplit("/", 1)[0] + "/" + name, args, backends_cpu(admin, name))
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.close()
    if not args.profile:
        print(f"{args.db}{' + Redis' if args.redis else ''} {args.flow}{' replay' if args.replay else ''}: CPU-us per record over {args.batches} "
              f"batches of {args.batch}, median (min-max): " + "; ".join(
                  f"{k} {statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})" for k, v in got.items()
                  if k != "server"))
        if "server" in got:  # counted in 10 ms ticks: only the whole run's mean means something
            print(f"  PostgreSQL server backends: {statistics.mean(got['server']):.1f} CPU-us per record (mean)")


if __name__ == "__main__":
    import uvloop  # the writer process runs on uvloop (writer_process.main)
    uvloop.run(main())
