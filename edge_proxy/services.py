"""What a worker holds from start-up to shutdown: the services every handler and the request path use.

Handlers take a `Services`, never the app: settings, the catalogue and prices, the store, authentication,
billing, the upstream pool, the log queue, metrics. `start()` opens connections and starts the background tasks
(the log writer, lease upkeep, the key-event watcher); `stop()` drains the log queue and closes them. Nothing here
runs at import.
"""
from __future__ import annotations

import logging
import os
import time

from .auth import Authenticator
from .billing.balances import Balances
from .billing.engine import BillingEngine
from .billing.holds import HoldBackend, RedisHolds, SQLHolds
from .billing.leases import Leases
from .billing.spend_keys import SpendKeyGate
from .billing.webhooks import WebhookSender
from .errors import SettingsError
from .log_sinks import LogSink, open_log_sink
from .log_sinks.writer_process import InlineWriter, WriterProcess
from .metering.journal import Journal, store_id
from .metering.log_queue import LogQueue
from .metering.pricing import PriceTable
from .metering.record import RequestRecord
from .money import parse_usd
from .observability import Observability, WorkerMetrics
from .providers import Catalogue
from .request_path.ownership import Owners
from .settings import Settings
from .store import open_store
from .store.key_events import KeyEventWatcher
from .unified.planner import ModelIndex
from .upstream import UpstreamPool

log = logging.getLogger("edge_proxy")


class RequestIds:
    """Time-ordered, unique request ids: microseconds, a per-process random part, and a counter."""

    __slots__ = ("_n", "_format")

    def __init__(self) -> None:
        self._n = 0
        self._format = f"req_%014x{os.urandom(3).hex()}%06x"  # microseconds, the random part, the counter

    def next(self) -> str:
        self._n = n = (self._n + 1) & 0xFFFFFF
        return self._format % (time.time_ns() // 1000, n)


class Services:
    """One worker's services. Built from settings (no I/O); `start()` connects."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalogue = Catalogue.load(settings.upstreams, settings.provider_keys)
        self.prices = PriceTable.load(overrides_path=settings.prices_file)
        self.models = ModelIndex(self.catalogue, self.prices)
        self.store = open_store(settings.database_url)
        self.log_sink: LogSink = open_log_sink(settings.database_url)
        self.owners = Owners(self.log_sink.db)  # who owns each response made on a managed key
        self.redis = None
        redis_holds = None
        holds: HoldBackend = SQLHolds(self.store.db)
        if settings.redis_url:
            from .store.redis_client import open_redis  # its URL parsing and drivers: only with a Redis URL
            self.redis = open_redis(settings.redis_url, settings.redis_timeout)
            holds = redis_holds = RedisHolds(self.redis, self.store.db, settings.region, settings.region_lease_ttl)
        self.leases = Leases(holds, ttl=settings.lease_ttl, timeout=max(1.0, settings.redis_timeout * 2))
        self.webhooks = WebhookSender.from_settings(self.store.db, settings)
        self.billing = BillingEngine(self.store.db, self.log_sink, self.leases, self.prices,
                                     byok_fee_nanos=parse_usd(settings.byok_fee, "EDGE_PROXY_BYOK_FEE"),
                                     redis_holds=redis_holds, webhooks=self.webhooks)
        self.balances = Balances(self.store.db, holds, redis_holds, self.billing.redis_pending)
        self.log_writer = WriterProcess(settings) if settings.log_writer == "process" else InlineWriter(self.billing)
        self.journal = Journal(settings.spill_dir, store=store_id(settings.database_url),
                               segment_bytes=settings.journal_segment_bytes,
                               fsync=settings.journal_fsync, sync_every=settings.journal_sync_seconds)
        self.log_queue = LogQueue(self.journal, self._commit_lines, price=self.price,
                                  max_size=settings.log_queue_size, batch_size=settings.log_batch_size,
                                  max_age=settings.log_flush_seconds, spill_after=settings.log_spill_after)
        self.billing.settle_lag = self.log_queue.failing_for
        self.spend_keys = SpendKeyGate(self.store.db, self.redis)
        self.auth = Authenticator(self.store, settings.principal_cache_size, settings.principal_cache_ttl,
                                  self.billing.billing_of)
        self.key_events = KeyEventWatcher(self.store.db, self._forget, self._forget_all,
                                          interval=settings.revocation_poll, redis=self.redis)
        self.request_ids = RequestIds()
        self.metrics = WorkerMetrics()
        self.observability = Observability(self)  # metrics publisher, traces, access log
        self.tracer = self.observability.tracer  # None when tracing is off: the request path checks only this
        self.billing.settled = self.observability.settled
        # Set by start(); the request path only runs after it.
        self.upstream: UpstreamPool = None  # type: ignore[assignment]

    # -- key events: the caches that hold credentials, and the meters their billing reads ----------------------
    def _forget(self, ids: set[str]) -> None:
        self.billing.forget(ids)  # first: the principal verified again must not read a deleted meter back
        self.auth.forget(ids)

    def _forget_all(self) -> None:
        self.billing.forget_all()
        self.auth.forget_all()

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.open()
        try:
            await self.log_sink.open()
        except Exception as exc:  # the writer retries and spills; serving must not wait for the log store
            log.warning("log store unavailable at start-up (%s: %s); records will queue and spill",
                        type(exc).__name__, exc)
        self.upstream = UpstreamPool(connect_timeout=self.settings.connect_timeout,
                                     read_timeout=self.settings.read_timeout,
                                     head_timeout=self.settings.head_timeout,
                                     max_connections_per_host=self.settings.max_connections_per_host,
                                     max_response_bytes=self.settings.max_response_bytes,
                                     max_body_seconds=self.settings.max_stream_seconds)
        try:
            self.journal.open()
        except OSError as exc:  # without the journal a crash could lose served requests: refuse to start
            raise SettingsError(f"EDGE_PROXY_SPILL_DIR: cannot write the journal in {self.settings.spill_dir!r}: "
                                f"{exc.strerror or exc}") from None
        await self.log_writer.start()
        self.log_queue.start()
        self.leases.start()
        self.webhooks.start()
        self.key_events.start()
        self.observability.start()

    async def stop(self) -> None:
        await self.key_events.stop()
        await self.log_queue.stop()
        await self.log_writer.close()
        await self.observability.stop()  # after the log queue's last batches: their figures are published too
        await self.webhooks.stop()
        await self.leases.stop()
        await self.log_sink.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.upstream is not None:
            await self.upstream.close()
        await self.store.close()

    # -- off the request path: price, bill, log ---------------------------------------------------------------
    async def _commit_lines(self, request_ids: list[str], lines: list[bytes]) -> None:
        """The log writer's step for one batch of journal lines: bill and write it in one transaction (in the
        writer process), then give this worker's reservations back and mirror the debits, on this loop."""
        done, refused = await self.log_writer.commit(lines)
        if refused:
            self.journal.keep_refused([lines[i] for i in refused])
        await self.billing.after_commit(request_ids, done)

    async def commit_batch(self, records: list[RequestRecord]) -> None:
        """Price records, then bill and write them in one transaction, here (POST /v1/requests)."""
        for r in records:
            if not r.priced:
                self.price(r)
        await self.billing.commit(records)

    def price(self, r: RequestRecord) -> None:
        """Price one record from its token counts and the price table; unknown models stay unpriced."""
        if r.free:  # a token count (the catalogue's free endpoints) costs nothing, whatever its tokens
            r.cost_nanos = r.input_cost_nanos = r.output_cost_nanos = 0
            r.priced = True
            return
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
