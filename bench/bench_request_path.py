"""The gateway's own Python cost per request, with the network taken out.

Runs the app (router, permission check, the request path) in-process against a stub RSGI protocol and a stub
upstream that answers at once, so what is timed is only our code on the request path (auth cache hit, plan,
headers, reservation, relay, record), then the log writer's work per record, and how long the event loop stalls while the writer works (set
EDGE_PROXY_LOG_WRITER=inline to compare with the writer on the loop). Run: .venv/bin/python bench/bench_request_path.py [--requests N]
[--credential secret|token] [--body short|chat] [--set EDGE_PROXY_DATABASE_URL=postgresql://...] [--set EDGE_PROXY_REDIS_URL=redis://...]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge_proxy.app import Gateway  # noqa: E402
from edge_proxy.gc_settle import settle_gc  # noqa: E402
from edge_proxy.settings import Settings  # noqa: E402

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello from my agent!"}],"max_tokens":64}'
_TURN = ("Please summarize the following text for me and explain what it means, then list three questions a "
         "reader would ask next about the quick brown fox that jumps over the lazy dog. ") * 2
# --body chat: a conversation of 12 turns, 4.3 KB, as an agent sends a few turns in
CHAT = ('{"model":"gpt-4o-mini","max_tokens":64,"messages":['
        + ",".join(f'{{"role":"{"user" if i % 2 == 0 else "assistant"}","content":"{_TURN}"}}' for i in range(12))
        + ']}').encode()
ANSWER = (b'{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":'
          b'{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,'
          b'"completion_tokens":2,"total_tokens":14}}')


class Headers(dict):
    pass


class Scope:
    """Granian's scope builds a new headers object at every `scope.headers` (~0.4 us): so does this one."""

    def __init__(self, key: str, body: bytes) -> None:
        self.method = "POST"
        self.path = "/providers/openai/v1/chat/completions"
        self.query_string = ""
        self._headers = Headers({
            "host": "127.0.0.1:8080", "authorization": f"Bearer {key}", "content-type": "application/json",
            "content-length": str(len(body)), "user-agent": "OpenAI/Python 1.0", "accept": "application/json",
            "x-stainless-lang": "python", "x-stainless-os": "Linux", "x-stainless-arch": "x64",
            "x-stainless-runtime": "CPython", "x-stainless-retry-count": "0", "accept-encoding": "gzip, deflate"})

    @property
    def headers(self) -> Headers:
        return Headers(self._headers)


class Proto:
    body_sent = BODY

    async def __call__(self):
        return self.body_sent

    def response_bytes(self, status, headers, body):
        self.status = status
        self.body = body


class Response:
    status = 200
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode()),
               (b"x-request-id", b"req_upstream"), (b"openai-processing-ms", b"12")]
    content_length = len(ANSWER)

    async def read(self):
        return ANSWER


class Upstream:
    async def request(self, *args):
        return Response()

    async def close(self):
        pass


class LoopLag:
    """What a request arriving while the writer works would wait for: the gaps between the turns of a task that
    only yields (`sleep(0)`, so no timer resolution in the way), and how much of each gap the event loop's own
    thread spent running other code (the rest is waiting: for the GIL another thread holds, or for a CPU)."""

    def __init__(self) -> None:
        self.gaps: list[tuple[float, float]] = []  # (wall, loop thread CPU)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        t, c = time.perf_counter(), time.thread_time()
        while True:
            await asyncio.sleep(0)
            now, cpu = time.perf_counter(), time.thread_time()
            self.gaps.append((now - t, cpu - c))
            t, c = now, cpu

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def summary(self) -> str:
        if not self.gaps:
            return "no turns"
        wall = sorted(g for g, _ in self.gaps)
        busy = sorted(c for _, c in self.gaps)
        over = [g for g in wall if g > 0.0005]
        return (f"gaps p99.9 {wall[int(0.999 * (len(wall) - 1))] * 1000:.3f} ms, max {wall[-1] * 1000:.2f} ms, "
                f"{len(over)} over 0.5 ms ({sum(over) * 1000:.0f} ms in all); the loop thread itself ran other "
                f"code for at most {busy[-1] * 1000:.2f} ms in one gap (p99.9 {busy[int(0.999 * (len(busy) - 1))] * 1000:.3f} ms)")


async def timed(work, profile: bool) -> float:
    """Seconds `work()` took; with profile, cProfile's top functions are printed too."""
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    started = time.perf_counter()
    await work()
    took = time.perf_counter() - started
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    return took


async def started_gateway(extra: dict[str, str] | None = None) -> tuple[Gateway, str]:
    """The app started in-process on a fresh SQLite file with the upstream stubbed, and a funded merchant's secret
    key (bench_finish.py and finish_instructions.py start it the same way)."""
    tmp = tempfile.mkdtemp()
    gw = Gateway(Settings.load(env={"EDGE_PROXY_DATABASE_URL": f"sqlite:///{tmp}/b.db",
                                    "EDGE_PROXY_SPILL_DIR": f"{tmp}/spill", "EDGE_PROXY_PROVIDER_KEY_OPENAI": "k",
                                    **(extra or {})}))
    await gw.start()
    _, key = await gw.svc.store.create_merchant("bench", 10**18)
    gw.svc.upstream = Upstream()
    return gw, key


