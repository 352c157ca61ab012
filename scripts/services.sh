#!/usr/bin/env bash
# Starts the local redis-server and PostgreSQL the tests talk to, if they are not already answering.
# The Redis Cluster (6 nodes), the Sentinel set and the private PostgreSQL that the fault tests break are not
# started here: pytest fixtures start them per session (per xdist worker) on spare ports, and they die with the
# test run (tests/redis_fixtures.py, tests/pg.py).
set -euo pipefail
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  mkdir -p /tmp/edge-proxy-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/edge-proxy-redis --logfile /tmp/edge-proxy-redis/redis.log
fi
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
# The tests log in over TCP as postgres/postgres; a fresh Debian cluster asks for a password there.
if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432 -t 30 \
   && ! PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -tAc 'select 1' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" || true
  fi
fi
for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
