"""Whether a request body names media anywhere, in pure Python: the specification of `_fastpath/media_scan.pyx`.

bounds.py says why it asks and picks this module or its compiled twin once, at import.
"""
from __future__ import annotations

import re

# What a body with media parts holds somewhere. A key or type may be spelled with `\u` escapes of its letters
# (`"\u0069mage_url"`), so an escape of a letter, digit or underscore (`\u0030`-`\u0039`, `\u0041`-`\u005a`, `\u005f`,
# `\u0061`-`\u007a`) is a marker too: then the body is parsed whole. Other escapes (`\u00e9`, `\u0416`, `\u003c`) spell
# none of them, and clients that escape all non-ASCII text (Python's json.dumps) send many.
WORD_ESCAPE = rb"\\u00(?:3[0-9]|4[1-9a-fA-F]|5[0-9aAfF]|6[1-9a-fA-F]|7[0-9aA])"
_MEDIA_MARKERS = re.compile(rb"image|file|document|video|" + WORD_ESCAPE)


_WORD_ESCAPE = re.compile(WORD_ESCAPE)


def has_word_escape(data: bytes) -> bool:
    """Whether `data` holds a `\\u` escape of a letter, digit or underscore: the only escapes that can spell a JSON
    key or type the gateway looks for (request_path/ownership.py)."""
    return _WORD_ESCAPE.search(data) is not None


def has_media_markers(data: bytes) -> bool:
    """Whether `data` holds `image`, `file`, `document`, `video` or a `\\u` escape of a letter, digit or underscore
    anywhere (bytes, case-sensitive; the escape's hex digits in either case)."""
    return _MEDIA_MARKERS.search(data) is not None
