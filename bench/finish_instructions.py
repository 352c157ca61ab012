"""Instructions per call of each piece at the end of a request, under callgrind: a figure load does not move.

The app is started in-process as bench_finish.py does (SQLite, the log writer stopped), 200 real requests are
served to warm it and to keep a real principal and attempt, and then one piece is called in a loop on what such a
request hands it: `relay` (the whole end of a whole-body answer: response headers, stamp, the body, usage, finish),
`end` (usage from the body and `Exchange.finish`), `finish` alone, and inside it `record` (the `RequestRecord`
call with its `now_iso`), `now_iso`, `billed` (`billed_usage`), `price` (`Services.price`), `cost`
(`PriceTable.cost`), `encode` (the journal line), `append` (`Journal.append`), `put` (`LogQueue.put`: encode and
append), `finished` (the observability hook), `usage` (`usage_from_body`), `headers` (`response_headers`),
`stamp`. Each runs under valgrind's callgrind at two call counts, counting only inside the loop (the loop runs in
builtin `any`, and callgrind collects only there), and the difference is divided by the extra calls. Garbage
collection is off for the loop: what piles up (the queue, the metrics' list) is a gateway's writer's and publisher's
to take away, not the piece's.

    .venv/bin/python bench/finish_instructions.py [--calls 20000] [--pieces relay,finish,...] [--credential token]

To measure another tree, run that tree's copy of this file: bench_request_path.py puts its own repository first on
sys.path, so PYTHONPATH alone does not choose the tree.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_request_path import (ANSWER, Proto, Response, Scope, customer_token, started_gateway,  # noqa: E402
                                stop_clock_work, stop_log_writer)
from front_instructions import _run  # noqa: E402
from instructions import functions  # noqa: E402


async def _setup(credential: str) -> tuple[Any, Any, Any]:
    """A started gateway, its services and the last of 200 real requests' exchanges (finished)."""
    from edge_proxy.request_path.exchange import Exchange

    gw, key = await started_gateway()
    svc = gw.svc
    scope = Scope(key if credential == "secret" else await customer_token(svc, key), Proto.body_sent)
    seen: list[Exchange] = []
    finish = Exchange.finish

    def keep(ex: Exchange, *args: Any) -> None:
        seen.append(ex)
        finish(ex, *args)

    Exchange.finish = keep  # type: ignore[method-assign]
    for _ in range(200):
        proto = Proto()
        await gw.__rsgi__(scope, proto)
        if proto.status != 200:
            raise SystemExit(f"the gateway answered {proto.status}, not 200")
    Exchange.finish = finish  # type: ignore[method-assign]
    await stop_log_writer(svc)  # the writer's work is not this stage's
    await stop_clock_work(svc)
    return gw, svc, seen[-1]


