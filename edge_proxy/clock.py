"""The gateway's one timestamp format: UTC with milliseconds, sortable as text."""
from __future__ import annotations

import time

_second = [-1, ""]  # the last whole second formatted, so strftime runs once a second, not once a request


def now_iso() -> str:
    """UTC time with milliseconds, sortable as text."""
    ms = int(time.time() * 1000)
    sec, frac = divmod(ms, 1000)
    if sec != _second[0]:
        _second[0], _second[1] = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_second[1]}.{frac:03d}Z"


def iso_at(seconds: float) -> str:
    """`now_iso()`'s format for a given `time.time()`."""
    sec, frac = divmod(int(seconds * 1000), 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(sec))}.{frac:03d}Z"
