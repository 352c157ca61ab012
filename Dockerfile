# Multi-stage: build the wheel (with the compiled hot path), then run it as a non-root user.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY _fastpath ./_fastpath
COPY edge_proxy ./edge_proxy
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 edge
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER edge
WORKDIR /home/edge
ENV EDGE_PROXY_HOST=0.0.0.0 \
    EDGE_PROXY_PORT=8080 \
    EDGE_PROXY_DATABASE_URL=sqlite:////home/edge/edge-proxy.db
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
# One worker per core; override with --workers N.
CMD ["sh", "-c", "exec edge-proxy serve --host \"$EDGE_PROXY_HOST\" --port \"$EDGE_PROXY_PORT\" --workers \"${EDGE_PROXY_WORKERS:-$(nproc)}\""]
