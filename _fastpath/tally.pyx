# cython: language_level=3
"""A batch of finished attempts summed for the metrics, compiled: the twin of
edge_proxy/observability/_tally_py.py (the specification; its module docstring says what and why).

The same sums in the same order. Token counts and costs stay Python integers (no C integer can overflow); the
request counts and the histograms' bucket counts are C integers in each group, and a bucket is found by a scan of
17 C doubles. Built as edge_proxy.observability._tally_c; edge_proxy/observability/publisher.py picks it.
"""
from edge_proxy.observability._tally_py import BUCKETS, SPEND_LIMIT

__all__ = ["BUCKETS", "Group", "Overhead", "tally"]

cdef enum:
    NBOUNDS = 17  # BUCKETS, then +Inf
cdef double _BOUNDS[NBOUNDS]
for _i, _b in enumerate((*BUCKETS, float("inf"))):
    _BOUNDS[_i] = _b
assert len(BUCKETS) + 1 == NBOUNDS
cdef str _SPEND_LIMIT = SPEND_LIMIT


cdef inline int _bucket(double seconds) noexcept:
    # bisect_left: the first bound >= seconds (a NaN compares false everywhere, so it lands in the first, as there)
    cdef int i = 0
    while i < NBOUNDS - 1 and seconds > _BOUNDS[i]:
        i += 1
    return i


cdef list _counts(const long long* counts):
    return [counts[i] for i in range(NBOUNDS)]


cdef class Group:
    cdef public long long requests, spend_limit
    cdef public object input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_nanos
    cdef public double duration_sum, upstream_sum
    cdef long long _duration[NBOUNDS]
    cdef long long _upstream[NBOUNDS]

    def __cinit__(self):
        cdef int i
        self.input_tokens = self.output_tokens = self.cached_tokens = self.reasoning_tokens = self.cost_nanos = 0
        for i in range(NBOUNDS):
            self._duration[i] = self._upstream[i] = 0

    @property
    def duration(self):
        return _counts(self._duration)

    @property
    def upstream(self):
        return _counts(self._upstream)


cdef class Overhead:
    cdef public double total
    cdef long long _counts[NBOUNDS]

    def __cinit__(self):
        cdef int i
        for i in range(NBOUNDS):
            self._counts[i] = 0

    @property
    def counts(self):
        return _counts(self._counts)


def tally(list finished):
    cdef dict groups = {}
    cdef Overhead overhead = Overhead()
    cdef Group g
    cdef double seconds, upstream_seconds
    cdef object status
    for record, up in finished:
        upstream_seconds = up
        status = record.status_code
        key = (record.provider or "none", record.model, status)
        found = groups.get(key)
        if found is None:
            g = Group()
            groups[key] = g
        else:
            g = <Group>found
        g.requests += 1
        g.input_tokens += record.input_tokens
        g.output_tokens += record.output_tokens
        g.cached_tokens += record.cached_tokens
        g.reasoning_tokens += record.reasoning_tokens
        if record.priced and record.cost_nanos:  # as the publisher always summed: a None never reaches the sum
            g.cost_nanos += record.cost_nanos
        if status == 402 and record.error_reason == _SPEND_LIMIT:
            g.spend_limit += 1
        seconds = record.latency_ms / 1000
        g.duration_sum += seconds
        g._duration[_bucket(seconds)] += 1
        if upstream_seconds >= 0:
            g.upstream_sum += upstream_seconds
            g._upstream[_bucket(upstream_seconds)] += 1
        if record.overhead_ms:
            seconds = record.overhead_ms / 1000
            overhead.total += seconds
            overhead._counts[_bucket(seconds)] += 1
    return groups, overhead
