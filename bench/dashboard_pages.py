"""How fast the dashboard's Usage and Requests pages are with a million requests in the log (PostgreSQL).

Creates a throwaway database on a PostgreSQL server (default the local one; dropped at the end, even on error),
seeds 1,000,000 request rows for one merchant over the last 30 days with generate_series (200 customers, one
rare customer with 20 rows, 6 models, 2% errors, a metadata field), starts a real gateway on it, signs in to the
dashboard over HTTP, and times each page end to end (keep-alive client, the whole HTML answer):
  Usage (30 days, split by model; by customer), Requests (first page; filtered by a customer, by the rare
  customer, by status=error, by metadata; a cursor page 900,000 rows deep).
With `--before-tree DIR` (an export of an earlier commit: `git archive <rev> | tar -x -C DIR`) it first runs
that tree's gateway on the same data, without the indexes added since, then this tree's; it prints EXPLAIN
(ANALYZE, BUFFERS) of each page's query in both (the log scans before; the usage rollup and row-value cursors after).

    .venv/bin/python bench/dashboard_pages.py [--rows 1000000] [--runs 15] [--before-tree DIR]
    (EDGE_PROXY_TEST_POSTGRES names the server's admin URL; default postgres@127.0.0.1:5432)

Talks to 127.0.0.1 only; every loop is bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_proxy.api.common import encode_cursor
from edge_proxy.log_sinks import open_log_sink, sql, usage_rollup

ADMIN_URL = os.environ.get("EDGE_PROXY_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")
# the indexes this work added to the request log (log_sinks/sql.py create_table); "before" drops them
NEW_INDEXES = re.findall(r"CREATE INDEX IF NOT EXISTS (\w+) ON requests", sql.create_table())[1:]

SEED = """
INSERT INTO requests (request_id, created_at, merchant_id, customer_id, meter_slug, meter_id, provider,
    provider_key_type, model, endpoint, stream, status_code, outcome, error_reason, input_tokens, output_tokens,
    cached_tokens, cache_write_tokens, reasoning_tokens, input_characters, output_characters, input_seconds,
    output_seconds, usage_source, cost_nanos, input_cost_nanos, output_cost_nanos, priced, charge_nanos, charge_rate,
    payer, reserved_nanos, latency_ms, overhead_ms, metadata)
SELECT 'req_' || lpad(to_hex(i), 12, '0'),
       to_char((now() AT TIME ZONE 'utc') - i * ($2::float8 / $3) * interval '1 second',
               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       $1,
       CASE WHEN i % 50000 = 7 THEN 'cus_rare' ELSE 'cus_' || (i % 200) END,
       'chat', 'mtr_bench',
       (ARRAY['openai', 'openai', 'anthropic', 'anthropic', 'google', 'google'])[i % 6 + 1],
       'managed',
       (ARRAY['gpt-4o-mini', 'gpt-4o', 'claude-haiku-4-5', 'claude-sonnet-4-5', 'gemini-2.0-flash',
              'gemini-2.5-pro'])[i % 6 + 1],
       '/v1/chat/completions', (i % 3 = 0)::int,
       CASE WHEN i % 50 = 0 THEN 500 ELSE 200 END,
       CASE WHEN i % 50 = 0 THEN 'error' ELSE 'completed' END,
       CASE WHEN i % 50 = 0 THEN 'upstream 500' END,
       100 + i % 900, 50 + i % 400, 0, 0, 0, 0, 0, 0, 0, 'provider',
       (100 + i % 900) * 150 + (50 + i % 400) * 600, (100 + i % 900) * 150, (50 + i % 400) * 600, 1,
       CASE WHEN i % 50 = 0 THEN 0 ELSE (150 + i % 900 + i % 400) * 3000 END, 'fixed|tokens_1m|0|3',
       'customer', 0, 300.5, 0.4, '{"team": "t' || (i % 10) || '"}'
FROM generate_series(1, $3) AS i
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _url_for(db: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + db


def gateway_env(db_url: str, spill: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_PROXY_")}
    env.update({"EDGE_PROXY_DATABASE_URL": db_url, "EDGE_PROXY_SPILL_DIR": spill})
    return env


def cli(env: dict[str, str], *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "edge_proxy", *args], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout)


class Gateway:
    def __init__(self, env: dict[str, str], log: Path, tree: Path = ROOT) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "edge_proxy", "serve", "--port", str(self.port)],
                                         env=env, cwd=tree, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gateway did not come up: " + log.read_text(errors="replace")[-2000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def signed_in(url: str, key: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60, follow_redirects=False)
    form = client.get("/dashboard/login").text
    token = re.search(r'name="login_token" value="([^"]+)"', form).group(1)
    r = client.post("/dashboard/login", data={"login_token": token, "secret_key": key})
    assert r.status_code == 303, r.text
    return client


def time_page(client: httpx.Client, path: str, runs: int) -> dict:
    client.get(path)  # warm: statement cache, templates, the database's buffers
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:500])
    return {"min": min(times), "median": statistics.median(times), "max": max(times)}


async def explain(conn: asyncpg.Connection, query: str, args: list) -> str:
    numbers = iter(range(1, 1000))
    text = re.sub(r"\?", lambda _: f"${next(numbers)}", query)
    rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + text, *args)
    return "\n".join(r[0] for r in rows)


