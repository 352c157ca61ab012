"""One table of batches, summed by the compiled tally (_fastpath/tally.pyx) and its pure-Python twin
(observability/_tally_py.py): each row says what the groups and the overhead histogram must hold, worked out by
hand. The publisher's own test (test_observability.py) holds the published figures to prometheus-client's."""
from __future__ import annotations

import importlib
import math
import os

import pytest

from edge_proxy.metering.record import RequestRecord
from edge_proxy.observability import _tally_py

PURE_PYTHON = os.environ.get("EDGE_PROXY_PURE_PYTHON", "") not in ("", "0")
N = len(_tally_py.BUCKETS) + 1  # bucket counts: one per bound, then +Inf


def compiled():
    """The compiled tally, which must be built (tests/test_fastpath_loaded.py says so when it is not)."""
    if PURE_PYTHON:
        pytest.skip("EDGE_PROXY_PURE_PYTHON is set: only the pure-Python twin is under test")
    return importlib.import_module("edge_proxy.observability._tally_c")


@pytest.fixture(params=["py", "c"])
def build(request):
    return _tally_py if request.param == "py" else compiled()


def rec(provider="openai", model="gpt-4o-mini", status=200, reason=None, tokens=(0, 0, 0, 0), cost=0, priced=True,
        latency_ms=1.0, overhead_ms=0.0) -> RequestRecord:
    return RequestRecord(request_id="req_1", created_at="2026-12-03T00:00:00Z", merchant_id="m", provider=provider,
                         model=model, status_code=status, error_reason=reason, input_tokens=tokens[0],
                         output_tokens=tokens[1], cached_tokens=tokens[2], reasoning_tokens=tokens[3],
                         cost_nanos=cost, priced=priced, latency_ms=latency_ms, overhead_ms=overhead_ms)


def at(i: int, n: int = 1) -> list[int]:
    """Bucket counts with `n` in bucket `i`."""
    counts = [0] * N
    counts[i] = n
    return counts


