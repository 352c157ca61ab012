"""Instructions per call of each piece at the front of a request, under callgrind: a figure load does not move.

The pieces, each called alone in a loop with what a usual request hands it: the credential read from the headers,
`authorize` on a principal cache hit, `request_bounds` of a small chat body, `BillingEngine.reserve` from leases
with room (a customer and its merchant), the compiled `request_headers` block, and `split_metadata_param` of an
empty query string (which `serve` now skips). Each runs under valgrind's
callgrind at two call counts and the difference is divided by the extra calls, so start-up cancels out (as
bench/instructions.py does for whole requests).

    .venv/bin/python bench/front_instructions.py [--calls 20000] [--pieces credential,authorize,...]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instructions import instructions_of  # noqa: E402

CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"max_tokens":64}'
# what the OpenAI Python SDK sends, as Granian hands it over (lowercase names), as bench_headers.py
CLIENT = [("host", "127.0.0.1:8080"), ("authorization", "Bearer lava_sk"), ("content-type", "application/json"),
          ("content-length", "120"), ("user-agent", "OpenAI/Python 1.0"), ("accept", "application/json"),
          ("x-stainless-lang", "python"), ("x-stainless-os", "Linux"), ("x-stainless-arch", "x64"),
          ("x-stainless-runtime", "CPython"), ("x-stainless-retry-count", "0"), ("accept-encoding", "gzip, deflate")]
KEY = "ep_sk_" + "a" * 43


def _run(coro: Any) -> Any:
    """A coroutine that never awaits anything pending (a cache hit, a lease with room), run without a loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the piece awaited something: not the path under measure")


def credential() -> Callable[[], object]:
    from edge_proxy.headers import credential
    headers = {"authorization": "Bearer " + KEY, "content-type": "application/json"}
    return lambda: credential(headers)  # type: ignore[arg-type]


def authorize() -> Callable[[], object]:
    from types import SimpleNamespace

    from edge_proxy.access import Access, authorize
    from edge_proxy.auth import Authenticator, Principal
    from edge_proxy.billing.charging import Billing

    auth = Authenticator(None, 1000, 3600.0)  # type: ignore[arg-type]  # a hit never reads the store
    auth.cache.put(KEY, Principal("m", "sk", billing=Billing("merchant", "m", merchant_id="m")))
    svc = SimpleNamespace(auth=auth)
    headers = {"authorization": "Bearer " + KEY}
    return lambda: _run(authorize(svc, headers, Access.PROXY))  # type: ignore[arg-type]


def bounds() -> Callable[[], object]:
    from edge_proxy.billing.bounds import request_bounds
    return lambda: request_bounds(CHAT)


def reserve() -> Callable[[], object]:
    from edge_proxy.billing.charging import Billing, Quote
    from edge_proxy.billing.engine import BillingEngine
    from edge_proxy.billing.leases import Lease, Leases
    from edge_proxy.billing.payer import Payer

    leases = Leases(None)  # type: ignore[arg-type]  # leases with room never call the store
    for payer in (Payer("customer", "cus_1"), Payer("merchant", "m")):
        lease = leases._leases[payer] = Lease(payer, "hold")
        lease.total, lease.expires = 10**18, time.monotonic() + 10**6
    engine = BillingEngine(None, None, leases, None)  # type: ignore[arg-type]
    billing = Billing("customer", "cus_1", merchant_id="m")
    q = Quote(1_000, 1_500, 1_000)
    return lambda: _run(engine.reserve("req", billing, q))


def split() -> Callable[[], object]:
    """What `serve` no longer calls for a request without a query string (the loop's own cost is `nothing`)."""
    from edge_proxy.metadata import split_metadata_param
    return lambda: split_metadata_param("")


def nothing() -> Callable[[], object]:
    """The loop and the call of an empty lambda: what every other figure includes."""
    return lambda: None


def headers() -> Callable[[], object]:
    import importlib
    request_headers = importlib.import_module("edge_proxy._headers_c").request_headers
    return lambda: request_headers(CLIENT, b"authorization", "sk-op", managed=True)


PIECES = {"nothing": nothing, "credential": credential, "authorize": authorize, "bounds": bounds,
          "reserve": reserve, "headers": headers, "split": split}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20_000, help="extra calls between the two runs")
    ap.add_argument("--pieces", default=",".join(PIECES))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        call = PIECES[args.child]()
        call()  # the first call's imports and caches are start-up, not the piece
        for _ in range(args.n):
            call()
        return 0
    env = dict(os.environ, PYTHONHASHSEED="0")
    tmp = Path(tempfile.mkdtemp(prefix="edge-proxy-front-"))
    for name in args.pieces.split(","):
        runs = [instructions_of([sys.executable, __file__, "--child", name, "--n", str(n)], env, tmp / f"{name}-{n}")
                for n in (1_000, 1_000 + args.calls)]
        print(f"{name:>10}: {round((runs[1] - runs[0]) / args.calls):>7,} instructions per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
