"""A scratch copy of the tree with the request story compiled by Cython and typed step by step (issue 17's typed
spike, bench/RESULTS.md "wave/typed"). Nothing here is built into the package: it measures how far a compiled,
typed request story would bring the instructions per request.

    .venv/bin/pip install cython               # a build dependency of the project already (pyproject.toml)
    .venv/bin/python bench/typed_build.py /tmp/typed/tree --step 4
    cd /tmp/typed/tree && /work/wt/typed/.venv/bin/python bench/instructions.py --builds compiled --requests 3000

The copy is `git archive HEAD` with this tree's built `_fastpath` modules (*.so) copied in, pyproject.toml and
setup.py moved aside, and the modules of `MODULES` compiled in place (`build_ext --inplace`): the .so beside each
.py shadows it on import. Each step adds to the one before:

0. nothing compiled but the usual `_fastpath` modules (main);
1. the request story's modules compiled as they are;
2. `Exchange` a cdef class with typed fields (an augmenting exchange.pxd);
3. the modules that take an exchange cimport it, so `ex: Exchange` types their argument;
4. `Attempt` and `Plan` cdef classes too (plan.pxd), cimported where they are used;
5. `Lease` and `Leases` cdef classes (leases.pxd) and the hot locals typed where Cython cannot infer them;
6. `Services` and `RequestIds` cdef classes (services.pxd), `Exchange.svc` and `serve`'s `svc` typed by them.

A step's .py edits are the least Cython needs (a cdef class has no `__slots__`; `cdef` fields need no class-level
annotations); `PATCHES` lists them, each checked to apply exactly once. A copy is for measuring, not serving:
compiled, body.py's `async for` over Granian's protocol lets StopAsyncIteration out (a GET without Content-Length
answers 500), and typed arguments refuse the journal tests' fakes (bench/RESULTS.md).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODULES = [
    "edge_proxy/request_path/pipeline.py", "edge_proxy/request_path/exchange.py",
    "edge_proxy/request_path/plan.py", "edge_proxy/request_path/relay.py", "edge_proxy/request_path/body.py",
    "edge_proxy/access.py", "edge_proxy/auth.py", "edge_proxy/routes.py", "edge_proxy/billing/engine.py",
    "edge_proxy/billing/leases.py", "edge_proxy/billing/bounds.py", "edge_proxy/billing/charging.py",
    "edge_proxy/metering/log_queue.py", "edge_proxy/metering/journal.py", "edge_proxy/metering/opened.py",
    "edge_proxy/metering/estimate.py", "edge_proxy/services.py", "edge_proxy/app.py",
]

_EXCHANGE_PXD = """\
cdef class Exchange:
    cdef public object svc
    cdef public str request_id
    cdef public object principal
    cdef public double started
    cdef public object attempt
    cdef public object metadata
    cdef public double sent_at, head_at, replied_at
    cdef public bint answered, stream, done
    cdef public object usage
    cdef public object reservation
    cpdef double overhead(self, double now)
"""
_CIMPORT_EXCHANGE = "from edge_proxy.request_path.exchange cimport Exchange\n"
_PLAN_PXD = """\
cdef class Attempt:
    cdef public object provider, target
    cdef public object model
    cdef public bytes body
    cdef public object bounds
    cdef public str method
    cdef public bint stream, free
    cdef public object translation, quote, input_estimate

cdef class Plan:
    cdef public list attempts
    cdef public object error_format
    cdef public bint unified
    cdef public object _items, _anthropic_items
"""
_CIMPORT_PLAN = "from edge_proxy.request_path.plan cimport Attempt, Plan\n"
_LEASES_PXD = """\
cdef class Lease:
    cdef public object payer
    cdef public str hold_id
    cdef public long long total, used, consumed, admitted, sized_admitted, target
    cdef public double expires, last_used, sized_at
    cdef public object lock
    cdef public bint refilling

cdef class Leases:
    cdef public object backend
    cdef public double ttl, lease_seconds, idle_release, timeout
    cdef public long long chunk, max_chunk, min_chunk_nanos
    cdef public str worker_id
    cdef public dict _leases
    cdef public object _task
    cdef public set _refills
    cdef public long long local_hits, store_calls, refills
    cpdef Lease reserve_local(self, object payer, long long amount)
"""
_CIMPORT_LEASES = "from edge_proxy.billing.leases cimport Lease, Leases\n"

# step -> files written beside the .py (path, text)
PXDS: dict[int, list[tuple[str, str]]] = {
    2: [("edge_proxy/request_path/exchange.pxd", _EXCHANGE_PXD)],
    3: [(f"edge_proxy/{m}.pxd", _CIMPORT_EXCHANGE) for m in
        ("request_path/pipeline", "request_path/relay", "metering/opened", "metering/log_queue")],
    4: [("edge_proxy/request_path/plan.pxd", _PLAN_PXD),
        ("edge_proxy/request_path/pipeline.pxd", _CIMPORT_EXCHANGE + _CIMPORT_PLAN),
        ("edge_proxy/request_path/relay.pxd", _CIMPORT_EXCHANGE + _CIMPORT_PLAN),
        ("edge_proxy/metering/opened.pxd", _CIMPORT_EXCHANGE + _CIMPORT_PLAN),
        ("edge_proxy/billing/engine.pxd", _CIMPORT_PLAN)],
    5: [("edge_proxy/billing/leases.pxd", _LEASES_PXD),
        ("edge_proxy/billing/engine.pxd", _CIMPORT_PLAN + _CIMPORT_LEASES)],
}

_SERVICES_PXD = """\
from edge_proxy.billing.leases cimport Leases

