"""Instructions per streamed answer: the gateway's relay and scan against the bare forwarder's, in-process.

bench/stream_relay.py times the two relays as processes on the shared machine, where identical rounds differ by a
third. This counts instructions instead, under valgrind's callgrind: the gateway app (auth, plan, reservation,
relay, the usage scan, the record and journal) and bench/bare_forwarder.py's app each serve `--streams` streamed
chat completions of `--events` events, run at two stream counts so that start-up cancels out. Both use the real
upstream client (edge_proxy.upstream.UpstreamPool, its httptools parser and waits) on a fake socket that delivers,
one per turn of the event loop, the same HTTP chunks bench/fast_upstream.py writes; only Granian is a stub (its
Rust `send_bytes` and the kernel's socket work cost both relays alike, and are not counted). So the ratio printed
is an upper bound of the real one, and `added per event` is what the gateway does per chunk beyond the bare relay.

    apt-get install valgrind          # not a test dependency
    .venv/bin/python bench/stream_instructions.py [--events 1000] [--streams 10] [--builds compiled,pure]
    .venv/bin/python bench/stream_instructions.py --run gateway --streams 200   # one relay, timed, no valgrind

With --top N it also prints the N C functions (callgrind's exclusive counts, Cython and CPython included) whose
instructions per event differ most between the gateway and the bare forwarder: where the added work is.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import _harness as h  # noqa: E402
from fast_upstream import LAST_CHUNK, SSE_HEAD, stream_events  # noqa: E402
from instructions import functions, instructions_of  # noqa: E402

from edge_proxy.upstream import UpstreamPool  # noqa: E402
from edge_proxy.upstream.connection import Connection  # noqa: E402


class FakeSocket:
    """The transport under one upstream Connection: each request written is answered by the stream's HTTP
    chunks, one per turn of the event loop (as bench/fast_upstream.py writes them, one per tick)."""

    def __init__(self, conn: Connection, chunks: list[bytes]) -> None:
        self.conn, self.chunks, self.closed = conn, [SSE_HEAD, *chunks, LAST_CHUNK], False
        self.loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        self.loop.call_soon(self._deliver, 0)

    def _deliver(self, i: int) -> None:
        if self.closed:
            return
        self.conn.data_received(self.chunks[i])
        if i + 1 < len(self.chunks):
            self.loop.call_soon(self._deliver, i + 1)

    def get_extra_info(self, name: str) -> None:
        return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.conn.connection_lost, None)

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class FakeNetPool(UpstreamPool):
    """The real upstream client, connected to FakeSocket instead of a socket."""

    chunks: list[bytes] = []

    async def _connect(self, route: Any, loop: asyncio.AbstractEventLoop) -> Connection:
        route.active += 1
        conn = Connection(self, route, loop)
        conn.connection_made(FakeSocket(conn, self.chunks))  # type: ignore[arg-type]
        return conn


class Transport:
    """Granian's stream transport, reduced to counting what it is given."""

    def __init__(self) -> None:
        self.sent = 0

    async def send_bytes(self, data: bytes) -> None:
        self.sent += len(data)


class Proto:
    """Granian's RSGI HTTP protocol: the request body, a response stream, and a client that never leaves."""

    def __init__(self) -> None:
        self.status = 0
        self.transport = Transport()

    async def __call__(self) -> bytes:
        return h.STREAM_BODY

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> Transport:
        self.status = status
        return self.transport

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        raise SystemExit(f"answered {status} in one piece, not streamed: {body[:300]!r}")

    def client_disconnect(self) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()


class Scope:
    def __init__(self, path: str, key: str) -> None:
        self.method, self.path, self.query_string = "POST", path, ""
        self.headers = {"host": "127.0.0.1:8080", "authorization": f"Bearer {key}",
                        "content-type": "application/json", "content-length": str(len(h.STREAM_BODY)),
                        "user-agent": "OpenAI/Python 1.0", "accept": "text/event-stream"}


async def gateway_app(tmp: str) -> tuple[Callable[[Any, Any], Awaitable[None]], Scope, Callable[[], Awaitable[None]]]:
    from edge_proxy.app import Gateway
    from edge_proxy.settings import Settings

    gw = Gateway(Settings.load(env={"EDGE_PROXY_DATABASE_URL": f"sqlite:///{tmp}/b.db",
                                    "EDGE_PROXY_SPILL_DIR": f"{tmp}/spill", "EDGE_PROXY_PROVIDER_KEY_OPENAI": "k"}))
    await gw.start()
    _, key = await gw.svc.store.create_merchant("bench", 10**18)
    # The background tasks (log writer, lease top-ups, metrics, key-event polls) run by the clock, which valgrind
    # slows 50x: left running they would add a varying amount per stream. The records queue up meanwhile.
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.cancel()
    await asyncio.sleep(0)
    await gw.svc.upstream.close()
    gw.svc.upstream = FakeNetPool()
    return gw.__rsgi__, Scope(h.GATEWAY_PATH, key), gw.stop


