#!/usr/bin/env bash
# Builds the image and checks what the Dockerfile promises: healthy on /healthz at EDGE_PROXY_PORT, a non-root
# user, the compiled hot path in use, the production drivers (asyncpg, Redis Cluster and Sentinel), one worker per
# core, and a clean stop. Needs a Docker daemon and the base
# image (python:3.11-slim) pullable or present locally. Stops and removes its container whatever happens.
#   scripts/docker_check.sh [image-tag]
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-edge-proxy:check}
name=edge-proxy-check-$$
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT

docker build -q -t "$tag" . >/dev/null
docker run -d --name "$name" --network host -e EDGE_PROXY_PORT="$port" "$tag" >/dev/null
status=starting
for _ in $(seq 1 60); do
  status=$(docker inspect --format '{{.State.Health.Status}}' "$name")
  [ "$status" = starting ] || break
  sleep 1
done
echo "health: $status"; [ "$status" = healthy ]
echo "healthz: $(curl -fsS "http://127.0.0.1:$port/healthz")"
uid=$(docker exec "$name" id -u); echo "uid: $uid"; [ "$uid" != 0 ]
docker exec "$name" python -c 'import edge_proxy._forward_token_c, edge_proxy.metering._usage_scan_c; print("compiled: ok")'
docker exec "$name" python -c 'import asyncpg, redis.asyncio.cluster, redis.asyncio.sentinel; print("drivers: ok")'
# a PostgreSQL URL must get as far as connecting (refused: nothing listens on port 1), not stop at a missing driver
pg_out=$(docker exec -e EDGE_PROXY_DATABASE_URL=postgresql://edge@127.0.0.1:1/edge "$name" \
  edge-proxy merchants show --secret-key ep_sk_none 2>&1 || true)
echo "postgresql url: $(echo "$pg_out" | tail -n 1)"
if echo "$pg_out" | grep -q "asyncpg\|ModuleNotFoundError"; then exit 1; fi
workers=$(docker logs "$name" 2>&1 | grep -c "Spawning worker" || true)
cores=$(docker exec "$name" nproc); echo "workers: $workers (nproc $cores)"; [ "$workers" = "$cores" ]
docker stop "$name" >/dev/null
code=$(docker inspect --format '{{.State.ExitCode}}' "$name"); echo "exit code after docker stop: $code"; [ "$code" = 0 ]
echo "docker_check: ok ($(docker images --format '{{.Size}}' "$tag"))"
