"""The RSGI application: a worker's services, and the route table in front of them.

Granian calls `__rsgi_init__` when a worker starts (the services connect and start their background tasks),
`__rsgi__` per request, and `__rsgi_del__` when the worker stops (the log queue drains, then everything closes).
Nothing here runs at import.
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from typing import TYPE_CHECKING

from .access import authorize
from .affinity import pin_worker, place_writer
from .errors import BrowserRequest, GatewayError
from .gc_settle import settle_gc
from .request_path.pipeline import serve
from .request_path.plan import forward_target, provider_path
from .request_path.replies import send_error
from .routes import ROUTES, Router
from .services import Services
from .settings import Settings
from .store.outage import is_outage, store_unavailable
from .unified.planner import error_format as unified_error_format

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

log = logging.getLogger("edge_proxy")


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.svc = Services(settings)
        self.router = Router(ROUTES)

    # -- lifecycle (Granian RSGI hooks) --------------------------------------------------------------------
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.start())
        settle_gc()

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.stop())

    async def start(self) -> None:
        _warn_if_not_compiled(self.svc.settings)
        await self.svc.start()
        if self.svc.settings.pin_workers:  # after start: the spill directory exists
            cpu = pin_worker(self.svc.settings.spill_dir)
            if cpu is not None:
                place_writer(self.svc.log_writer.pid)  # off this worker's CPU: a flush never takes its core
                log.info("worker %d pinned to CPU %d (EDGE_PROXY_PIN_WORKERS)", os.getpid(), cpu)

    async def stop(self) -> None:
        await self.svc.stop()

    # -- routing -------------------------------------------------------------------------------------------
    async def __rsgi__(self, scope: Scope, proto: HTTPProtocol) -> None:
        svc = self.svc
        metrics = svc.metrics
        metrics.requests += 1
        if metrics.waiting is not None:  # the metrics publisher parked while this worker was idle
            metrics.wake()
        headers = scope.headers  # Granian builds a new object at each `scope.headers`: read once, passed down
        try:
            method, path = scope.method, scope.path
            if (method == "OPTIONS" or "origin" in headers) and not self.router.allows_browser(path):
                raise BrowserRequest()  # Lava blocks frontend requests: only the dashboard answers a browser
            route, params = self.router.match(method, path)
            caller = await authorize(svc, headers, route.access)
            if route.planner is not None:  # a proxied route: the request path tells its story with this plan
                if svc.tracer is None:
                    await serve(svc, scope, headers, proto, caller,  # type: ignore[arg-type]
                                route.planner, error_format)
                else:  # observability hook: the request's span around the story
                    await svc.tracer.serve(serve, svc, scope, headers, proto, caller, route.planner, error_format)
            else:
                await route.handler(svc, scope, proto, caller, **params)  # type: ignore[misc]
        except GatewayError as exc:
            metrics.errors += 1
            send_error(proto, exc, fmt=error_format(svc, scope))
        except Exception as exc:
            metrics.errors += 1
            if is_outage(exc):  # the database or Redis did not answer: a 503 the client may retry
                log.warning("store unreachable on %s %s (%s: %s)", scope.method, scope.path, type(exc).__name__, exc)
                send_error(proto, store_unavailable(), fmt=error_format(svc, scope))
                return
            # A bug, not bad input: the traceback goes to the log, the client gets the usual JSON error body.
            log.exception("unhandled error on %s %s", scope.method, scope.path)
            send_error(proto, GatewayError(), fmt=error_format(svc, scope))


def error_format(svc: Services, scope: Scope) -> str | None:
    """The error shape for a request refused before its route planned it (see request_path/replies.py)."""
    path = scope.path
    try:
        if path.startswith("/providers/"):
            return svc.catalogue.by_name(provider_path(path)[0]).error_format
        if path == "/v1/forward" or path.startswith("/v1/forward/"):
            return forward_target(svc, path[len("/v1/forward"):], scope.query_string).provider.error_format
    except GatewayError:
        return None
    return unified_error_format(path)


COMPILED_MODULES = (  # setup.py's FASTPATH, one entry per module built from _fastpath/ (tests/test_fastpath_loaded.py)
    "edge_proxy._forward_token_c", "edge_proxy.metering._usage_scan_c", "edge_proxy._headers_c",
    "edge_proxy.metering._cost_c", "edge_proxy.billing._media_scan_c", "edge_proxy.observability._tally_c",
    "edge_proxy.log_sinks._rows_c",
)


def _warn_if_not_compiled(settings: Settings) -> None:
    """A build that should be compiled but is not still works, slower: say so rather than fall back silently."""
    if settings.pure_python:
        return
    missing = [name for name in COMPILED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        log.warning("the compiled hot path (_fastpath/) is not built (%s missing): running the pure-Python twins, "
                    "which are slower; build it with `pip install -e .` or install the package", ", ".join(missing))


def create_app() -> Gateway:
    """Granian's factory: each worker builds its own app from the environment."""
    return Gateway(Settings.load())
