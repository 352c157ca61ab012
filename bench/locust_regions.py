"""Two regions under locust, standalone Redis against Redis Cluster, in one command (issue 15, "Load").

    .venv/bin/python bench/locust_regions.py [--redis standalone|cluster|both] [--users 8] [--seconds 15]
                                             [--json bench/out/locust_regions.json]

On 127.0.0.1 only: a private PostgreSQL (tests/pg.py), the fast upstream (bench/fast_upstream.py) as the
provider, and for each Redis deployment asked for (both: standalone first, then Cluster, same machine, same run)
a fresh ledger database and two regions, "eu" and "us" (bench/two_regions.py: per region its own Redis, two
gateway processes with EDGE_PROXY_REGION, HAProxy in front). It seeds merchants, meters, customers with forward
tokens on a meter, and spend keys (with and without a spend limit), then runs locust headless
(bench/locustfile_regions.py) against both regions' load balancers at once and reports per region: req/s, p50,
p99, failures, Redis commands and round trips per request (INFO on the region's masters, before the load and
after the gateways have drained), and the Redis calls on the request path: reservations the workers' leases
could not cover (their /metrics) and limited spend keys' admissions. Then it audits the ledger: `edge-proxy ledger verify`, no balance below zero,
and one billed record per request locust saw served, in the region that served it. Exit 1 if an audit fails or
a request failed.

Everything it starts stops when it ends, on Ctrl-C and on error too (see bench/two_regions.py).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

import _harness as h
import asyncpg
from two_regions import Regions, post_json

from edge_proxy.forward_token import encode_forward_token
from tests.pg import PrivatePostgres

REGIONS = ["eu", "us"]
# slug, rate type, tier type, rate: what a customer's forward token is metered on
METERS = [("chat-tokens", "percentage", "tokens_1m", "20"), ("per-call", "fixed", "requests", "0.001")]


def create_merchants(env: dict[str, str], merchants: int) -> list[str]:
    """Merchants, with the CLI (the operator funds them); this also makes the ledger's schema before any gateway
    starts. Their secret keys."""
    return [h.create_merchant(env, f"regions-merchant-{m}", "1000000")["secret_key"] for m in range(merchants)]


def seed(api: str, merchant_keys: list[str], customers: int, spend_keys: int) -> dict[str, list[str]]:
    """Over one region's REST API, each merchant's meters, customers and spend keys. Returns the credentials
    locust sends, by kind."""
    creds: dict[str, list[str]] = {"merchant": list(merchant_keys), "customer": [], "spend_key": [],
                                   "limited_key": []}
    for key in merchant_keys:
        for slug, rate_type, tier_type, rate in METERS:
            post_json(f"{api}/v1/meters", key, {"name": slug, "meter_slug": slug, "rate_type": rate_type,
                                                "tier_type": tier_type, "tiers": [{"start": "0", "rate": rate}]})
        for c in range(customers):
            cid = post_json(f"{api}/v1/customers", key, {"name": f"customer {c}", "balance": "1000"})["customer_id"]
            creds["customer"].append(encode_forward_token(key, customer_id=cid, meter_slug=METERS[c % 2][0]))
        for s in range(spend_keys):
            creds["spend_key"].append(post_json(f"{api}/v1/spend_keys", key, {"name": f"key {s}"})["key"])
            creds["limited_key"].append(post_json(f"{api}/v1/spend_keys", key, {
                "name": f"limited key {s}", "spend_limit": {"amount": "1000", "cycle": "daily"}})["key"])
    return creds


def run_locust(tmp: Path, plan: dict[str, Any], users: int, seconds: int) -> dict[str, Any]:
    plan_path, report_path = tmp / "plan.json", tmp / "report.json"
    plan_path.write_text(json.dumps(plan))
    env = dict(os.environ, LOCUST_REGIONS_PLAN=str(plan_path), LOCUST_REGIONS_REPORT=str(report_path))
    locust = Path(sys.executable).with_name("locust")
    if not locust.exists():
        raise SystemExit("locust_regions: locust is not installed: scripts/bootstrap.sh --bench")
    subprocess.run([str(locust), "-f", str(BENCH / "locustfile_regions.py"), "--headless", "-u", str(users),
                    "-r", str(users), "-t", f"{seconds}s", "--stop-timeout", "5", "--only-summary",
                    "--loglevel", "WARNING"], env=env, check=False, timeout=seconds + 120,
                   stdout=open(tmp / "locust.log", "wb"), stderr=subprocess.STDOUT)
    if not report_path.exists():
        raise RuntimeError(f"locust wrote no report:\n{(tmp / 'locust.log').read_text()[-3000:]}")
    return json.loads(report_path.read_text())["regions"]


async def _ledger_facts(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        lowest = {table: await conn.fetchval(f"SELECT min(balance_nanos) FROM {table}")
                  for table in ("merchants", "customers")}
        billed = dict(await conn.fetch("SELECT region, count(*) FROM requests WHERE status_code = 200 GROUP BY 1"))
        uncollected = await conn.fetchval("SELECT count(*) FROM requests WHERE uncollected_nanos > 0")
    finally:
        await conn.close()
    return {"lowest_balance_nanos": lowest, "served_records": billed, "uncollected_records": uncollected}


def audit(env: dict[str, str], url: str, report: dict[str, Any]) -> dict[str, Any]:
    verify = subprocess.run([h.PYTHON, "-m", "edge_proxy", "ledger", "verify"], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    facts = asyncio.run(_ledger_facts(url))
    served = {r: line["requests"] - line["failures"] for r, line in report.items()}
    problems = [] if verify.returncode == 0 else [f"ledger verify: {verify.stdout.strip()} {verify.stderr.strip()}"]
    problems += [f"{t} below zero: {n} nanos" for t, n in facts["lowest_balance_nanos"].items() if n is not None
                 and n < 0]
    problems += [f"{r}: locust saw {n} served, the ledger has {facts['served_records'].get(r, 0)} records"
                 for r, n in served.items() if facts["served_records"].get(r, 0) != n]
    if facts["uncollected_records"]:
        problems.append(f"{facts['uncollected_records']} requests could not be collected from their payer")
    return {"ledger_verify": json.loads(verify.stdout) if verify.returncode == 0 else None, **facts,
            "ok": not problems, "problems": problems}


def scenario(deployment: str, args: argparse.Namespace, tmp: Path, pg: PrivatePostgres, upstream: int) -> dict:
    url = pg.create_database()
    env = h.gateway_env(tmp / "unused.db", f"http://{h.HOST}:{upstream}/v1", {"EDGE_PROXY_DATABASE_URL": url})
    merchant_keys = create_merchants(env, args.merchants)
    regions = Regions(tmp, deployment, url, upstream, REGIONS, args.gateways, args.workers,
                      lifetime=args.seconds + 300)
    try:
        regions.start()
        h.log(f"{deployment}: regions up: " + ", ".join(f"{r.name} {r.url}" for r in regions.regions))
        creds = seed(regions.regions[0].url, merchant_keys, args.customers, args.spend_keys)
        masters = {r.name: r.redis_masters() for r in regions.regions}
        before = {r.name: r.redis_counts(masters[r.name]) for r in regions.regions}
        report = run_locust(tmp, {"regions": {r.name: r.url for r in regions.regions}, "credentials": creds},
                            args.users, args.seconds)
        leases = {r.name: r.lease_counts(args.workers) for r in regions.regions}
        regions.stop_gateways()  # drained: every record billed, every Redis debit sent
        for r in regions.regions:
            done = r.redis_counts(masters[r.name]) - before[r.name]
            n = max(1, report[r.name]["requests"])
            round_trips = done.pop("round trips", 0)
            report[r.name]["redis_round_trips_per_request"] = round(round_trips / n, 3)
            report[r.name]["redis_commands_per_request"] = round(sum(done.values()) / n, 3)
            report[r.name]["reservations"] = leases[r.name]
            # the request path's Redis calls: a reservation the worker's lease could not cover (some of these are
            # background top-ups no request waits for: an upper bound), and a limited spend key's admission
            on_path = leases[r.name]["store_calls"] + report[r.name]["by_credential"].get("limited_key", 0)
            report[r.name]["request_path_redis_calls_per_request"] = round(on_path / n, 3)
            report[r.name]["redis_commands"] = {k.removeprefix("cmd:"): v for k, v in done.most_common(10)}
    except Exception:
        h.log(f"{deployment}: failed; gateway logs:\n{regions.logs()}")
        raise
    finally:
        regions.stop()
    return {"deployment": deployment, "regions": report, "audit": audit(env, url, report)}


def print_table(results: list[dict]) -> None:
    print(f"{'redis':<11}{'region':<7}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'failures':>9}"
          f"{'cmds/req':>9}{'trips/req':>10}{'path/req':>9}  audit")
    for res in results:
        for name, r in res["regions"].items():
            print(f"{res['deployment']:<11}{name:<7}{r['requests']:>9}{r['rps']:>8}{r['p50_ms']!s:>8}"
                  f"{r['p99_ms']!s:>8}{r['failures']:>9}{r['redis_commands_per_request']:>9}"
                  f"{r['redis_round_trips_per_request']:>10}{r['request_path_redis_calls_per_request']:>9}  "
                  f"{'ok' if res['audit']['ok'] else 'FAILED'}")
        for problem in res["audit"]["problems"]:
            print(f"  audit: {problem}")
        for name, r in res["regions"].items():
            print(f"  {res['deployment']} {name}: requests {r['by_credential']}; reservations {r['reservations']}; "
                  f"redis commands {r['redis_commands']}")
            for error, count in list(r["errors"].items())[:5]:
                print(f"  {res['deployment']} {name} failure x{count}: {error}")
    print("cmds/req: Redis commands per request, those Lua scripts run included; trips/req: round trips to Redis "
          "per request (a pipeline or a script is one), the log writers' batches included; path/req: Redis calls "
          "on the request path per request (lease misses and top-ups, limited spend keys' admissions)")


def main() -> int:
    try:
        return run()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM: every `finally` has stopped what it started
        print("locust_regions: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


def run() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", choices=["standalone", "cluster", "both"], default="both")
    ap.add_argument("--users", type=int, default=8, help="locust users, dealt to the regions in turn")
    ap.add_argument("--seconds", type=int, default=15, help="seconds of load per Redis deployment")
    ap.add_argument("--gateways", type=int, default=2, help="gateway processes per region")
    ap.add_argument("--workers", type=int, default=1, help="workers per gateway process")
    ap.add_argument("--merchants", type=int, default=2)
    ap.add_argument("--customers", type=int, default=3, help="customers (forward tokens) per merchant")
    ap.add_argument("--spend-keys", type=int, default=1,
                    help="spend keys per merchant, each once without limits and once with a spend limit")
    ap.add_argument("--json", default=str(BENCH / "out" / "locust_regions.json"), help="where the report goes")
    args = ap.parse_args()
    # SIGTERM ends the run as Ctrl-C does: through every `finally`, so everything started is stopped
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    deployments = ["standalone", "cluster"] if args.redis == "both" else [args.redis]
    results = []
    with tempfile.TemporaryDirectory(prefix="edge-proxy-regions-") as tmp_dir:
        tmp = Path(tmp_dir)
        upstream_proc, upstream = h.start_fast_upstream(tmp, max_seconds=len(deployments) * (args.seconds + 300))
        pg = PrivatePostgres()
        try:
            pg.start()
            for deployment in deployments:
                (tmp / deployment).mkdir()
                results.append(scenario(deployment, args, tmp / deployment, pg, upstream))
        finally:
            pg.stop()
            upstream_proc.stop()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"users": args.users, "seconds": args.seconds, "results": results}, indent=2) + "\n")
    print_table(results)
    failed = any(not res["audit"]["ok"] or any(r["failures"] for r in res["regions"].values()) for res in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
