"""Creates the merchants and forward tokens bench/locustfile.py sends, with the gateway's own CLI.

    EDGE_PROXY_DATABASE_URL=sqlite:////tmp/locust/bench.db \
      .venv/bin/python bench/locust_setup.py [--merchants 3] [--customers 4] [--out bench/out/locust_tokens.json]

Uses the same settings as the gateway (EDGE_PROXY_* variables, or --config), so point it at the gateway's store.
For each merchant: `edge_proxy merchants create`, three meters (`edge_proxy meters create`: a percentage one, a
fixed per-million-tokens one, a per-request one), then per customer `edge_proxy customers create` (with a balance)
and a forward token (`edge_proxy tokens create --secret-key K --customer-id C --meter-slug M`). The merchant's raw
secret key is kept too (requests without a customer). Writes JSON:
    {"merchants": [{"merchant_id", "secret_key", "customers": [{"customer_id", "meter_slug", "token"}]}]}
bench/locust_run.sh does this, starts the upstream and the gateway, and runs locust, in one command.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

# slug, rate type, tier type, rate (`edge_proxy meters create`)
METERS = [("chat-standard", "percentage", "tokens_1m", "20"), ("chat-premium", "fixed", "tokens_1m", "5"),
          ("support-bot", "fixed", "requests", "0.001")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--merchants", type=int, default=3)
    ap.add_argument("--customers", type=int, default=4, help="customers (forward tokens) per merchant")
    ap.add_argument("--balance", default="1000000", help="each merchant's starting balance, USD")
    ap.add_argument("--customer-balance", default="100000", help="each customer's starting balance, USD")
    ap.add_argument("--out", default=str(h.BENCH / "out" / "locust_tokens.json"))
    args = ap.parse_args()
    if "EDGE_PROXY_DATABASE_URL" not in os.environ and "EDGE_PROXY_CONFIG" not in os.environ:
        print("locust_setup: set EDGE_PROXY_DATABASE_URL (the gateway's store) first", file=sys.stderr)
        return 2
    env = dict(os.environ)
    merchants = []
    for m in range(args.merchants):
        created = h.create_merchant(env, f"locust-merchant-{m}", args.balance)
        key = created["secret_key"]
        for slug, rate_type, tier_type, rate in METERS:
            h.create_meter(env, key, slug, rate_type, tier_type, rate)
        customers = []
        for c in range(args.customers):
            cid = h.create_customer(env, key, args.customer_balance)
            meter = METERS[(m + c) % len(METERS)][0]
            customers.append({"customer_id": cid, "meter_slug": meter, "token": h.create_token(env, key, cid, meter)})
        merchants.append({"merchant_id": created["merchant_id"], "secret_key": created["secret_key"],
                          "customers": customers})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"merchants": merchants}, indent=2) + "\n")
    print(f"locust_setup: {args.merchants} merchants x {args.customers} customers -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
