"""Whether a request body names media anywhere, in pure Python: the specification of `_fastpath/media_scan.pyx`.

bounds.py says why it asks and picks this module or its compiled twin once, at import.
"""
from __future__ import annotations

import re

# What a body with media parts holds somewhere (an escaped key, `\u`, may spell any of them: then parse whole).
_MEDIA_MARKERS = re.compile(rb"image|file|document|video|\\u")


def has_media_markers(data: bytes) -> bool:
    """Whether `data` holds `image`, `file`, `document`, `video` or `\\u` anywhere (bytes, case-sensitive)."""
    return _MEDIA_MARKERS.search(data) is not None
