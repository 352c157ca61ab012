"""What the dashboard's additions cost the log writer: a batch's insert transaction on PostgreSQL, with the request
log as it was (primary key + requests_by_merchant) and with requests_by_customer plus the usage rollup's upsert.

Writes `--batches` batches of 500 records (50 customers, 6 models, one merchant) into a throwaway database on
top of `--rows` seeded rows, alternating the two set-ups batch by batch into two tables so both see the same
machine noise, and prints ms per batch (min / median / max).

    .venv/bin/python bench/log_write_cost.py [--batches 40] [--rows 200000]
"""
from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# bench/ is on sys.path when this runs as a script
from dashboard_pages import ADMIN_URL, SEED, _url_for

from edge_proxy.log_sinks import SQLLogSink, usage_rollup
from edge_proxy.metering.record import RequestRecord, now_iso
from edge_proxy.store.db import open_database

MODELS = ["gpt-4o-mini", "gpt-4o", "claude-haiku-4-5", "claude-sonnet-4-5", "gemini-2.0-flash", "gemini-2.5-pro"]


def batch(n: int, tag: str) -> list[RequestRecord]:
    return [RequestRecord(request_id=f"{tag}-{i}-{secrets.token_hex(6)}", created_at=now_iso(), merchant_id="mer_b",
                          customer_id=f"cus_{i % 50}", model=MODELS[i % 6], provider="openai", status_code=200,
                          input_tokens=100 + i, output_tokens=50 + i, cost_nanos=1000 + i, charge_nanos=3000 + i,
                          payer="customer") for i in range(n)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    admin = await asyncpg.connect(ADMIN_URL, timeout=10)
    names = {"as it was": "edge_proxy_bench_" + secrets.token_hex(4), "with both": "edge_proxy_bench_" + secrets.token_hex(4)}
    sinks = {}
    try:
        for label, name in names.items():
            await admin.execute(f"CREATE DATABASE {name}")
            s = SQLLogSink(open_database(_url_for(name)))
            await s.open()
            await s.db.executescript(f"{SEED.replace('$1', quote('mer_b')).replace('$2', '2592000.0')}"
                                     .replace("$3", str(args.rows)))
            if label == "as it was":
                await s.db.executescript("DROP INDEX requests_by_customer")
            await s.db.executescript("VACUUM ANALYZE requests")
            sinks[label] = s
        times: dict[str, list[float]] = {label: [] for label in sinks}
        for i in range(args.batches):
            for label, s in sinks.items():
                records = batch(500, f"b{i}")
                start = time.perf_counter()
                async with s.db.transaction() as tx:
                    added = await s.insert_new(tx, records)
                    if label == "with both":
                        await usage_rollup.add(tx, added)
                times[label].append((time.perf_counter() - start) * 1000)
        print(f"ms per 500-record batch, {args.batches} batches on {args.rows:,} rows (min / median / max)")
        for label, t in times.items():
            print(f"  {label:10} {min(t):6.1f} / {statistics.median(t):6.1f} / {max(t):6.1f}")
    finally:
        for s in sinks.values():
            await s.close()
        for name in names.values():
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


if __name__ == "__main__":
    asyncio.run(main())
