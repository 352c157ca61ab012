"""The RSGI application: routes, and the state a worker holds from start-up to shutdown.

Granian calls `__rsgi_init__` when a worker starts (open the store, the log sink, the upstream pool, the log
writer) and `__rsgi_del__` when it stops (drain the log queue, then close). Nothing here runs at import.
"""
from __future__ import annotations

import asyncio
import gc
import logging

import msgspec

from . import dashboard, proxy
from .api.routes import ADMIN_ROUTES, ROUTES, Router
from .auth import Authenticator
from .billing.balances import Balances
from .billing.engine import BillingEngine
from .billing.holds import HoldBackend, RedisHolds, SQLHolds
from .billing.leases import Leases
from .billing.spend_keys import SpendKeyGate
from .billing.webhooks import WebhookSender
from .money import parse_usd, usd
from .errors import BrowserRequest, GatewayError, InvalidRequest, MethodNotAllowed, NotFound
from .log_sinks import LogSink, open_log_sink
from .log_sinks.spill import SpillDir
from .metadata import split_metadata_param
from .metrics import Metrics
from .metering.log_queue import LogQueue
from .metering.pricing import PriceTable
from .metering.record import RequestRecord
from .providers import Catalogue
from .providers.catalogue import decode_forward_url
from .settings import Settings
from .store import Store, open_store
from .unified import routes as unified_routes
from .upstream import UpstreamPool

