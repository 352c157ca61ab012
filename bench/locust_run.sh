#!/usr/bin/env bash
# Locust end to end, on 127.0.0.1 only, stopping by itself:
#   bench/fast_upstream.py + the gateway (1 worker, a fresh SQLite store in a temp dir) -> bench/locust_setup.py
#   (3 merchants x 4 customers -> bench/out/locust_tokens.json) -> locust headless -> everything stopped.
#   bash bench/locust_run.sh [USERS=20] [SPAWN_RATE=10] [DURATION=15s]
# Locust comes with the bench extra: scripts/bootstrap.sh --bench. Reports: bench/out/locust_stats*.csv, locust.html.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
LOCUST=.venv/bin/locust
USERS=${1:-20}; RATE=${2:-10}; DURATION=${3:-15s}
[ -x "$LOCUST" ] || { echo "locust_run: locust is not installed: scripts/bootstrap.sh --bench" >&2; exit 2; }
mkdir -p bench/out
tmp=$(mktemp -d)
read -r UP_PORT GW_PORT < <("$PY" -c 'import sys; sys.path.insert(0, "bench"); import _harness as h; print(h.free_port(), h.free_port())')
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

"$PY" bench/fast_upstream.py --port "$UP_PORT" --max-seconds 600 >"$tmp/upstream.log" 2>&1 &
pids+=($!)
export EDGE_PROXY_DATABASE_URL="sqlite:///$tmp/bench.db"
export EDGE_PROXY_UPSTREAM_OPENAI="http://127.0.0.1:$UP_PORT/v1"
export EDGE_PROXY_PROVIDER_KEY_OPENAI=sk-bench
export EDGE_PROXY_LOG_LEVEL=warning
export EDGE_PROXY_SPILL_DIR="$tmp/spill"
"$PY" bench/locust_setup.py --merchants 3 --customers 4 --out bench/out/locust_tokens.json
timeout 600 "$PY" -m edge_proxy serve --port "$GW_PORT" --workers 1 >"$tmp/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  if "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $GW_PORT), 0.2)" 2>/dev/null; then break; fi
  sleep 0.1
done
echo "locust_run: gateway on 127.0.0.1:$GW_PORT, fast upstream on 127.0.0.1:$UP_PORT" >&2
timeout 300 "$LOCUST" -f bench/locustfile.py --headless -u "$USERS" -r "$RATE" -t "$DURATION" \
  --host "http://127.0.0.1:$GW_PORT" --csv bench/out/locust --html bench/out/locust.html --only-summary \
  --stop-timeout 5 2>&1 | tee bench/out/locust.txt