def piece(name: str, svc: Any, real: Any) -> Callable[[], object]:
    from edge_proxy import headers as hdr
    from edge_proxy.billing.engine import NOTHING
    from edge_proxy.clock import now_iso
    from edge_proxy.metering import log_queue
    from edge_proxy.metering.estimate import answer_outcome, billed_usage
    from edge_proxy.metering.usage import usage_from_body
    from edge_proxy.request_path import relay
    from edge_proxy.request_path.exchange import Exchange

    fmt = real.usage_format
    counter = iter(range(10**9))

    def fresh() -> Exchange:
        ex = Exchange(svc, f"req_bench_{next(counter):08d}", real.principal, time.perf_counter(), real.metadata)
        ex.attempt, ex.sent_at, ex.head_at = real.attempt, ex.started, ex.started
        ex.reservation = NOTHING  # nothing is held: nothing is released
        return ex

    usage = usage_from_body(fmt, ANSWER)
    attempt = real.attempt
    record_ex = fresh()
    record_ex.replied_at, record_ex.usage = record_ex.started, usage
    held = []

    def finished_record() -> Any:  # what finish put on the queue for record_ex, caught as it went
        put, svc.log_queue.put = svc.log_queue.put, held.append
        try:
            record_ex.done = False
            record_ex.finish(200, "completed", None)
        finally:
            svc.log_queue.put = put
        return held.pop()

    record = finished_record()
    response = Response()
    if name == "nothing":
        return lambda: None
    if name == "relay":
        class Plan:
            unified = False

        def whole() -> None:
            ex = fresh()
            _run(relay.relay(Proto(), Plan, attempt, ex, response))  # type: ignore[arg-type]
        return whole
    if name == "end":
        def end() -> None:
            ex = fresh()
            ex.replied_at = ex.started
            ex.usage = u = usage_from_body(fmt, ANSWER)
            ex.finish(200, *answer_outcome(200, u))
        return end
    if name == "finish":
        def fin() -> None:
            ex = fresh()
            ex.replied_at, ex.usage = ex.started, usage
            ex.finish(200, "completed", None)
        return fin
    if name == "record":
        rec_fields = [getattr(record, f) for f in record.__struct_fields__]
        cls = type(record)
        return lambda: cls(rec_fields[0], now_iso(), *rec_fields[2:])
    if name == "now_iso":
        return now_iso
    if name == "billed":
        n = len(attempt.body)
        return lambda: billed_usage(usage, fmt=fmt, stream=False, status=200, request_bytes=n,
                                    input_estimate=attempt.input_estimate)
    if name == "price":
        return lambda: svc.price(record)
    if name == "cost":
        prices = svc.prices
        return lambda: prices.cost(record.provider, record.model, record)
    if name == "encode":
        enc = log_queue._encode_lines
        return lambda: enc((record,))
    if name == "append":
        line = log_queue._encode_lines((record,))
        journal = svc.log_queue.journal
        return lambda: journal.append(record.request_id, line)
    if name == "put":
        return lambda: svc.log_queue.put(record)
    if name == "finished":
        hook = svc.observability.finished
        return lambda: hook(record_ex, record)
    if name == "usage":
        return lambda: usage_from_body(fmt, ANSWER)
    if name == "headers":
        managed = real.principal.provider_key is None
        return lambda: hdr.response_headers(response.headers, managed=managed)
    if name == "stamp":
        def stamp() -> None:
            out: list[tuple[str, str]] = []
            record_ex.stamp(out)
        return stamp
    raise SystemExit(f"no piece {name!r}")


PIECES = ("nothing", "relay", "end", "finish", "record", "now_iso", "billed", "price", "cost", "encode", "append",
          "put", "finished", "usage", "headers", "stamp")


async def child(name: str, n: int, credential: str) -> None:
    gw, svc, real = await _setup(credential)
    call = piece(name, svc, real)
    call()  # the first call's imports and caches are start-up, not the piece
    # No collections while the loop runs: what piles up (the queue, the metrics' list) is not a gateway's, whose
    # writer and publisher take it away, and a full collection walking it would count per call as noise.
    gc.collect()
    gc.disable()

    def step(_: int) -> None:
        call()

    any(map(step, range(n)))  # the loop runs inside builtin `any`: callgrind counts only there (--toggle-collect)
    # what piled up in memory is not the piece's: the writer is not run, nothing is flushed


def _counted(cmd: list[str], env: dict[str, str], out: Path) -> int:
    """Instructions inside builtin `any` only, where the child runs its loop: the gateway's start and warm-up wait on
    threads and a process, and how many turns the event loop takes meanwhile varies by millions between runs."""
    r = subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=builtin_any",
                        f"--callgrind-out-file={out}", *cmd], env=env, capture_output=True, text=True, timeout=1800)
    found = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or not found:
        raise SystemExit(f"callgrind run failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20_000, help="extra calls between the two runs")
    ap.add_argument("--pieces", default=",".join(PIECES))
    ap.add_argument("--credential", choices=["secret", "token"], default="secret")
    ap.add_argument("--top", type=int, default=0, help="also list the C functions with the most instructions")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        asyncio.run(child(args.child, args.n, args.credential))
        os._exit(0)  # no shutdown: it is the same in both runs, and drains what the loop queued
    env = dict(os.environ, PYTHONHASHSEED="0")
    tmp = Path(tempfile.mkdtemp(prefix="edge-proxy-finish-"))
    for name in args.pieces.split(","):
        runs = [_counted([sys.executable, __file__, "--child", name, "--n", str(n), "--credential", args.credential],
                         env, tmp / f"{name}-{n}") for n in (1_000, 1_000 + args.calls)]
        print(f"{name:>10}: {round((runs[1] - runs[0]) / args.calls):>7,} instructions per call", flush=True)
        if args.top:
            a, b = functions(tmp / f"{name}-{1_000 + args.calls}"), functions(tmp / f"{name}-1000")
            diff = {k: (a.get(k, 0) - b.get(k, 0)) / args.calls for k in set(a) | set(b)}
            for k, v in sorted(diff.items(), key=lambda kv: -kv[1])[:args.top]:
                print(f"            {round(v):>7,}  {k[:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
