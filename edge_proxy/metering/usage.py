"""Token usage read from provider responses: the one import the rest of the gateway uses.

Picks the compiled scanner (``_usage_scan_c``, built from ``_fastpath/usage_scan.pyx``) when it
is built, else its pure-Python twin (``usage_scan_py``, the specification). Setting
``EDGE_PROXY_PURE_PYTHON`` to anything but ``""`` or ``"0"`` forces the twin. A missing build is
not an error here (the gateway still works, only slower); ``tests/test_usage_scan.py`` fails on
it instead, so it cannot go unnoticed.

Usage: ``usage_from_body(fmt, body)`` for a whole JSON body, or ``StreamScanner(fmt)`` fed every
chunk of a stream, then ``.result()``. ``fmt`` is the catalogue's usage format: "openai",
"anthropic", "gemini" or "none".
"""
from __future__ import annotations

import os

from .usage_scan_py import StreamScanner, usage_from_body
from .usage_types import FORMATS, Usage

__all__ = ["COMPILED", "FORMATS", "PURE_PYTHON", "StreamScanner", "Usage", "usage_from_body"]

PURE_PYTHON = os.environ.get("EDGE_PROXY_PURE_PYTHON", "") not in ("", "0")
COMPILED = False

if not PURE_PYTHON:
    try:
        from ._usage_scan_c import StreamScanner, usage_from_body  # type: ignore[assignment]  # same API (.pyi)

        COMPILED = True
    except ImportError:
        pass
