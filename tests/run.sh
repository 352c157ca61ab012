#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs what the tests need, starts the local services the tests
# use (redis-server on 6379, PostgreSQL on 5432) when they are not running, runs the short benchmark check
# (bench/ci.sh: fails only on a large regression of a ratio, never on an absolute time), then pytest on two
# processes (pytest-xdist: the slow Redis Cluster, fault and browser tests run beside the rest; pass -n 0 for one).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
scripts/services.sh
bash bench/ci.sh
exec .venv/bin/python -m pytest -n 2 "$@"
