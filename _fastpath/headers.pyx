# cython: language_level=3
"""Header filtering on the way up and down, compiled: the twin of edge_proxy/_headers_py.py (the specification).

The same rules, read from the same tables (edge_proxy/header_rules.py); the loops run in C and the names and values
stay Python strings (a name or value that is not a str is a TypeError here). Response headers are typed `bytes` pairs: that is what the upstream client hands over.
"""
from edge_proxy.header_rules import DROP_DOWN, DROP_DOWN_MANAGED, DROP_UP, DROP_UP_MANAGED
from edge_proxy.upstream import HeaderBlock

__all__ = ["request_headers", "response_headers"]

cdef frozenset _DROP_UP = DROP_UP
cdef frozenset _DROP_UP_MANAGED = DROP_UP_MANAGED
cdef frozenset _DROP_DOWN = DROP_DOWN
cdef frozenset _DROP_DOWN_MANAGED = DROP_DOWN_MANAGED


cdef set _connection_tokens(str value):
    return {t.strip().lower() for t in value.split(",")}


def request_headers(items, bytes key_header, key, *, bint managed=False):
    # The twin formats one string per line; here the pieces go into one list and are joined once, which
    # allocates no string per line. A Connection header (rare) names more headers to drop, and may come after
    # them: then the block is built again without them, in _without.
    cdef list parts = ["accept-encoding: identity\r\n"]
    cdef frozenset drop = _DROP_UP_MANAGED if managed else _DROP_UP
    cdef set extra = None
    cdef Py_ssize_t lines = 1
    for name, value in items:
        if name in drop:
            if name == "connection":
                extra = _connection_tokens(value)
            continue
        parts.append(name)
        parts.append(": ")
        parts.append(value)
        parts.append("\r\n")
        lines += 1
    if extra:
        parts, lines = _without(items, drop, extra)
    if key:
        parts.append(key_header.decode())
        parts.append(": ")
        parts.append(("Bearer " + key) if key_header == b"authorization" else key)
        parts.append("\r\n")
        lines += 1
    # HeaderBlock(data, lines) would run its Python-level __new__ per request; bytes' own constructor is C
    block = bytes.__new__(HeaderBlock, "".join(parts).encode("utf-8"))
    block.lines = lines
    return block


cdef tuple _without(items, frozenset drop, set extra):
    cdef list parts = [] if "accept-encoding" in extra else ["accept-encoding: identity\r\n"]  # as the twin
    cdef Py_ssize_t lines = len(parts)
    for name, value in items:
        if name in drop or name in extra:
            continue
        parts += (name, ": ", value, "\r\n")
        lines += 1
    return parts, lines


def response_headers(raw, *, bint managed=False):
    cdef list out = []
    cdef frozenset drop = _DROP_DOWN_MANAGED if managed else _DROP_DOWN
    cdef set extra = None
    cdef bytes name_b, value_b
    cdef str name
    for name_b, value_b in raw:
        name = name_b.decode("latin-1")
        if name in drop:
            if name == "connection":
                extra = _connection_tokens(value_b.decode("latin-1"))
            continue
        out.append((name, value_b.decode("latin-1")))
    if extra:
        out = [h for h in out if h[0] not in extra]
    return out
