"""What the log writer process spends per record: its whole step for a batch of journal lines (split, decode,
`commit_isolating` -> `BillingEngine.commit_tx`, the reply's encoding), in this process, against a throwaway
SQLite file or PostgreSQL database, in CPU-us per record (every thread of the process: SQLite's too; on
PostgreSQL the server's CPU is not counted).

The records are the gateway's own (request/exchange.py fills the same fields): `merchant` is a merchant's secret
key on its managed provider key (bench/overhead.py's saturation run), `customer` a customer forward token on a
percentage meter (Lava's main flow, overhead.py --also-token), `mixed` alternates them. Each batch holds new
request ids; `--replay` sends every batch a second time (a retried batch: it must bill nothing).

    .venv/bin/python bench/writer_cost.py [--db sqlite|postgres] [--flow merchant|customer|mixed]
        [--batch 500] [--batches 40] [--replay] [--profile]

`--profile` prints cProfile's top functions (cumulative) instead of the timing. For before/after pairs, run the
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
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_proxy.billing import accounts, ledger  # noqa: E402
from edge_proxy.billing.payer import Payer  # noqa: E402
from edge_proxy.log_sinks import open_log_sink  # noqa: E402
from edge_proxy.log_sinks.writer_process import _encode_reply, _Step  # noqa: E402
from edge_proxy.metering.record import RequestRecord, now_iso, to_json_line  # noqa: E402
from edge_proxy.settings import Settings  # noqa: E402
from edge_proxy.store import open_store  # noqa: E402

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
            request_id=f"req_{secrets.token_hex(12)}", created_at=now_iso(), merchant_id=self.mid,
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


async def run(url: str, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """CPU-us per record of each batch: the whole process's, and its event loop thread's."""
    world = World()
    await world.make(url)
    step = _Step(Settings(database_url=url))
    payloads = [world.payload(args.batch, args.flow) for _ in range(args.batches + 2)]
    for p in payloads[:2]:  # warm-up: connections, statement caches
        reply = await step.commit(p)
        assert reply.error is None, reply.error
    per_record: list[float] = []
    on_loop: list[float] = []  # the event loop's thread alone (SQLite works on a thread of its own)
    profile = cProfile.Profile() if args.profile else None
    try:
        for p in payloads[2:]:
            sends = [p, p] if args.replay else [p]
            if profile is not None:
                profile.enable()
            cpu, main = time.process_time(), time.thread_time()
            for body in sends:
                reply = await step.commit(body)
                _encode_reply(reply)
                assert reply.error is None and not reply.refused, reply.error
            cpu, main = time.process_time() - cpu, time.thread_time() - main
            if profile is not None:
                profile.disable()
            per_record.append(cpu / (args.batch * len(sends)) * 1e6)
            on_loop.append(main / (args.batch * len(sends)) * 1e6)
    finally:
        await step.close()
    if profile is not None:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(35)
    return per_record, on_loop


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--flow", choices=["merchant", "customer", "mixed"], default="merchant")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--replay", action="store_true", help="send each batch twice (the second bills nothing)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the batches instead")
    args = parser.parse_args()
    if args.db == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            per_record, on_loop = await run(f"sqlite:///{tmp}/writer.db", args)
    else:
        import asyncpg
        name = "edge_proxy_bench_" + secrets.token_hex(4)
        admin = await asyncpg.connect(PG_ADMIN, timeout=10)
        try:
            await admin.execute(f"CREATE DATABASE {name}")
            per_record, on_loop = await run(PG_ADMIN.rsplit("/", 1)[0] + "/" + name, args)
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.close()
    if not args.profile:
        print(f"{args.db} {args.flow}{' replay' if args.replay else ''}: CPU-us per record over {args.batches} "
              f"batches of {args.batch} (min / median / max): {min(per_record):.1f} / "
              f"{statistics.median(per_record):.1f} / {max(per_record):.1f}; the event loop's thread: "
              f"{statistics.median(on_loop):.1f}")


if __name__ == "__main__":
    import uvloop  # the writer process runs on uvloop (writer_process.main)
    uvloop.run(main())
