"""What observability costs a request, in-process, each figure against a baseline in the same run.

    .venv/bin/python bench/metrics_cost.py [--n 200000]

  * metrics, on the request path: `Observability.finished` (what `Exchange.finish` calls: a list append, tracing
    off) against a bare dict increment;
  * metrics, off the request path: the publisher's work per record (`Publisher.publish` over a batch of 1,000),
    into prometheus-client's multiprocess files;
  * for comparison, what writing each request's figures straight to prometheus-client's multiprocess files would
    cost on the request path (one counter increment and three histogram observations);
  * tracing on: the request span, one attempt span with its `traceparent`, and its end (`Tracer.serve`,
    `attempt_started`, `attempt_finished`), exported in batches to an OTLP/HTTP receiver on loopback, against a
    direct call of the same coroutine.
Absolute figures differ between machines; the ratios are the result.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def per_call_ns(fn, n: int) -> float:
    gc.disable()
    try:
        t = time.perf_counter_ns()
        for _ in range(n):
            fn()
        return (time.perf_counter_ns() - t) / n
    finally:
        gc.enable()


def best(fn, n: int, rounds: int = 5) -> float:
    return min(per_call_ns(fn, n) for _ in range(rounds))


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    args = ap.parse_args()
    n = args.n
    tmp = Path(tempfile.mkdtemp(prefix="metrics-cost-"))
    metrics_dir = tmp / "prom"
    metrics_dir.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # before prometheus-client is first imported

    from edge_proxy.metering.record import RequestRecord
    from edge_proxy.services import Services
    from edge_proxy.settings import Settings

    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    settings = Settings(database_url=f"sqlite:///{tmp / 'g.db'}", metrics_dir=str(metrics_dir),
                        spill_dir=str(tmp / "spill"))
    svc = Services(settings)
    record = RequestRecord(request_id="req_1", created_at="2026-12-03T00:00:00Z", merchant_id="m", provider="openai",
                           model="gpt-4o-mini", status_code=200, input_tokens=12, output_tokens=30, cost_nanos=1234,
                           priced=True, latency_ms=12.5, overhead_ms=0.15)
    ex = SimpleNamespace(head_at=2.0, sent_at=1.99)
    finished = svc.observability.finished
    rows = []

    # -- the request path, tracing off: a list append, against a dict increment
    tally: dict[tuple[str, str], int] = {}
    key = ("openai", "gpt-4o")

    def dict_increment() -> None:
        tally[key] = tally.get(key, 0) + 1

    def hook() -> None:
        finished(ex, record)  # type: ignore[arg-type]
        if len(svc.metrics.finished) > 10_000:  # the publisher takes the list a few times a second
            svc.metrics.finished.clear()

    base = best(dict_increment, n)
    rows.append(("dict increment (baseline)", base, 1.0))
    hot = best(hook, n)
    rows.append(("Observability.finished, tracing off (request path)", hot, hot / base))

    # -- off the request path: the publisher's work per record, into the multiprocess files
    publisher = svc.observability.publisher
    batch = 1000

    def publish_batch() -> None:
        svc.metrics.finished.extend([(record, 0.01)] * batch)
        publisher.publish()

    publish_batch()
    per_record = min(per_call_ns(publish_batch, 20) for _ in range(5)) / batch
    rows.append(("publish, per record (off the request path)", per_record, per_record / base))

    # -- for comparison: every request's figures written straight to the mmap files
    import prometheus_client as pc
    counter = pc.Counter("cmp_requests_total", "x", ("provider", "model", "status", "region"), registry=None)
    hist = pc.Histogram("cmp_seconds", "x", ("provider", "region"), registry=None)
    c, h = counter.labels("openai", "gpt-4o", "2xx", "r"), hist.labels("openai", "r")

    def direct() -> None:
        c.inc()
        h.observe(0.0125)
        h.observe(0.01)
        h.observe(0.00015)

    d = best(direct, n // 10)
    rows.append(("prometheus-client mmap per request (not used)", d, d / base))

    # -- tracing on
    from edge_proxy.observability.tracing import Tracer
    os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", str(n))  # export every span: its cost is part of the figure
    tracer = Tracer(f"http://127.0.0.1:{sink.server_address[1]}", "bench")
    from edge_proxy.upstream import HeaderBlock
    headers = HeaderBlock(b"content-type: application/json\r\n", 1)
    attempt = SimpleNamespace(provider=SimpleNamespace(name="openai"), model="gpt-4o-mini", method="POST",
                              target=SimpleNamespace(host="api.openai.com"))
    scope = SimpleNamespace(method="POST", path="/v1/chat/completions", headers={})
    tex = SimpleNamespace(request_id="req_1", attempt=attempt, head_at=2.0, sent_at=1.99)

    async def request_path(svc_, scope_) -> None:
        tracer.attempt_started(tex, attempt, headers)  # type: ignore[arg-type]
        tracer.attempt_finished(tex, record)  # type: ignore[arg-type]

    async def untraced(svc_, scope_) -> None:
        return None

    async def loop_of(fn, m: int) -> float:
        gc.disable()
        t = time.perf_counter_ns()
        for _ in range(m):
            await fn()
        took = (time.perf_counter_ns() - t) / m
        gc.enable()
        return took

    async def run() -> tuple[float, float]:
        m = n // 20
        direct_ns = min([await loop_of(lambda: untraced(svc, scope), m) for _ in range(5)])
        traced_ns = min([await loop_of(lambda: tracer.serve(request_path, svc, scope), m) for _ in range(5)])
        return direct_ns, traced_ns

    direct_ns, traced_ns = asyncio.run(run())
    rows.append(("direct coroutine call (baseline)", direct_ns, 1.0))
    rows.append(("tracing on: request span + 1 attempt span", traced_ns, traced_ns / direct_ns))
    tracer.close()
    sink.shutdown()

    print(f"python {sys.version.split()[0]}, n={n}, {os.cpu_count()} CPUs")
    print(f"{'what':55} {'ns/call':>10} {'ratio':>8}")
    for what, ns, ratio in rows:
        print(f"{what:55} {ns:10.0f} {ratio:8.1f}")
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
