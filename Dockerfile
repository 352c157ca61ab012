# Multi-stage: build edge_proxy (with the compiled hot path) into a virtualenv, then run that as a non-root user.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY _fastpath ./_fastpath
COPY edge_proxy ./edge_proxy
# Every production driver: asyncpg (the postgres extra) for EDGE_PROXY_DATABASE_URL=postgresql://...; redis-py carries
# the Redis Cluster and Sentinel clients itself; the otel extra, so EDGE_PROXY_OTEL_ENDPOINT can turn traces on (they
# are off, and the SDK is not imported, until it is set). The check fails the build if the compiled hot path or a
# driver is missing.
RUN python -m venv --without-pip /opt/edge-proxy && pip --python /opt/edge-proxy/bin/python install --no-cache-dir '.[postgres,otel]' \
 && /opt/edge-proxy/bin/python -c "import edge_proxy._forward_token_c, edge_proxy.metering._usage_scan_c, asyncpg, redis.asyncio.cluster, redis.asyncio.sentinel, prometheus_client, opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http.trace_exporter"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 edge
COPY --from=build /opt/edge-proxy /opt/edge-proxy
USER edge
WORKDIR /home/edge
ENV PATH=/opt/edge-proxy/bin:$PATH \
    EDGE_PROXY_HOST=0.0.0.0 \
    EDGE_PROXY_PORT=8080 \
    EDGE_PROXY_DATABASE_URL=sqlite:////home/edge/edge-proxy.db
EXPOSE 8080
# Probe the port the server was given (EDGE_PROXY_PORT), not a fixed 8080.
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD python -c "import os,urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('EDGE_PROXY_PORT', '8080'), timeout=2).status != 200)"
# One worker per core; override with EDGE_PROXY_WORKERS (nproc does not see a --cpus limit).
# `docker stop` waits 10 s by default, less than EDGE_PROXY_SHUTDOWN_GRACE (30 s): run with --stop-timeout 35.
CMD ["sh", "-c", "exec edge-proxy serve --host \"$EDGE_PROXY_HOST\" --port \"$EDGE_PROXY_PORT\" --workers \"${EDGE_PROXY_WORKERS:-$(nproc)}\""]
