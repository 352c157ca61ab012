#!/usr/bin/env bash
# The benchmarks, short, for CI (well under 60 s on the 2-core machine):
#   1. the micro-benchmarks (bench/bench_*.py, few rounds)             -> bench/out/micro.json
#   2. a short bench/overhead.py (300 pairs, 2 s saturation)            -> bench/out/overhead.json
#   3. a short bench/stream_relay.py (2 rounds x 4 streams of 1,000 events, one event per millisecond: ~30 s)  -> bench/out/stream.json
#   4. bench/check.py: fails only on a LARGE regression of a ratio (compiled/pure, gateway/direct) against
#      bench/baseline.json; never on an absolute time.
# Needs `scripts/bootstrap.sh --test` to have run. nginx and wrk are apt-get installed when missing and this runs as
# root; without them the overhead run uses bench/fast_upstream.py and Python load generators, and says so.
#   bash bench/ci.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p bench/out
start=$(date +%s)

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
if ! have nginx || ! have wrk; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ci.sh: installing nginx and wrk with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    timeout 240 apt-get update -qq >/dev/null 2>&1 || true
    have nginx || timeout 240 apt-get install -y -qq nginx-light >/dev/null 2>&1 \
      || timeout 240 apt-get install -y -qq nginx >/dev/null 2>&1 || true
    have wrk || timeout 240 apt-get install -y -qq wrk >/dev/null 2>&1 || true
  fi
  have nginx || echo "ci.sh: nginx is not available: saturation runs against bench/fast_upstream.py instead" >&2
  have wrk || echo "ci.sh: wrk is not available: saturation uses Python load-generator processes instead" >&2
fi

echo "== micro-benchmarks" >&2
timeout 120 "$PY" -m pytest bench/ -q -p no:cacheprovider --benchmark-enable --benchmark-min-rounds=5 \
  --benchmark-max-time=0.05 --benchmark-warmup=on --benchmark-warmup-iterations=100 \
  --benchmark-columns=median,iqr,rounds --benchmark-json=bench/out/micro.json

echo "== overhead (short)" >&2
if ! timeout 150 "$PY" bench/overhead.py --requests 300 --seconds 2 --no-install --also-token --max-total-seconds 120 \
     --out bench/out/overhead.json; then
  echo "ci.sh: the overhead run with nginx/wrk failed: running it again with bench/fast_upstream.py and Python" \
       "load generators only" >&2
  timeout 150 "$PY" bench/overhead.py --requests 300 --seconds 2 --no-install --no-nginx --no-wrk \
    --max-total-seconds 120 --out bench/out/overhead.json
fi

echo "== stream relay (short)" >&2
timeout 90 "$PY" bench/stream_relay.py --streams 4 --rounds 2 --out bench/out/stream.json >/dev/null

echo "== check against bench/baseline.json" >&2
"$PY" bench/check.py --micro bench/out/micro.json --overhead bench/out/overhead.json --stream bench/out/stream.json
echo "ci.sh: done in $(( $(date +%s) - start )) s" >&2
