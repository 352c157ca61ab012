"""The record's `created_at`: UTC, milliseconds truncated (never rounded up into the next second), sortable."""
from __future__ import annotations

import re
import time

import pytest

from edge_proxy import clock

NS = [  # id, time.time_ns(), now_iso()
    ("a whole second", 1_764_770_400_000_000_000, "2025-12-03T14:00:00.000Z"),
    ("milliseconds are truncated, not rounded", 1_764_770_400_999_999_999, "2025-12-03T14:00:00.999Z"),
    ("one millisecond in", 1_764_770_401_001_000_000, "2025-12-03T14:00:01.001Z"),
    ("the last millisecond of a year", 1_767_225_599_999_000_000, "2025-12-31T23:59:59.999Z"),
    ("the first of the next", 1_767_225_600_000_000_000, "2026-01-01T00:00:00.000Z"),
    ("back in time (a clock step)", 1_764_770_400_500_000_000, "2025-12-03T14:00:00.500Z"),
]


@pytest.mark.parametrize("ns,expected", [row[1:] for row in NS], ids=[row[0] for row in NS])
def test_now_iso_at_given_instants(monkeypatch, ns, expected):
    monkeypatch.setattr(time, "time_ns", lambda: ns)
    assert clock.now_iso() == expected
    assert clock.now_iso() == expected  # the same second again: from the formatted second kept


@pytest.mark.parametrize("_", range(3))
def test_now_iso_is_now(_):
    before = time.time()
    stamp = clock.now_iso()
    after = time.time()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    assert clock.iso_at(before - 0.001) <= stamp <= clock.iso_at(after + 0.001)


def test_now_iso_across_the_kept_second(monkeypatch):
    """The second kept formatted covers its own nanoseconds only: its last one, the next second's first, and a clock
    that steps back into it each read as themselves."""
    s = 1_764_770_400_000_000_000
    for ns, expected in [(s + 999_999_999, "2025-12-03T14:00:00.999Z"), (s + 1_000_000_000, "2025-12-03T14:00:01.000Z"),
                         (s + 999_999_999, "2025-12-03T14:00:00.999Z"), (s - 1, "2025-12-03T13:59:59.999Z"),
                         (s, "2025-12-03T14:00:00.000Z"), (s + 1_999_999, "2025-12-03T14:00:00.001Z")]:
        monkeypatch.setattr(time, "time_ns", lambda ns=ns: ns)
        assert clock.now_iso() == expected, ns