def _old_cursor(query: tuple[str, list]) -> tuple[str, list]:
    """The list query as it was before row-value cursors (created_at < ? OR (created_at = ? AND id < ?))."""
    text, args = query
    at = args.index(args[-3])  # the cursor's created_at, then its request id, then the limit
    text = text.replace("(created_at, request_id) < (?, ?)", "(created_at < ? OR (created_at = ? AND request_id < ?))")
    return text, args[:at] + [args[at], args[at], args[at + 1], args[-1]]


def page_queries(mid: str, deep: tuple[str, str], phase: str) -> dict[str, tuple[str, list]]:
    """The SQL each timed page runs for its data: before, the log scans; after, what this tree's sink runs."""
    def where() -> sql.Where:
        return sql.Where(lambda i: "?", lambda col, key: f"(({col})::jsonb ->> {key})")
    end = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    start = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 29 * 86400))
    month = sql.Filters(mid, start=start, end=end)
    deep_page = sql.list_sql(where().filters(sql.Filters(mid)), deep, 51)
    return {
        "usage by model": (sql.usage_by_sql(where().filters(month), "model") if phase == "before" else
                           usage_rollup.query(month, "model")),
        "requests, first page": sql.list_sql(where().filters(sql.Filters(mid)), None, 51),
        "requests, one customer": sql.list_sql(where().filters(sql.Filters(mid, customer_id="cus_42")), None, 51),
        "requests, rare customer": sql.list_sql(where().filters(sql.Filters(mid, customer_id="cus_rare")), None, 51),
        "requests, deep cursor": _old_cursor(deep_page) if phase == "before" else deep_page,
    }


PAGES = {
    "usage 30 days by model": "/dashboard/usage?split=model",
    "usage 30 days by customer": "/dashboard/usage?split=customer",
    "requests, first page": "/dashboard/requests",
    "requests, one customer": "/dashboard/requests?customer_id=cus_42",
    "requests, rare customer": "/dashboard/requests?customer_id=cus_rare",
    "requests, status=error": "/dashboard/requests?status=error",
    "requests, metadata team=t3": "/dashboard/requests?metadata=team%3Dt3",
    "requests, deep cursor": None,  # filled in once the cursor is known
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before-tree", type=Path, help="an export of an earlier commit to time first")
    parser.add_argument("--no-explain", action="store_true")
    args = parser.parse_args()
    name = "edge_proxy_bench_" + secrets.token_hex(4)
    admin = await asyncpg.connect(ADMIN_URL, timeout=10)
    await admin.execute(f"CREATE DATABASE {name}")
    db_url = _url_for(name)
    gateway = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = gateway_env(db_url, str(Path(tmp) / "spill"))
            merchant = cli(env, "merchants", "create", "--name", "bench", "--balance", "100")
            conn = await asyncpg.connect(db_url, timeout=10)
            sink = open_log_sink(db_url)
            await sink.open()  # the table, every index of this tree, and the (empty) usage rollup
            started = time.perf_counter()
            await conn.execute(SEED, merchant["merchant_id"], float(args.days * 86400), args.rows)
            seeded = time.perf_counter()
            await usage_rollup.rebuild(sink.db)  # what the first start after an upgrade does
            rebuilt = time.perf_counter()
            await sink.close()
            await conn.execute("VACUUM ANALYZE")
            print(f"seeded {args.rows:,} rows in {seeded - started:.1f} s; usage rollup rebuilt from them in "
                  f"{rebuilt - seeded:.1f} s ({await conn.fetchval('SELECT count(*) FROM usage_daily'):,} rows); "
                  f"indexes added: {', '.join(NEW_INDEXES) or 'none'}")
            deep_row = await conn.fetchrow("SELECT created_at, request_id FROM requests WHERE merchant_id = $1 "
                                           "ORDER BY created_at DESC, request_id DESC OFFSET $2 LIMIT 1",
                                           merchant["merchant_id"], int(args.rows * 0.9))
            deep = (deep_row[0], deep_row[1])
            PAGES["requests, deep cursor"] = "/dashboard/requests?cursor=" + encode_cursor(*deep)
            results = {}
            for phase in ("before", "after"):
                if phase == "before" and args.before_tree is None:
                    continue
                if phase == "before":
                    for index in NEW_INDEXES:
                        await conn.execute(f"DROP INDEX IF EXISTS {index}")
                else:
                    await conn.execute(sql.create_table())
                    await conn.execute("VACUUM ANALYZE requests")
                tree = args.before_tree if phase == "before" else ROOT
                gateway = Gateway(env, Path(tmp) / f"gateway-{phase}.log", tree)
                client = signed_in(gateway.url, merchant["secret_key"])
                results[phase] = {label: time_page(client, path, args.runs) for label, path in PAGES.items()}
                client.close()
                gateway.stop()
                gateway = None
                if not args.no_explain:
                    for label, (query, qargs) in page_queries(merchant["merchant_id"], deep, phase).items():
                        print(f"\n-- {phase}: {label}\n{await explain(conn, query, qargs)}")
            await conn.close()
        print(f"\n{args.rows:,} requests, one merchant, {args.days} days; ms per page (min / median / max of "
              f"{args.runs}), end to end over HTTP")
        print(f"{'page':32}" + "".join(f"{phase:>26}" for phase in results))
        for label in PAGES:
            print(f"{label:32}" + "".join(
                f"{r[label]['min']:8.1f} / {r[label]['median']:6.1f} / {r[label]['max']:6.1f}"
                for r in results.values()))
    finally:
        if gateway is not None:
            gateway.stop()
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
