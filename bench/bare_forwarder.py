"""The floor under the gateway: a bare Granian RSGI app that forwards each request to one upstream with the
gateway's own upstream client (edge_proxy.upstream.UpstreamPool), and nothing else: no auth, no billing, no
metering, no log. bench/overhead.py --bare measures it beside the gateway, so that what auth, billing and
metering cost can be read off on any machine (gateway req/s / bare req/s), whatever that machine's speed.
`BARE_SPIN_US=N` makes it burn N us of Python per request on top (bench/perf_threads.py --spin): a forwarder as
slow as the gateway, to tell what follows from slower Python from what the gateway adds.

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
        proto.response_bytes(resp.status, out, await resp.read())


app = Bare()


def start(tmp, upstream_port: int, pin: bool = False, spin_us: float = 0.0):
    """Run it as a subprocess on a free loopback port in front of 127.0.0.1:upstream_port: (Proc, port). `pin`: its
    worker pins itself to a CPU as a gateway worker does with EDGE_PROXY_PIN_WORKERS=1 (a comparison of like with
    like when the gateway runs so). `spin_us`: BARE_SPIN_US, Python it burns per request on top of forwarding."""
    import _harness as h
    port = h.free_port()
    env = dict(os.environ, BARE_UPSTREAM=f"{h.HOST}:{upstream_port}", PYTHONPATH=str(h.BENCH))
    if spin_us:
        env["BARE_SPIN_US"] = str(spin_us)
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