cdef class RequestIds:
    cdef public long long _n
    cdef public str _format

cdef class Services:
    cdef public object settings, catalogue, prices, models, store, log_sink, redis, balances, billing, journal
    cdef public object log_queue, log_writer, auth, key_events, spend_keys, metrics, observability, tracer
    cdef public object upstream, webhooks
    cdef public Leases leases
    cdef public RequestIds request_ids
"""
_CIMPORT_SERVICES = "from edge_proxy.services cimport Services\n"
PXDS[6] = [("edge_proxy/services.pxd", _SERVICES_PXD),
           ("edge_proxy/request_path/exchange.pxd",
            _CIMPORT_SERVICES + _EXCHANGE_PXD.replace("cdef public object svc", "cdef public Services svc")),
           ("edge_proxy/request_path/pipeline.pxd", _CIMPORT_EXCHANGE + _CIMPORT_PLAN + _CIMPORT_SERVICES)]

# step -> (.py path, text, replacement), each applied once
PATCHES: dict[int, list[tuple[str, str, str]]] = {
    2: [("edge_proxy/request_path/exchange.py",
         '    __slots__ = ("svc", "request_id", "principal", "started", "attempt", "metadata", "sent_at", "head_at",\n'
         '                 "replied_at", "answered", "usage", "stream", "done", "reservation")\n', "")],
    4: [("edge_proxy/request_path/plan.py",
         '    __slots__ = ("provider", "target", "model", "body", "bounds", "method", "stream", "translation", "free",\n'
         '                 "quote", "input_estimate")\n', ""),
        ("edge_proxy/request_path/plan.py",
         '    __slots__ = ("attempts", "error_format", "unified", "_items", "_anthropic_items")\n'
         '    _items: Iterable[tuple[str, str]]\n    _anthropic_items: Iterable[tuple[str, str]]\n', "")],
    5: [("edge_proxy/billing/leases.py",
         '    __slots__ = ("payer", "hold_id", "total", "used", "expires", "last_used", "lock", "refilling", "consumed",\n'
         '                 "admitted", "sized_at", "sized_admitted", "target")\n', ""),
        # a cpdef method's signature is the .pxd's: the .py's annotations (`amount: int` is a Python int) clash
        ("edge_proxy/billing/leases.py", "def reserve_local(self, payer: Payer, amount: int) -> Lease | None:",
         "def reserve_local(self, payer, amount):"),
        ("edge_proxy/billing/leases.py", "        lease = self._leases.get(payer)\n        if lease is None or lease.total",
         "        lease: Lease = self._leases.get(payer)\n        if lease is None or lease.total"),
        ("edge_proxy/billing/leases.py", "            return None\n        now = time.monotonic()\n        if lease.expires <= now:",
         "            return None\n        now: float = time.monotonic()\n        if lease.expires <= now:"),
        # Cython 3.3 takes an async def's return annotation for its coroutine's C type (gcc warns of the casts)
        ("edge_proxy/billing/leases.py", "async def reserve(self, payer: Payer, amount: int) -> Lease | None:",
         "async def reserve(self, payer: Payer, amount: int):"),
        ("edge_proxy/billing/leases.py", "async def _grow(self, payer: Payer, amount: int) -> Lease:",
         "async def _grow(self, payer: Payer, amount: int):"),
        ("edge_proxy/billing/engine.py", "        leases = self.leases\n", "        leases: Leases = self.leases\n"),
        # an argument annotated with a cdef class refuses None: the log writer process builds its engine without
        # leases (log_sinks/writer_process.py), which the .py's annotation did not say
        ("edge_proxy/billing/engine.py", "log_sink: SQLLogSink, leases: Leases, prices",
         "log_sink: SQLLogSink, leases: Leases | None, prices")],
    # a cdef class's attributes are its .pxd's: no annotated assignments to them in its methods
    6: [("edge_proxy/services.py", "        self.log_sink: LogSink = open_log_sink", "        self.log_sink = open_log_sink"),
        ("edge_proxy/services.py", "        self.upstream: UpstreamPool = None  # type: ignore[assignment]",
         "        self.upstream = None")],
}


def build(tree: Path, step: int, jobs: int) -> None:
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    for so in (ROOT / "edge_proxy").rglob("*.so"):  # the usual _fastpath modules, as this tree built them
        dest = tree / so.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(so, dest)
    for name in ("pyproject.toml", "setup.py"):
        (tree / name).rename(tree / f"{name}.aside")
    if step < 1:
        return
    pxds: dict[str, str] = {}
    for s in range(2, step + 1):
        pxds.update(PXDS.get(s, []))
        for path, old, new in PATCHES.get(s, []):
            text = (tree / path).read_text()
            if text.count(old) != 1:
                raise SystemExit(f"step {s}: the patch for {path} does not apply once")
            (tree / path).write_text(text.replace(old, new))
    for path, text in pxds.items():
        (tree / path).write_text(text)
    script = ("from Cython.Build import cythonize\nfrom setuptools import setup\n"
              f"setup(ext_modules=cythonize({MODULES!r}, nthreads={jobs}, compiler_directives="
              "{'language_level': '3', 'binding': False}))\n")
    (tree / "_typed_setup.py").write_text(script)
    subprocess.run([sys.executable, "_typed_setup.py", "-q", "build_ext", "--inplace", "-j", str(jobs)], cwd=tree,
                   check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tree", type=Path, help="where the scratch copy goes (emptied first)")
    ap.add_argument("--step", type=int, default=max(PXDS), help="the last typing step to apply (0: main)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    build(args.tree, args.step, args.jobs)
    print(f"built {args.tree} at step {args.step}")


if __name__ == "__main__":
    main()
