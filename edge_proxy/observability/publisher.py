"""One set of Prometheus metrics for the whole gateway, whichever worker answers the scrape.

Each worker publishes its in-memory figures (worker_metrics.py) into prometheus-client's multiprocess files a few
times a second, and at each scrape; the worker that answers a scrape reads every worker's files and reports their
sum (`MultiProcessCollector`). `edge-proxy serve` makes the directory, empty, before Granian forks the workers
(`prepare_multiprocess_dir`). Without one (the app built in-process), the figures are this process's alone.

Labels stay bounded: `provider` is a catalogue name, `model` a family (families.py), `status` a class (2xx...),
`region` the setting. Money is counted in USD as floats here: a metric is a view, the ledger is the account.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
from collections import Counter as Tally
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from ._tally_py import BUCKETS, tally
from .families import Families, status_class

if TYPE_CHECKING:
    from ..services import Services
    from ..settings import Settings
    from .access_log import AccessLog

log = logging.getLogger("edge_proxy")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_NANOS_PER_USD = 1e9
_OWED_QUERY_SECONDS = 0.5
_TOKEN_KINDS = ("input", "output", "cached", "reasoning")
_STATUS_CLASSES = {code: status_class(code) for code in range(100, 600)}
# per-worker counters kept by other services, published as they grow: (metric suffix, help, how to read it)
_COUNTED: tuple[tuple[str, str, str], ...] = (
    ("log_records_written_total", "Records committed to the request log from memory.", "log_queue.written"),
    ("log_records_spilled_total", "Records that left memory to wait in the journal: the store was down or the "
                                  "queue full.", "log_queue.spilled"),
    ("log_records_replayed_total", "Records committed from the journal.", "log_queue.replayed"),
    ("log_records_cut_total", "Attempts a dead worker left in flight, billed as gateway_crashed.", "log_queue.cut"),
    ("log_records_dropped_total", "Records lost (always 0: each is journaled first).", "log_queue.dropped"),
    ("log_records_refused_total", "Records the store refused as they are, kept in the journal directory (should "
                                  "be 0).", "journal.refused"),
    ("log_write_failures_total", "Failed log writes (each is retried).", "log_queue.write_failures"),
    ("log_journal_errors_total", "Journal writes the disk refused (should be 0).", "journal.errors"),
    ("principal_cache_hits_total", "Credentials found in a worker's cache.", "auth.cache.hits"),
    ("principal_cache_misses_total", "Credentials that needed a database read.", "auth.cache.misses"),
    ("balance_lease_hits_total", "Reservations admitted from a local lease.", "leases.local_hits"),
    ("balance_store_calls_total", "Reservations that needed the balance store.", "leases.store_calls"),
    ("lease_top_ups_total", "Background top-ups of a balance lease.", "leases.refills"),
    ("webhook_deliveries_sent_total", "Webhook deliveries that succeeded.", "webhooks.delivered"),
    ("webhook_deliveries_failed_total", "Webhook delivery attempts that failed.", "webhooks.failed"),
    ("http_requests_total", "HTTP requests received (every route, /metrics included).", "metrics.requests"),
    ("errors_total", "Requests the gateway itself answered with an error.", "metrics.errors"),
)
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")

# The batch's sums are compiled (_fastpath/tally.pyx) unless EDGE_PROXY_PURE_PYTHON forces their twin, _tally_py;
# reading that one variable at import is deliberate (as yarl does): it chooses code, not behaviour.
TALLY_IMPLEMENTATION = "py"
if os.environ.get("EDGE_PROXY_PURE_PYTHON", "") in ("", "0"):
    try:
        from ._tally_c import tally  # the same API (.pyi)
        TALLY_IMPLEMENTATION = "c"
    except ImportError:  # not built: tests/test_fastpath_loaded.py fails loudly on a build that should have it
        pass


def prepare_multiprocess_dir(settings: Settings, environ: MutableMapping[str, str]) -> tuple[str, bool]:
    """The directory every worker of this gateway start writes its metrics to, emptied of an earlier start's files:
    PROMETHEUS_MULTIPROC_DIR if set, else EDGE_PROXY_METRICS_DIR, else a new temporary one. Sets both variables
    for the workers. Returns (path, whether it was made here and should be removed at exit)."""
    path, made = environ.get(MULTIPROC_ENV) or settings.metrics_dir, False
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))
    else:
        path, made = tempfile.mkdtemp(prefix="edge-proxy-metrics-"), True
    environ[MULTIPROC_ENV] = path
    environ["EDGE_PROXY_METRICS_DIR"] = path
    return path, made


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Publisher:
    """Owns this worker's prometheus-client metrics; `publish()` moves the worker's figures into them."""

    def __init__(self, svc: Services, access_log: AccessLog | None = None) -> None:
        settings = svc.settings
        self.dir = settings.metrics_dir
        if self.dir:  # prometheus-client picks its file-backed values by this variable, when first imported
            os.environ[MULTIPROC_ENV] = self.dir
        import prometheus_client as pc
        import prometheus_client.multiprocess

        self._pc: Any = pc
        self._multiprocess: Any = prometheus_client.multiprocess
        self.svc = svc
        self.access_log = access_log
        self.region = settings.region
        self.families = Families()
        self._last: dict[str, int] = {}
        # single-process mode registers the metrics here; multiprocess mode reads the files at each scrape
        self.registry = None if self.dir else pc.CollectorRegistry()
        reg, r = self.registry, ("region",)
        self.requests = pc.Counter("edge_proxy_requests_total", "Proxied requests (each attempt) by provider, "
                                   "model family and status class.", ("provider", "model", "status", *r),
                                   registry=reg)
        self.tokens = pc.Counter("edge_proxy_tokens_total", "Tokens billed, by kind: input, output, cached "
                                 "(part of input), reasoning (part of output).", ("provider", "model", "kind", *r),
                                 registry=reg)
        self.cost = pc.Counter("edge_proxy_cost_usd_total", "What priced requests cost at the provider's prices.",
                               ("provider", "model", *r), registry=reg)
        self.charge = pc.Counter("edge_proxy_charge_usd_total", "What settled requests took from their payers' "
                                 "balances (a customer's charge, or the merchant's when it pays).", r, registry=reg)
        self.payment_required = pc.Counter("edge_proxy_payment_required_total", "Requests answered 402: balance or "
                                           "spend limit.", r, registry=reg)
        self.spend_limit = pc.Counter("edge_proxy_spend_limit_refusals_total", "Requests refused by a spend key's "
                                      "limit.", r, registry=reg)
        self.duration = pc.Histogram("edge_proxy_request_duration_seconds", "From a request's arrival to its "
                                     "record: the whole answer, streamed or not.", ("provider", *r),
                                     buckets=BUCKETS, registry=reg)
        self.upstream = pc.Histogram("edge_proxy_upstream_seconds", "From sending a request upstream to its "
                                     "response head.", ("provider", *r), buckets=BUCKETS, registry=reg)
        self.overhead = pc.Histogram("edge_proxy_overhead_seconds", "Time the gateway itself added to a request.",
                                     r, buckets=BUCKETS, registry=reg)
        self.queue_depth = pc.Gauge("edge_proxy_log_queue_depth", "Request records waiting in memory for the log "
                                    "writer.", r, multiprocess_mode="livesum", registry=reg)
        self.queue_age = pc.Gauge("edge_proxy_log_queue_oldest_seconds", "Age of the oldest record waiting in "
                                  "memory (0: none waits).", r, multiprocess_mode="livemax", registry=reg)
        self.store_failing = pc.Gauge("edge_proxy_log_store_failing_seconds", "How long the log store has refused "
                                      "a batch (0: healthy).", r, multiprocess_mode="livemax", registry=reg)
        self.counted = {name: pc.Counter("edge_proxy_" + name, help_, r, registry=reg).labels(self.region)
                        for name, help_, _ in _COUNTED}
        for metric in (self.charge, self.payment_required, self.spend_limit):
            metric.labels(self.region)  # a series from the start (at 0), so a dashboard finds it before traffic
        self._owed = _OwedDeliveries(pc, self.region)
        if reg is not None:
            reg.register(self._owed)

    # -- off the request path --------------------------------------------------------------------------------
    def publish(self) -> bool:
        """Move what this worker counted since the last call into the metrics (and the access log's lines).
        False when nothing moved: no figure grew, and the log queue is empty and its store healthy (so none of
        its gauges grows with the clock either)."""
        svc, region = self.svc, self.region
        finished = svc.metrics.take_finished()
        if finished:
            self._publish_finished(finished)
        charged = svc.metrics.take_charged()
        if charged:
            self.charge.labels(region).inc(sum(charged) / _NANOS_PER_USD)
        moved = bool(finished or charged)
        for name, _, source in _COUNTED:
            value = _read(svc, source)
            grown = value - self._last.get(name, 0)
            if grown > 0:
                self.counted[name].inc(grown)
                self._last[name] = value
                moved = True
        queue = svc.log_queue
        depth, failing = queue.depth, queue.failing_for()
        self.queue_depth.labels(region).set(depth)
        self.queue_age.labels(region).set(queue.oldest_age())
        self.store_failing.labels(region).set(failing)
        if finished and self.access_log is not None:  # last: a disk that refuses the log costs no figure above
            self.access_log.write([record for record, _ in finished])
        return moved or depth > 0 or failing > 0

    def _publish_finished(self, finished: list[tuple[Any, float]]) -> None:
        region, families = self.region, self.families
        groups, overhead = tally(finished)  # summed by (provider, model, status): labels once per group, below
        requests: Tally[tuple[str, str, str]] = Tally()
        tokens: dict[tuple[str, str], list[int]] = {}  # input, output, cached, reasoning
        cost: Tally[tuple[str, str]] = Tally()
        duration: dict[str, tuple[list[int], float]] = {}
        upstream: dict[str, tuple[list[int], float]] = {}
        payment_required = spend_limit = 0
        for (provider, model, status), g in groups.items():
            pm = (provider, families(model))
            requests[(*pm, _STATUS_CLASSES.get(status, "other"))] += g.requests
            counts = tokens.get(pm)
            if counts is None:
                counts = tokens[pm] = [0, 0, 0, 0]
            counts[0] += g.input_tokens
            counts[1] += g.output_tokens
            counts[2] += g.cached_tokens
            counts[3] += g.reasoning_tokens
            if g.cost_nanos:
                cost[pm] += g.cost_nanos
            if status == 402:
                payment_required += g.requests
                spend_limit += g.spend_limit
            _merge(duration, provider, g.duration, g.duration_sum)
            up = g.upstream
            if any(up):
                _merge(upstream, provider, up, g.upstream_sum)
        for (provider, model, status_), n in requests.items():
            self.requests.labels(provider, model, status_, region).inc(n)
        for (provider, model), kinds in tokens.items():
            for kind, n in zip(_TOKEN_KINDS, kinds):
                if n:
                    self.tokens.labels(provider, model, kind, region).inc(n)
        for (provider, model), nanos in cost.items():
            self.cost.labels(provider, model, region).inc(nanos / _NANOS_PER_USD)
        if payment_required:
            self.payment_required.labels(region).inc(payment_required)
        if spend_limit:
            self.spend_limit.labels(region).inc(spend_limit)
        for metric, tallied in ((self.duration, duration), (self.upstream, upstream)):
            for provider, (buckets, total) in tallied.items():
                _add_to_histogram(metric.labels(provider, region), buckets, total)
        over = overhead.counts
        if any(over):
            _add_to_histogram(self.overhead.labels(region), over, overhead.total)

    # -- a scrape ------------------------------------------------------------------------------------------
    async def render(self) -> bytes:
        """The exposition text for the whole gateway, this worker's newest figures included."""
        self.publish()
        self._owed.value = await self._deliveries_owed()
        pc = self._pc
        registry = self.registry
        if registry is None:
            self._forget_dead_workers()
            registry = pc.CollectorRegistry()
            self._multiprocess.MultiProcessCollector(registry, path=self.dir)
            registry.register(self._owed)
        text: bytes = pc.generate_latest(registry)
        return text

    async def _deliveries_owed(self) -> float | None:
        try:  # a store that is down or locked must not hold the scrape up
            row = await asyncio.wait_for(self.svc.store.db.fetchone(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"), _OWED_QUERY_SECONDS)
        except Exception as exc:  # the store is away: the scrape still answers, without this one figure
            log.warning("metrics: cannot count owed webhook deliveries (%s: %s)", type(exc).__name__, exc)
            return None
        return float(row[0]) if row else 0.0

    def _forget_dead_workers(self) -> None:
        """A worker killed without its shutdown leaves its live gauges behind: drop those of pids that are gone."""
        assert self.dir is not None
        for name in os.listdir(self.dir):
            found = _LIVE_GAUGE_FILE.match(name)
            if found and not _alive(int(found.group(1))):
                self._multiprocess.mark_process_dead(int(found.group(1)), self.dir)

    def close(self) -> None:
        """At shutdown: publish the last figures; this worker's live gauges leave the sum."""
        self.publish()
        if self.dir:
            self._multiprocess.mark_process_dead(os.getpid(), self.dir)


class _OwedDeliveries:
    """A gauge read from the database at scrape time: it is the gateway's figure, not a worker's."""

    def __init__(self, pc: Any, region: str) -> None:
        self._family = pc.metrics_core.GaugeMetricFamily
        self.region = region
        self.value: float | None = None

    def collect(self) -> list[Any]:
        if self.value is None:
            return []
        gauge = self._family("edge_proxy_webhook_deliveries_owed", "Webhook deliveries still owed (pending).",
                             labels=("region",))
        gauge.add_metric((self.region,), self.value)
        return [gauge]


def _merge(histograms: dict[str, tuple[list[int], float]], provider: str, counts: list[int], total: float) -> None:
    """Add a group's bucket counts and sum to its provider's."""
    found = histograms.get(provider)
    if found is None:
        histograms[provider] = (list(counts), total)
    else:
        histograms[provider] = ([a + b for a, b in zip(found[0], counts, strict=True)], found[1] + total)


def _add_to_histogram(child: Any, counts: list[int], total: float) -> None:
    # prometheus-client has no bulk observe; its child keeps one value per bucket (not cumulative) and a sum, so
    # adding to those is what `observe()` does, once per batch instead of once per request.
    for i, n in enumerate(counts):
        if n:
            child._buckets[i].inc(n)
    child._sum.inc(total)


def _read(svc: Services, source: str) -> int:
    value: Any = svc
    for part in source.split("."):
        value = getattr(value, part)
    return int(value)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

