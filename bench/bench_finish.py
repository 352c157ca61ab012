"""The end of one request, alone: usage read from the provider's body, then `Exchange.finish` (the record, its
usage and estimate, its price, the journal line and the log queue, the metrics hook).

The app is started in-process as bench_request_path.py does (SQLite, the log writer stopped), one real request
is served (200, to warm it) to get a real principal and attempt, and then the end of that request is repeated on fresh exchanges.
What is printed is the loop thread's CPU per request end: smaller than the whole path's, so a change to this
stage is not lost in the noise of the rest. Run: .venv/bin/python bench/bench_finish.py [--requests N]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_request_path import ANSWER, Proto, Scope, started_gateway, stop_log_writer  # noqa: E402

from edge_proxy.billing.engine import NOTHING  # noqa: E402
from edge_proxy.metering.estimate import answer_outcome  # noqa: E402
from edge_proxy.metering.usage import usage_from_body  # noqa: E402
from edge_proxy.request_path.exchange import Exchange  # noqa: E402


async def run(n: int) -> None:
    gw, key = await started_gateway()
    svc = gw.svc
    seen: list[Exchange] = []
    finish = Exchange.finish

    def keep(ex: Exchange, *args: object) -> None:
        seen.append(ex)
        finish(ex, *args)  # type: ignore[arg-type]

    Exchange.finish = keep  # type: ignore[method-assign]  # to see a real request's principal and attempt
    for _ in range(200):  # warm the caches and the lease, as bench_request_path does
        await gw.__rsgi__(Scope(key, Proto.body_sent), Proto())
    Exchange.finish = finish  # type: ignore[method-assign]
    real = seen[-1]
    await stop_log_writer(svc, drain=False)  # the writer's work is not this stage's
    fmt = real.usage_format

    def end_of_request(i: int) -> None:
        ex = Exchange(svc, f"req_bench_{i:08d}", real.principal, time.perf_counter())
        ex.attempt, ex.sent_at, ex.head_at, ex.replied_at = real.attempt, ex.started, ex.started, ex.started
        ex.reservation = NOTHING  # nothing is held: the records are billed to the merchant, nothing is released
        # what relay() does once the body is out
        ex.usage = usage = usage_from_body(fmt, ANSWER)
        ex.finish(200, *answer_outcome(200, usage))

    for i in range(500):
        end_of_request(i)
    while svc.log_queue.depth:
        await svc.log_queue._flush_one()
    best = float("inf")
    for _ in range(5):  # the best of five rounds: another process on a shared machine only ever adds
        cpu = time.thread_time()
        for i in range(n):
            end_of_request(i)
        best = min(best, (time.thread_time() - cpu) / n)
        while svc.log_queue.depth:  # billed and written between rounds, untimed, as bench_request_path does
            await svc.log_queue._flush_one()
    print(f"{n} request ends x 5 rounds: best {best * 1e6:.2f} us of the loop thread's CPU per request end "
          "(usage from the body + Exchange.finish)")
    await gw.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    args = ap.parse_args()
    asyncio.run(run(args.requests))
