# cython: language_level=3
"""A batch of request records as the parameters of SQLite's multi-row INSERT, compiled: the twin of
edge_proxy/log_sinks/_rows_py.py (the specification; its docstring has the rules).

The same table of column kinds (read from the twin at import), the same values; the loop over a record's fields
runs in C, and each value goes straight into the one list the batch binds. Built as
edge_proxy.log_sinks._rows_c; edge_proxy/log_sinks/sql.py picks it.
"""
from libc.stdlib cimport malloc

import msgspec

from edge_proxy.log_sinks._rows_py import BOOL, KINDS, METADATA, NULL_AS_EMPTY, PLAIN

__all__ = ["sqlite_params"]

cdef object _astuple = msgspec.structs.astuple
cdef object _encode = msgspec.json.encode
cdef Py_ssize_t _N = len(KINDS)
cdef int *_kinds = <int *> malloc(_N * sizeof(int))  # lives as long as the module
cdef Py_ssize_t _k
for _k in range(_N):
    _kinds[_k] = KINDS[_k]
cdef int _PLAIN = PLAIN, _BOOL = BOOL, _NULL_AS_EMPTY = NULL_AS_EMPTY, _METADATA = METADATA
cdef object _ZERO = 0, _ONE = 1, _EMPTY = ""


def sqlite_params(records):
    """The values of `records`' rows, one after another, as sql.insert_many_sql binds them."""
    cdef list out = []
    cdef tuple row
    cdef Py_ssize_t i
    cdef int kind
    cdef object value
    for record in records:
        row = _astuple(record)
        if len(row) != _N:
            raise TypeError(f"expected a RequestRecord, got {type(record).__name__}")  # as the twin
        for i in range(_N):
            value = row[i]
            kind = _kinds[i]
            if kind == _PLAIN:
                out.append(value)
            elif kind == _BOOL:
                out.append(_ONE if value else _ZERO)
            elif value is None:
                out.append(_EMPTY if kind == _NULL_AS_EMPTY else _ZERO)
            elif kind == _METADATA:
                out.append(_encode(value).decode())
            else:
                out.append(value)
    return out
