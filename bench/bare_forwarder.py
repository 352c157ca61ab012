"""The floor under the gateway: a bare Granian RSGI app that forwards each request to one upstream with the
gateway's own upstream client (edge_proxy.upstream.UpstreamPool), and nothing else: no auth, no billing, no
metering, no log. bench/overhead.py --bare measures it beside the gateway, so that what auth, billing and
metering cost can be read off on any machine (gateway req/s / bare req/s), whatever that machine's speed.
`BARE_SPIN_US=N` makes it burn N us of Python per request on top (bench/perf_threads.py --spin): a forwarder as
slow as the gateway, to tell what follows from slower Python from what the gateway adds.
`BARE_FLOOR=1` adds the least any metered, billed and logged gateway does per request, written as plainly as
Python allows (`Floor`): a key looked up, a reservation held, the answer's usage scanned (the compiled scanner),
priced, settled, one record tuple per request handed off in msgpack batches, the overhead header. It is how
close to the bare forwarder a gateway with these features can get in this stack (bench/RESULTS.md, issue 17).

    BARE_UPSTREAM=127.0.0.1:8081 PYTHONPATH=bench python -m granian --interface rsgi --loop uvloop \
        --workers 1 --host 127.0.0.1 --port 8090 bare_forwarder:app
"""
from __future__ import annotations

import os
import time

from edge_proxy.upstream import UpstreamPool

_HOST, _PORT = os.environ.get("BARE_UPSTREAM", "127.0.0.1:8081").rsplit(":", 1)
_DROP = {"host", "content-length", "connection", "transfer-encoding"}


def _spin_loops(us: float) -> int:
    """Iterations of an empty Python loop that take about `us` microseconds of this thread's CPU (timed by CPU, so
    other load does not shorten it; no clock is read per request)."""
    if not us:
        return 0
    n = 1_000_000
    started = time.thread_time()
    for _ in range(n):
        pass
    return max(1, round(n * us / 1e6 / (time.thread_time() - started)))


_SPIN = _spin_loops(float(os.environ.get("BARE_SPIN_US", "0")))


class Floor:
    """The least per-request work of a gateway that meters, bills and logs; no error handling, one key, one
    price. Records go out in batches of 256 as msgpack (the gateway's log hand-off), to nowhere."""

    def __init__(self) -> None:
        import msgspec

        from edge_proxy.metering._usage_scan_c import usage_from_body
        self.scan = usage_from_body
        self.encode = msgspec.msgpack.Encoder().encode
        self.keys: dict[str, list] = {}  # key -> [merchant_id, balance_nanos]
        self.batch: list[tuple] = []
        self.ids = 0
        self.handed_off = 0

    def admit(self, headers, body: bytes) -> tuple[list, int, float]:
        started = time.perf_counter()
        auth = headers.get("authorization") or ""
        key = auth[7:] if auth.startswith("Bearer ") else auth
        payer = self.keys.get(key)
        if payer is None:
            payer = self.keys[key] = [f"merchant_{len(self.keys)}", 10**18]
        held = (len(body) // 4 + 4096) * 10_000  # input estimate + an output bound, at 10,000 nanos a token
        if payer[1] < held:
            raise RuntimeError("insufficient balance")
        payer[1] -= held
        return payer, held, started

    def settle(self, payer: list, held: int, started: float, status: int, answer: bytes, path: str) -> str:
        usage = self.scan("openai", answer)
        cost = usage.input_tokens * 2_500 + usage.output_tokens * 10_000
        payer[1] += held - cost
        self.ids += 1
        now = time.perf_counter()
        self.batch.append((f"req_{self.ids}", time.time(), payer[0], None, "openai", "gpt-4o-mini", path, False,
                           status, "completed", usage.input_tokens, usage.output_tokens, usage.cached_tokens,
                           cost, held, round((now - started) * 1e6) / 1000))
        if len(self.batch) >= 256:
            self.handed_off += len(self.encode(self.batch))
            self.batch = []
        return f"{(now - started) * 1000:.3f}"


_FLOOR = Floor() if os.environ.get("BARE_FLOOR") == "1" else None


class Bare:
    def __init__(self) -> None:
        self.pool: UpstreamPool | None = None

    def __rsgi_init__(self, loop) -> None:
        async def start() -> None:
            self.pool = UpstreamPool()
        loop.run_until_complete(start())
        if os.environ.get("BARE_PIN_DIR"):  # pinned as the gateway's workers are with EDGE_PROXY_PIN_WORKERS=1
            from edge_proxy.affinity import pin_worker
            pin_worker(os.environ["BARE_PIN_DIR"])

    async def __rsgi__(self, scope, proto) -> None:
        if _SPIN:
            for _ in range(_SPIN):
                pass
        body = await proto()
        if _FLOOR is not None:
            held = _FLOOR.admit(scope.headers, body)
        headers = [(k.encode(), v.encode()) for k, v in scope.headers.items() if k not in _DROP]
        target = scope.path + ("?" + scope.query_string if scope.query_string else "")
        resp = await self.pool.request(scope.method, "http", _HOST, int(_PORT), target, headers, body)
        out = [(k.decode(), v.decode()) for k, v in resp.headers
               if k.lower() not in (b"connection", b"transfer-encoding", b"content-length")]
        if resp.content_length is None:  # chunked (every SSE stream): relayed chunk by chunk, as the gateway does
            transport = proto.response_stream(resp.status, out)
            async for chunk in resp:
                await transport.send_bytes(chunk)
            return
        answer = await resp.read()
        if _FLOOR is not None:
            out.append(("x-edge-proxy-overhead-ms", _FLOOR.settle(*held, resp.status, answer, scope.path)))
        proto.response_bytes(resp.status, out, answer)


app = Bare()


def start(tmp, upstream_port: int, pin: bool = False, spin_us: float = 0.0, floor: bool = False):
    """Run it as a subprocess on a free loopback port in front of 127.0.0.1:upstream_port: (Proc, port). `pin`: its
    worker pins itself to a CPU as a gateway worker does with EDGE_PROXY_PIN_WORKERS=1 (a comparison of like with
    like when the gateway runs so). `spin_us`: BARE_SPIN_US, Python it burns per request on top of forwarding.
    `floor`: BARE_FLOOR=1, the least a metered, billed, logged gateway does per request (`Floor`)."""
    import _harness as h
    port = h.free_port()
    env = dict(os.environ, BARE_UPSTREAM=f"{h.HOST}:{upstream_port}", PYTHONPATH=str(h.BENCH))
    if spin_us:
        env["BARE_SPIN_US"] = str(spin_us)
    if floor:
        env["BARE_FLOOR"] = "1"
    if pin:
        (tmp / "bare-pins").mkdir(exist_ok=True)
        env["BARE_PIN_DIR"] = str(tmp / "bare-pins")
    p = h.Proc("bare_forwarder", [h.PYTHON, "-m", "granian", "--interface", "rsgi", "--loop", "uvloop", "--workers",
                                  "1", "--host", h.HOST, "--port", str(port), "bare_forwarder:app"],
               tmp / "bare_forwarder.log", env=env).start()
    try:
        h.wait_port(port, 20, p.popen, "bare_forwarder")
    except BaseException:
        p.stop()
        raise
    return p, port
