"""The gateway's one timestamp format: UTC with milliseconds, sortable as text."""
from __future__ import annotations

import time

_NS = 1_000_000_000
# The current whole second, formatted: (its first ns, the next second's first ns, text). strftime runs once a
# second, not per request; a request within the second costs a subtraction and a small division.
_second: tuple[int, int, str] = (0, 0, "")
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))  # every request's tail: a concatenation, not a format


def now_iso() -> str:
    """UTC time with milliseconds (truncated, never rounded up), sortable as text."""
    global _second
    ns = time.time_ns()
    start, end, text = _second
    if not start <= ns < end:  # a new second (or a clock that went back)
        sec = ns // _NS
        start = sec * _NS
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _second = (start, start + _NS, text)
    return text + _MILLIS[(ns - start) // 1_000_000]


def iso_at(seconds: float) -> str:
    """`now_iso()`'s format for a given `time.time()`."""
    sec, frac = divmod(int(seconds * 1000), 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(sec))}.{frac:03d}Z"
