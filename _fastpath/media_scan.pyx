# cython: language_level=3
"""Whether a request body names media anywhere, compiled: the twin of edge_proxy/billing/_media_scan_py.py (the
specification, one regular expression).

One pass over the bytes: a table says which bytes can start a marker, and only there are the marker's bytes
compared (for a backslash: `u00` and a hex pair that is a letter, digit or underscore). The regular expression's engine tries its alternatives at every position, which costs about five
times as much on a body of a few kilobytes (bench/bench_media_scan.py).
"""
from libc.string cimport memchr, memcmp, memset

__all__ = ["has_media_markers", "has_word_escape"]

# the byte each marker starts with -> 1; every other byte -> 0
cdef unsigned char _STARTS[256]
cdef unsigned char _first
memset(_STARTS, 0, 256)
for _first in b"ifdv\\":
    _STARTS[_first] = 1


def has_media_markers(bytes data not None):
    cdef const unsigned char* p = data
    cdef Py_ssize_t n = len(data)
    cdef Py_ssize_t i
    cdef Py_ssize_t left
    cdef unsigned char c
    for i in range(n):
        c = p[i]
        if not _STARTS[c]:
            continue
        left = n - i
        if c == b"i":
            if left >= 5 and memcmp(p + i, b"image", 5) == 0:
                return True
        elif c == b"f":
            if left >= 4 and memcmp(p + i, b"file", 4) == 0:
                return True
        elif c == b"d":
            if left >= 8 and memcmp(p + i, b"document", 8) == 0:
                return True
        elif c == b"v":
            if left >= 5 and memcmp(p + i, b"video", 5) == 0:
                return True
        elif left >= 6 and p[i + 1] == b"u" and p[i + 2] == b"0" and p[i + 3] == b"0" \
                and _spells_word(p[i + 4], p[i + 5]):
            return True  # a backslash: `\u00XX` escaping a letter, digit or underscore may spell the others
    return False


cdef extern from "string.h":
    # glibc's (Python.h defines _GNU_SOURCE): a short needle is found far faster than byte by byte
    const void* memmem(const void* haystack, size_t haystack_len, const void* needle, size_t needle_len) nogil


def has_word_escape(bytes data not None):
    """Whether `data` holds `\\u00XX` with XX a letter, digit or underscore. Each `\\u00` is found by memmem and
    only its two hex digits are read: text escaped past Latin-1 (`\\u0416`) has none, and Latin-1's (`\\u00e9`)
    costs two reads each."""
    cdef const unsigned char* p = data
    cdef const unsigned char* end = p + len(data)
    cdef const unsigned char* at = p
    while end - at >= 6:
        at = <const unsigned char*>memmem(at, end - at, b"\\u00", 4)
        if at == NULL or end - at < 6:
            return False
        if _spells_word(at[4], at[5]):
            return True
        at += 1
    return False


cdef inline int _hex(unsigned char c):
    """A hex digit's value, or -1."""
    if 48 <= c <= 57:  # 0-9
        return c - 48
    if 97 <= c <= 102:  # a-f
        return c - 87
    if 65 <= c <= 70:  # A-F
        return c - 55
    return -1


cdef inline bint _spells_word(unsigned char hi, unsigned char lo):
    """Whether XX, the hex pair of `\\u00XX`, is a letter, digit or underscore."""
    cdef int h = _hex(hi)
    cdef int l = _hex(lo)
    if h < 0 or l < 0:
        return False
    cdef int v = h * 16 + l
    return 48 <= v <= 57 or 65 <= v <= 90 or v == 95 or 97 <= v <= 122