async def stop_log_writer(svc, drain: bool = True) -> None:
    """Stop the log writer task (its work is timed on its own, or not at all); with `drain`, commit what is queued."""
    writer, svc.log_queue._task = svc.log_queue._task, None
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    while drain and svc.log_queue.depth:
        await svc.log_queue._flush_one()


async def stop_clock_work(svc) -> None:
    """Stop the work that runs by the clock, the key-event poll and the metrics publisher's ticks: under callgrind
    it would count more the slower valgrind runs on a busy machine."""
    await svc.key_events.stop()
    ticker, svc.observability._task = svc.observability._task, None
    if ticker is not None:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


async def customer_token(svc, secret_key: str) -> str:
    """A forward token of a funded customer on a percentage meter (Lava's main flow), as overhead.py --also-token
    makes one."""
    from decimal import Decimal

    from edge_proxy.api.customers import credit_customer
    from edge_proxy.billing import accounts
    from edge_proxy.forward_token import encode_forward_token

    principal = await svc.auth.authenticate(secret_key)
    mid = principal.merchant_id
    await accounts.create_meter(svc.store.db, mid, "bench-meter", "bench-meter", "percentage", "tokens_1m",
                                [accounts.Tier(0, Decimal(10))])
    customer = await accounts.create_customer(svc.store.db, mid, {})
    await credit_customer(svc.balances, svc.store.db, mid, customer.customer_id, 10**17)
    return encode_forward_token(secret_key, customer.customer_id, "bench-meter")


async def run(n: int, profile: bool, extra: dict[str, str], credential: str = "secret", body: str = "short",
              only_requests: bool = False) -> None:
    gw, key = await started_gateway(extra)
    svc = gw.svc
    Proto.body_sent = BODY if body == "short" else CHAT
    scope = Scope(key if credential == "secret" else await customer_token(svc, key), Proto.body_sent)
    for _ in range(200):  # warm the caches and the lease
        proto = Proto()
        await gw.__rsgi__(scope, proto)
        if proto.status != 200:  # a refused request would time the refusal, not the request path
            raise SystemExit(f"the gateway answered {proto.status}, not 200: {proto.body[:300]!r}")
    await stop_log_writer(svc)  # its work is timed on its own, below; a writer process is started and idle first
    if only_requests:
        # bench/instructions.py counts instructions per request: the publisher's work per record is still counted,
        # by a publish every 100 requests
        await stop_clock_work(svc)

    async def requests() -> None:
        for i in range(n):
            await gw.__rsgi__(scope, Proto())
            if only_requests and i % 100 == 99:
                svc.observability.publisher.publish()

    cpu = time.thread_time()
    took = await timed(requests, profile)
    cpu = time.thread_time() - cpu  # the loop thread's CPU: what a shared machine's other load does not inflate
    print(f"{n} requests: {took / n * 1e6:.1f} us of gateway Python per request, {cpu / n * 1e6:.1f} us of the loop "
          f"thread's CPU (request path only; the log writer's share is not in this figure)")
    if only_requests:  # bench/instructions.py counts the instructions of just this part
        await gw.stop()
        return

    async def writer_batches() -> None:  # bill and write what is queued, log_batch_size at a time
        while svc.log_queue.depth:
            await svc.log_queue._flush_one()

    queued = svc.log_queue.depth
    cpu = time.process_time()
    took = await timed(writer_batches, profile)
    cpu = time.process_time() - cpu
    print(f"{queued} records written in batches of {svc.settings.log_batch_size} by the {svc.settings.log_writer} "
          f"writer: {took / queued * 1e6:.1f} us per record (wall), {cpu / queued * 1e6:.1f} us of this process's "
          f"CPU per record (the serving process; a writer process's own CPU is not in it)")
    for _ in range(n):  # the same again, with a task beside it that measures the event loop's gaps
        await gw.__rsgi__(scope, Proto())
    # As in a worker: these requests never yielded, so the metrics publisher (every 0.25 s) has not seen them,
    # and a worker has frozen what it built at start (app.settle_gc). Otherwise the longest gap below is one
    # publish of all n records, or a full collection walking every module's objects, not the writer.
    svc.observability.publisher.publish()
    settle_gc()
    lag = LoopLag()
    await writer_batches()
    await lag.stop()
    print(f"event loop while the writer works ({len(lag.gaps)} turns of a yielding task): {lag.summary()}")
    await gw.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--credential", choices=["secret", "token"], default="secret",
                    help="secret: the merchant's secret key; token: a forward token with a customer_id and a "
                         "percentage meter_slug")
    ap.add_argument("--body", choices=["short", "chat"], default="short",
                    help=f"short: one user turn ({len(BODY)} bytes); chat: 12 turns ({len(CHAT)} bytes)")
    ap.add_argument("--only-requests", action="store_true", help="stop after the timed requests (no writer timing)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="gateway settings, e.g. EDGE_PROXY_DATABASE_URL=postgresql://... EDGE_PROXY_REDIS_URL=...")
    args = ap.parse_args()
    asyncio.run(run(args.requests, args.profile, dict(kv.split("=", 1) for kv in args.set), args.credential, args.body,
                    args.only_requests))