log = logging.getLogger("edge_proxy")
_JSON = [("content-type", "application/json")]
_HEALTHY = msgspec.json.encode({"status": "ok"})
_PROMETHEUS = [("content-type", "text/plain; version=0.0.4; charset=utf-8")]


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalogue = Catalogue.load(settings.upstreams, settings.provider_keys)
        self.prices = PriceTable.load(overrides_path=settings.prices_file)
        self.store: Store = open_store(settings.database_url)
        self.log_sink: LogSink = open_log_sink(settings.database_url)
        self.redis = None
        redis_holds = None
        holds: HoldBackend = SQLHolds(self.store.db)
        if settings.redis_url:
            import redis.asyncio
            self.redis = redis.asyncio.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout,
                                                      socket_connect_timeout=settings.redis_timeout)
            holds = redis_holds = RedisHolds(self.redis, self.store.db)
        self.leases = Leases(holds, ttl=settings.lease_ttl, timeout=max(1.0, settings.redis_timeout * 2))
        self.webhooks = WebhookSender(self.store.db, lambda: self.upstream,
                                      backoff=settings.webhook_retry_seconds)
        self.billing = BillingEngine(self.store.db, self.log_sink, self.leases, self.prices,
                                     byok_fee_nanos=parse_usd(settings.byok_fee, "EDGE_PROXY_BYOK_FEE"),
                                     redis_holds=redis_holds, on_autopay=self._autopay)
        self.balances = Balances(self.store.db, redis_holds)
        self.log_queue = LogQueue(self.log_sink, SpillDir(settings.spill_dir), commit=self.commit_batch,
                                  on_spill=self.billing.spilled, max_size=settings.log_queue_size,
                                  batch_size=settings.log_batch_size, max_age=settings.log_flush_seconds,
                                  spill_after=settings.log_spill_after)
        self.spend_keys = SpendKeyGate(self.store.db, self.redis)
        self.auth = Authenticator(self.store, settings.principal_cache_size, settings.principal_cache_ttl,
                                  self.billing.billing_of)
        self.request_ids = proxy.RequestIds()
        self.metrics = Metrics()
        self.router = Router(ROUTES)
        self.admin_router = Router(ADMIN_ROUTES)
        self.upstream: UpstreamPool | None = None

    # -- lifecycle (Granian RSGI hooks) --------------------------------------------------------------------
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.start())
        # Everything built so far lives for the worker's life: move it out of the collector's sight, and let the
        # youngest generation grow before it is scanned. Requests make few reference cycles, so this trades
        # rare, slightly longer collections for fewer ones (about 4% of the request path, bench_request_path).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.stop())

    async def start(self) -> None:
        _warn_if_not_compiled(self.settings)
        await self.store.open()
        try:
            await self.log_sink.open()
        except Exception as exc:  # the writer retries and spills; serving must not wait for the log store
            log.warning("log store unavailable at start-up (%s: %s); records will queue and spill",
                        type(exc).__name__, exc)
        self.upstream = UpstreamPool(connect_timeout=self.settings.connect_timeout,
                                     read_timeout=self.settings.read_timeout)
        self.log_queue.start()
        self.leases.start()

    async def stop(self) -> None:
        await self.log_queue.stop()
        await self.webhooks.stop()
        await self.leases.stop()
        await self.log_sink.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.upstream is not None:
            await self.upstream.close()
        await self.store.close()

    # -- off the request path: price, bill, log ---------------------------------------------------------------
    async def commit_batch(self, records: list[RequestRecord]) -> None:
        """The log writer's step for one batch: price it, then bill and write it in one transaction."""
        self.prepare_records(records)
        await self.billing.commit(records)

    def _autopay(self, customer_id: str, merchant_id: str, balance: int, threshold: int, amount: int) -> None:
        self.webhooks.emit(merchant_id, "customer.autopay", {
            "customer_id": customer_id, "balance": usd(balance), "autopay_threshold": usd(threshold),
            "autopay_amount": usd(amount)})

    def prepare_records(self, records: list[RequestRecord]) -> None:
        """Price the records not priced yet (requests price their own record in Exchange.finish)."""
        for r in records:
            if not r.priced:
                self.price(r)

    def price(self, r: RequestRecord) -> None:
        """Price one record from its token counts and the price table; unknown models stay unpriced."""
        if r.provider is None or r.usage_source == "none":
            return
        try:
            cost = self.prices.cost(r.provider, r.model, r)
        except Exception:  # a bug in pricing must not lose the record: it is logged, and stays unpriced
            log.exception("pricing %s failed; the record is logged unpriced", r.request_id)
            return
        if cost.priced:
            r.cost_nanos, r.input_cost_nanos, r.output_cost_nanos = cost.nanos, cost.input_nanos, cost.output_nanos
            r.priced = True

    # -- routing -------------------------------------------------------------------------------------------
    async def __rsgi__(self, scope, proto) -> None:
        self.metrics.requests += 1
        path = scope.path
        try:
            if path == "/dashboard" or path.startswith("/dashboard/"):  # TEMP: the lead mounts the prefix
                return await dashboard.handle(self, scope, proto)
            if scope.method == "OPTIONS" or "origin" in scope.headers:
                raise BrowserRequest()  # Lava blocks frontend requests: no route answers a browser
            if path.startswith("/v1/forward") and (len(path) == 11 or path[11] == "/"):
                query, meta = split_metadata_param(scope.query_string)
                await proxy.forward(self, scope, proto, lambda: self._forward_target(query, path[11:]), meta)
            elif path.startswith("/providers/"):
                name, _, rest = path[len("/providers/"):].partition("/")
                query, meta = split_metadata_param(scope.query_string)
                await proxy.forward(self, scope, proto,
                                    lambda: self.catalogue.resolve_provider_path(name, "/" + rest, query), meta)
            elif path.startswith("/v1/rewrite/"):
                await unified_routes.rewrite(self, scope, proto)
            elif path.startswith("/v1/"):
                await self._api(scope, proto, scope.method, path[4:])
            elif path.startswith("/admin/"):
                handler, params = self.admin_router.match(scope.method, path[7:])
                await handler(self, scope, proto, **params)
            elif path == "/metrics":
                _only(scope, "GET")
                proto.response_bytes(200, _PROMETHEUS, self.metrics.render(self))
            elif path == "/healthz":
                _only(scope, "GET", "HEAD")
                proto.response_bytes(200, _JSON, _HEALTHY)
            else:
                raise NotFound(f"no route for {path}")
        except GatewayError as exc:
            self.metrics.errors += 1
            proxy.send_error(proto, exc)
        except Exception:
            # A bug, not bad input: the traceback goes to the log, the client gets the usual JSON error body.
            self.metrics.errors += 1
            log.exception("unhandled error on %s %s", scope.method, path)
            proxy.send_error(proto, GatewayError())  # a no-op if the response had already started

    async def _api(self, scope, proto, method: str, rest: str) -> None:
        handler, params = self.router.match(method, rest)
        await handler(self, scope, proto, **params)

    def _forward_target(self, query: str, suffix: str):
        """`/v1/forward?u=<url>[&more]`: `u` percent-encoded or raw; the other parameters go upstream.

        A path after `/v1/forward/` is appended to `u`'s path, which is what HTTP clients that treat
        `<gateway>/v1/forward?u=<base>` as a base URL send."""
        url, rest = None, []
        for part in query.split("&") if query else ():
            if url is None and part.startswith("u="):
                url = decode_forward_url(part[2:])
            elif part:
                rest.append(part)
        if not url:
            raise InvalidRequest("missing the `u` query parameter: /v1/forward?u=<provider URL>")
        if suffix.strip("/"):
            head, sep, tail = url.partition("?")
            url = head.rstrip("/") + "/" + suffix.lstrip("/") + sep + tail
        return self.catalogue.resolve_url(url, "&".join(rest))


def _warn_if_not_compiled(settings: Settings) -> None:
    """A build that should be compiled but is not still works, slower: say so rather than fall back silently."""
    from .forward_token import IMPLEMENTATION
    from .metering.usage import COMPILED
    if not settings.pure_python and (IMPLEMENTATION != "c" or not COMPILED):
        log.warning("the compiled hot path (_fastpath/) is not built: running the pure-Python twins, which are "
                    "slower; build it with `python setup.py build_ext --inplace` or install the package")


def _only(scope, *methods: str) -> None:
    if scope.method not in methods:
        raise MethodNotAllowed(f"{scope.method} is not allowed here; use {' or '.join(methods)}")


def create_app() -> Gateway:
    """Granian's factory: each worker builds its own app from the environment."""
    return Gateway(Settings.load())
