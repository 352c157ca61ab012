"""A batch of request records as the parameters of SQLite's multi-row INSERT, in pure Python: the specification of
`_fastpath/log_rows.pyx`.

sql.py picks this module or its compiled twin once, at import. The values go in column order (`COLUMNS`, the
record's fields), one record after another, each bound as its column's `KINDS` entry says:
- PLAIN: as it is (a str, int or float);
- BOOL: 0 or 1 (Python's sqlite3 adapts a bool as slowly as None);
- NULL_AS_ZERO, NULL_AS_EMPTY: a nullable column's None becomes a marker of the type that column never holds,
  the integer 0 for a text column and '' for a numeric one, which the INSERT's NULLIF turns back into NULL
  (sqlite3 binds None only after looking for an adapter, which fails through an AttributeError: several times
  the cost of binding a number);
- METADATA: the dict as JSON text ({} too: a dict cannot be bound), None as the text marker 0.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args

import msgspec

from ..metering.record import RequestRecord

COLUMNS = tuple(RequestRecord.__struct_fields__)
PLAIN, BOOL, NULL_AS_ZERO, NULL_AS_EMPTY, METADATA = range(5)


def _kind(field: msgspec.structs.FieldInfo) -> int:
    if field.name == "metadata":
        return METADATA
    if field.type is bool:
        return BOOL
    args = get_args(field.type)
    if type(None) not in args:
        return PLAIN
    return NULL_AS_EMPTY if int in args or float in args else NULL_AS_ZERO


KINDS = tuple(_kind(f) for f in msgspec.structs.fields(RequestRecord))
NULL_MARKS = {NULL_AS_ZERO: 0, NULL_AS_EMPTY: "", METADATA: 0}  # kind -> what a None is bound as

_METADATA_AT = KINDS.index(METADATA)
_BOOLS_AT = [i for i, kind in enumerate(KINDS) if kind == BOOL]
_NULL_MARKS_AT = [(i, NULL_MARKS[kind]) for i, kind in enumerate(KINDS) if kind in NULL_MARKS]
_astuple = msgspec.structs.astuple
_encode = msgspec.json.encode


def sqlite_params(records: Iterable[RequestRecord]) -> list[Any]:
    """The values of `records`' rows, one after another, as sql.insert_many_sql binds them."""
    out: list[Any] = []
    for record in records:
        row = list(_astuple(record))
        if len(row) != len(COLUMNS):
            raise TypeError(f"expected a RequestRecord, got {type(record).__name__}")
        if row[_METADATA_AT] is not None:
            row[_METADATA_AT] = _encode(row[_METADATA_AT]).decode()
        for i in _BOOLS_AT:
            row[i] = int(row[i])
        for i, mark in _NULL_MARKS_AT:
            if row[i] is None:
                row[i] = mark
        out += row
    return out