async def bare_app(tmp: str) -> tuple[Callable[[Any, Any], Awaitable[None]], Scope, Callable[[], Awaitable[None]]]:
    import bare_forwarder

    app = bare_forwarder.Bare()
    pool = app.pool = FakeNetPool()
    return app.__rsgi__, Scope(h.UPSTREAM_PATH, h.PROVIDER_KEY), pool.close


async def run(relay: str, streams: int, events: int) -> None:
    FakeNetPool.chunks = stream_events("gpt-4o-mini", events)
    expected = sum(len(c.split(b"\r\n", 1)[1]) - 2 for c in FakeNetPool.chunks)
    tmp = tempfile.mkdtemp(prefix="edge-stream-instr-")
    try:
        app, scope, stop = await (gateway_app if relay == "gateway" else bare_app)(tmp)

        async def one() -> None:
            proto = Proto()
            await app(scope, proto)
            if proto.status != 200 or proto.transport.sent != expected:
                raise SystemExit(f"{relay}: status {proto.status}, {proto.transport.sent} of {expected} bytes")

        for _ in range(3):  # warm the caches, the lease and the pooled connection
            await one()
        cpu = time.thread_time()
        for _ in range(streams):
            await one()
        cpu = time.thread_time() - cpu
        if relay == "bare":
            await stop()
        print(f"{relay}: {streams} streams of {events} events, {cpu / streams * 1e3:.3f} ms of loop-thread CPU per "
              f"stream ({cpu / streams / events * 1e6:.2f} us per event)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def per_stream(relay: str, build: str, streams: int, events: int, tmp: Path) -> int:
    """Instructions per stream of one relay: two callgrind runs, the difference over the extra streams (their
    profiles are left in tmp as `<relay>-<build>-<1 and 1 + streams>.out`)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("EDGE_PROXY_PURE_PYTHON", None)
    if build == "pure":
        env["EDGE_PROXY_PURE_PYTHON"] = "1"
    counts = []
    for n in (1, 1 + streams):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--run", relay, "--streams", str(n),
               "--events", str(events)]
        counts.append(instructions_of(cmd, env, tmp / f"{relay}-{build}-{n}.out"))
    return round((counts[1] - counts[0]) / streams)


def per_event_functions(relay: str, build: str, streams: int, events: int, tmp: Path) -> dict[str, float]:
    """Exclusive instructions per event of each C function, from the two profiles per_stream left."""
    a = functions(tmp / f"{relay}-{build}-{1 + streams}.out")
    b = functions(tmp / f"{relay}-{build}-1.out")
    return {k: (a.get(k, 0) - b.get(k, 0)) / streams / events for k in a.keys() | b.keys()}


def print_top(bare: dict[str, float], gw: dict[str, float], top: int) -> None:
    diff = {k: gw.get(k, 0.0) - bare.get(k, 0.0) for k in bare.keys() | gw.keys()}
    print(f"    {'gateway - bare':>14} {'gateway':>9} {'bare':>9}  per event, by C function")
    for name in sorted(diff, key=lambda k: -abs(diff[k]))[:top]:
        print(f"    {diff[name]:>14,.0f} {gw.get(name, 0.0):>9,.0f} {bare.get(name, 0.0):>9,.0f}  {name[:110]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1000, help="content events per stream (default 1000)")
    ap.add_argument("--streams", type=int, default=10, help="extra streams between the two runs (default 10)")
    ap.add_argument("--builds", default="compiled", help="compiled, pure or both (compiled,pure)")
    ap.add_argument("--top", type=int, default=0, help="also list the N functions that differ most per event")
    ap.add_argument("--run", choices=["gateway", "bare"], help="run one relay's streams in this process, timed")
    args = ap.parse_args()
    if args.run:
        asyncio.run(run(args.run, args.streams, args.events))
        return 0
    if not shutil.which("valgrind"):
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="edge-stream-callgrind-"))
    try:
        bare = per_stream("bare", "compiled", args.streams, args.events, tmp)
        print(f"    bare forwarder: {bare:>12,} instructions per stream ({bare / args.events:,.0f} per event)")
        bare_fns = per_event_functions("bare", "compiled", args.streams, args.events, tmp) if args.top else {}
        for build in args.builds.split(","):
            gw = per_stream("gateway", build, args.streams, args.events, tmp)
            print(f"{'gateway ' + build:>18}: {gw:>12,} instructions per stream ({gw / args.events:,.0f} per event); "
                  f"gateway / bare {gw / bare:.3f}, added per event {(gw - bare) / args.events:,.0f}")
            if args.top:
                print_top(bare_fns, per_event_functions("gateway", build, args.streams, args.events, tmp), args.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
