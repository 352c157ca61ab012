#!/usr/bin/env bash
# Installs edge_proxy into ./.venv on a fresh Debian/Ubuntu machine, with the system packages it needs.
#   scripts/bootstrap.sh          the gateway (compiled hot path included)
#   scripts/bootstrap.sh --test   plus what the test suite needs: test libraries, redis-server and redis-cli (the
#                                 tests start their own Redis Cluster and Sentinel set from them), PostgreSQL (the
#                                 shared server, and initdb/pg_ctl for the tests' private one), setpriv, HAProxy
#                                 (`haproxy -c` checks deploy/haproxy.cfg), Node.js (for the official Lava SDK),
#                                 and the extension built in place
#   scripts/bootstrap.sh --bench  plus what the benchmarks in README's Speed section need (locust, pytest-benchmark)
set -euo pipefail
cd "$(dirname "$0")/.."
want_tests=0
want_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) want_tests=1 ;;
    --bench) want_bench=1 ;;
    *) echo "bootstrap: unknown option $arg (use --test and/or --bench)" >&2; exit 2 ;;
  esac
done

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "bootstrap: need root to run: $*" >&2; exit 1; fi; }

missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v gcc >/dev/null || missing+=(gcc)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null \
  || missing+=(python3-dev)
if [ "$want_tests" = 1 ]; then
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  { command -v pg_ctlcluster && ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 || missing+=(postgresql)
  command -v setpriv >/dev/null || missing+=(util-linux)
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  # the dashboard's browser test drives Debian's Chromium through Playwright (never Playwright's own download)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
extras=()
[ "$want_tests" = 1 ] && extras+=(test)
[ "$want_bench" = 1 ] && extras+=(test bench)
if [ "${#extras[@]}" -gt 0 ]; then
  .venv/bin/python -m pip install -q -e ".[$(IFS=,; echo "${extras[*]}")]"
else
  .venv/bin/python -m pip install -q -e .
fi
if [ "$want_tests" = 1 ] && [ -f tests/node/package.json ]; then
  (cd tests/node && npm ci --silent --no-audit --no-fund >/dev/null)
fi
# Python (and Granian, which puts the working directory first on sys.path) imports edge_proxy from this tree,
# so the compiled twins must sit beside the pure ones. The editable install above builds them there (setuptools
# runs build_ext --inplace for an editable install); say so loudly if it did not.
if ! .venv/bin/python -c 'import edge_proxy._forward_token_c, edge_proxy.metering._usage_scan_c, edge_proxy._headers_c, edge_proxy.metering._cost_c, edge_proxy.billing._media_scan_c, edge_proxy.observability._tally_c, edge_proxy.log_sinks._rows_c' 2>/dev/null; then
  echo "bootstrap: the compiled hot path did not build; the gateway will run its pure-Python twins" >&2
fi
