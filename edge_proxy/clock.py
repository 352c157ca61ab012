"""The gateway's one timestamp format: UTC with milliseconds, sortable as text."""
from __future__ import annotations

import time

_second: tuple[int, str] = (-1, "")  # the last whole second formatted: strftime runs once a second, not per request
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))  # every request's tail: a concatenation, not a format


def now_iso() -> str:
    """UTC time with milliseconds (truncated, never rounded up), sortable as text."""
    global _second
    sec, ms = divmod(time.time_ns() // 1_000_000, 1000)
    if sec != _second[0]:
        _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return _second[1] + _MILLIS[ms]


def iso_at(seconds: float) -> str:
    """`now_iso()`'s format for a given `time.time()`."""
    sec, frac = divmod(int(seconds * 1000), 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(sec))}.{frac:03d}Z"
