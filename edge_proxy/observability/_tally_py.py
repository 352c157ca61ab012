"""A batch of finished attempts summed for the metrics, in pure Python: the specification of _fastpath/tally.pyx.

The publisher (publisher.py) takes the records the request path finished since its last turn and adds them to
prometheus-client's figures; that runs on the event loop, once per record, so the loop over the records is summed
here, by (provider, model, status), with the labels (model family, status class) worked out once per group after.
publisher.py picks this module or its compiled twin once, at import.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Any

# seconds: from 50 µs to 10 s, for the gateway's overhead as much as for a provider's answer
BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 120.0)
_BOUNDS = (*BUCKETS, float("inf"))
SPEND_LIMIT = "spend_limit_reached"  # the error_reason of a 402 that a spend key's limit refused

Key = tuple[str, str | None, int]  # provider ("none" when there was none), model as the record names it, status


class Group:
    """The sums of a batch's records of one provider, model and status. `duration` and `upstream` are bucket
    counts (one per bound of BUCKETS, then +Inf, not cumulative), as prometheus-client keeps a histogram."""

    __slots__ = ("requests", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "cost_nanos",
                 "spend_limit", "duration", "duration_sum", "upstream", "upstream_sum")

    def __init__(self) -> None:
        self.requests = self.spend_limit = 0
        self.input_tokens = self.output_tokens = self.cached_tokens = self.reasoning_tokens = self.cost_nanos = 0
        self.duration, self.duration_sum = [0] * len(_BOUNDS), 0.0  # request_duration_seconds
        self.upstream, self.upstream_sum = [0] * len(_BOUNDS), 0.0  # upstream_seconds (records that reached one)


class Overhead:
    """What the gateway itself added, over the records that say (overhead_ms set): one histogram for all."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts, self.total = [0] * len(_BOUNDS), 0.0


def tally(finished: list[tuple[Any, float]]) -> tuple[dict[Key, Group], Overhead]:
    """Sum (record, upstream seconds or -1) pairs by provider, model and status: tokens by kind, the cost of the
    priced ones, spend-limit refusals, and the histograms' counts and sums."""
    groups: dict[Key, Group] = {}
    overhead = Overhead()
    for record, upstream_seconds in finished:
        status = record.status_code
        key = (record.provider or "none", record.model, status)
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group()
        g.requests += 1
        g.input_tokens += record.input_tokens
        g.output_tokens += record.output_tokens
        g.cached_tokens += record.cached_tokens
        g.reasoning_tokens += record.reasoning_tokens
        if record.priced and record.cost_nanos:  # as the publisher always summed: a None never reaches the sum
            g.cost_nanos += record.cost_nanos
        if status == 402 and record.error_reason == SPEND_LIMIT:
            g.spend_limit += 1
        seconds = record.latency_ms / 1000
        g.duration_sum += seconds
        g.duration[bisect_left(_BOUNDS, seconds)] += 1
        if upstream_seconds >= 0:
            g.upstream_sum += upstream_seconds
            g.upstream[bisect_left(_BOUNDS, upstream_seconds)] += 1
        if record.overhead_ms:
            seconds = record.overhead_ms / 1000
            overhead.total += seconds
            overhead.counts[bisect_left(_BOUNDS, seconds)] += 1
    return groups, overhead