OPENAI = ("openai", "gpt-4o-mini", 200)
BATCHES = [  # id, [(record, upstream seconds)], {key: {field: want}}, overhead (counts, total)
    ("an empty batch has no groups", [], {}, ([0] * N, 0.0)),
    ("two records of one provider, model and status are one group, their tokens and costs summed",
     [(rec(tokens=(10, 20, 3, 4), cost=100), 0.01), (rec(tokens=(1, 2, 0, 1), cost=5), 0.02)],
     {OPENAI: {"requests": 2, "input_tokens": 11, "output_tokens": 22, "cached_tokens": 3, "reasoning_tokens": 5,
               "cost_nanos": 105, "spend_limit": 0}}, ([0] * N, 0.0)),
    ("another model or status is another group; no provider is 'none'",
     [(rec(), -1.0), (rec(model="gpt-4o"), -1.0), (rec(status=502), -1.0), (rec(provider=None, model=None), -1.0)],
     {OPENAI: {"requests": 1}, ("openai", "gpt-4o", 200): {"requests": 1}, ("openai", "gpt-4o-mini", 502):
      {"requests": 1}, ("none", None, 200): {"requests": 1}}, ([0] * N, 0.0)),
    ("an unpriced record's cost is not counted",
     [(rec(cost=100, priced=False), -1.0), (rec(cost=7), -1.0)], {OPENAI: {"cost_nanos": 7}}, ([0] * N, 0.0)),
    ("a priced record without a cost adds nothing (never None to the sum)",
     [(rec(cost=None), -1.0), (rec(cost=7), -1.0)], {OPENAI: {"requests": 2, "cost_nanos": 7}}, ([0] * N, 0.0)),
    ("only a 402 whose reason is the spend limit counts as a spend-limit refusal",
     [(rec(status=402, reason="spend_limit_reached"), -1.0), (rec(status=402, reason="insufficient_balance"), -1.0),
      (rec(status=403, reason="spend_limit_reached"), -1.0)],
     {("openai", "gpt-4o-mini", 402): {"requests": 2, "spend_limit": 1},
      ("openai", "gpt-4o-mini", 403): {"spend_limit": 0}}, ([0] * N, 0.0)),
    # BUCKETS: 0.00005, 0.0001, 0.0002, 0.0005, 0.001 (4), 0.002, 0.005, 0.01 (7), ..., 120.0 (15), +Inf (16)
    ("a duration on a bound is counted in that bound's bucket (le), one past it in the next",
     [(rec(latency_ms=1.0), -1.0), (rec(latency_ms=1.5), -1.0), (rec(latency_ms=10.0), -1.0)],
     {OPENAI: {"duration": [a + b + c for a, b, c in zip(at(4), at(5), at(7), strict=True)],
               "duration_sum": 0.0125}}, ([0] * N, 0.0)),
    ("a duration past the last bound is counted in +Inf",
     [(rec(latency_ms=200_000.0), -1.0)], {OPENAI: {"duration": at(16), "duration_sum": 200.0}}, ([0] * N, 0.0)),
    ("only records that reached a provider's head have an upstream time",
     [(rec(), 0.01), (rec(), -1.0), (rec(), 0.0)],
     {OPENAI: {"upstream": [a + b for a, b in zip(at(7), at(0), strict=True)], "upstream_sum": 0.01}},
     ([0] * N, 0.0)),
    ("the gateway's overhead is one histogram over every group, of the records that say it",
     [(rec(overhead_ms=0.15), -1.0), (rec(model="gpt-4o", overhead_ms=0.15), -1.0), (rec(overhead_ms=0.0), -1.0)],
     {OPENAI: {"requests": 2}}, (at(2, 2), 0.0003)),
    ("a NaN duration lands in the first bucket, as bisect puts it",
     [(rec(latency_ms=math.nan), -1.0)], {OPENAI: {"duration": at(0)}}, ([0] * N, 0.0)),
]


@pytest.mark.parametrize("finished, want, want_overhead", [row[1:] for row in BATCHES],
                         ids=[row[0] for row in BATCHES])
def test_tally(build, finished, want, want_overhead):
    groups, overhead = build.tally(finished)
    assert set(groups) >= set(want)
    if not want:
        assert groups == {}
    for key, fields in want.items():
        g = groups[key]
        for field, value in fields.items():
            got = getattr(g, field)
            assert got == pytest.approx(value) if isinstance(value, float) else got == value, (key, field)
    assert overhead.counts == want_overhead[0]
    assert overhead.total == pytest.approx(want_overhead[1])


def test_the_builds_agree_on_a_mixed_batch():
    """Every group's every figure, the same to the last bit from both builds."""
    c = compiled()
    finished = [(rec(provider=p, model=m, status=s, reason=r, tokens=(i, 2 * i, i // 3, i % 5), cost=i * 7,
                     priced=i % 4 != 0, latency_ms=0.013 * i ** 2, overhead_ms=0.01 * (i % 9)), u)
                for i, (p, m, s, r, u) in enumerate(
                    [("openai", "gpt-4o", 200, None, 0.002), ("anthropic", "claude-sonnet-4", 402,
                     "spend_limit_reached", -1.0), (None, None, 401, "invalid_token", -1.0),
                     ("google", "gemini-2.5-pro", 200, None, 1.7)] * 50)]
    fields = _tally_py.Group.__slots__
    py_groups, py_over = _tally_py.tally(finished)
    c_groups, c_over = c.tally(finished)
    assert set(py_groups) == set(c_groups) and len(py_groups) == 4
    for key, g in py_groups.items():
        assert [getattr(g, f) for f in fields] == [getattr(c_groups[key], f) for f in fields], key
    assert (py_over.counts, py_over.total) == (c_over.counts, c_over.total)
