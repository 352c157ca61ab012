"""Prometheus metrics for one worker, rendered in the text exposition format at GET /metrics.

Each worker process keeps its own numbers and labels them with its pid, so a scrape that lands on any worker
is correct for that worker; run one worker per container (or sum by pid) to see the whole gateway.
"""
from __future__ import annotations

import os
from bisect import bisect_left

# seconds: from 50 us to 10 s
_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)


class Histogram:
    __slots__ = ("counts", "total", "n")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(_BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1

    def render(self, name: str, labels: str) -> list[str]:
        lines, running = [], 0
        for bound, count in zip(_BUCKETS, self.counts):
            running += count
            lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {running}')
        lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.n}')
        lines.append(f"{name}_sum{{{labels}}} {self.total:.6f}")
        lines.append(f"{name}_count{{{labels}}} {self.n}")
        return lines


class Metrics:
    __slots__ = ("requests", "errors", "by_status", "upstream_seconds", "overhead_seconds")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.by_status: dict[int, int] = {}
        self.upstream_seconds = Histogram()
        self.overhead_seconds = Histogram()

    def answered(self, status: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def render(self, gw) -> bytes:
        pid = f'pid="{os.getpid()}"'
        q, auth, leases = gw.log_queue, gw.auth.cache, gw.leases
        out = [
            "# HELP edge_proxy_requests_total Requests received by this worker.",
            "# TYPE edge_proxy_requests_total counter",
            f"edge_proxy_requests_total{{{pid}}} {self.requests}",
            "# HELP edge_proxy_errors_total Requests the gateway itself answered with an error.",
            "# TYPE edge_proxy_errors_total counter",
            f"edge_proxy_errors_total{{{pid}}} {self.errors}",
            "# HELP edge_proxy_responses_total Proxied responses by status code (the provider's or ours).",
            "# TYPE edge_proxy_responses_total counter",
            *(f'edge_proxy_responses_total{{{pid},code="{code}"}} {n}' for code, n in sorted(self.by_status.items())),
            "# HELP edge_proxy_upstream_seconds From sending a request upstream to its response head.",
            "# TYPE edge_proxy_upstream_seconds histogram",
            *self.upstream_seconds.render("edge_proxy_upstream_seconds", pid),
            "# HELP edge_proxy_overhead_seconds Time the gateway itself added to a request.",
            "# TYPE edge_proxy_overhead_seconds histogram",
            *self.overhead_seconds.render("edge_proxy_overhead_seconds", pid),
            "# HELP edge_proxy_log_queue_depth Request records waiting for the log writer.",
            "# TYPE edge_proxy_log_queue_depth gauge",
            f"edge_proxy_log_queue_depth{{{pid}}} {q.depth}",
            "# HELP edge_proxy_log_store_failing_seconds How long the log store has refused a batch (0: healthy).",
            "# TYPE edge_proxy_log_store_failing_seconds gauge",
            f"edge_proxy_log_store_failing_seconds{{{pid}}} {q.failing_for():.3f}",
        ]
        for name, value, help_ in (
                ("log_records_written_total", q.written, "Records committed to the request log from memory."),
                ("log_records_spilled_total", q.spilled,
                 "Records that left memory to wait in the journal: the store was down or the queue full."),
                ("log_records_replayed_total", q.replayed,
                 "Records committed from the journal: this worker's backlog and dead workers' segments."),
                ("log_records_cut_total", q.cut,
                 "Attempts a dead worker left in flight, billed from their opened entry as gateway_crashed."),
                ("log_records_dropped_total", q.dropped, "Records lost (always 0: each is journaled first)."),
                ("log_records_refused_total", q.journal.refused,
                 "Records the store refused as they are, kept in the journal directory (should be 0)."),
                ("log_write_failures_total", q.write_failures, "Failed log writes (each is retried)."),
                ("log_journal_errors_total", q.journal.errors,
                 "Journal writes the disk refused (those records are in memory only; should be 0)."),
                ("principal_cache_hits_total", auth.hits, "Credentials found in the per-worker cache."),
                ("principal_cache_misses_total", auth.misses, "Credentials that needed a database read."),
                ("balance_lease_hits_total", leases.local_hits, "Reservations admitted from a local lease."),
                ("balance_store_calls_total", leases.store_calls, "Reservations that needed the balance store.")):
            out += [f"# HELP edge_proxy_{name} {help_}", f"# TYPE edge_proxy_{name} counter",
                    f"edge_proxy_{name}{{{pid}}} {value}"]
        return ("\n".join(out) + "\n").encode()
