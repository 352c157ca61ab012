"""The request-log table and its queries, shared by the SQLite and PostgreSQL sinks.

Writes are `INSERT ... ON CONFLICT (merchant_id, request_id) DO NOTHING`, so a replayed batch never duplicates a record.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any
from dataclasses import dataclass, field

import msgspec

from ..metering.record import RequestRecord
from ._rows_py import KINDS, NULL_MARKS
from ._rows_py import sqlite_params as sqlite_params  # re-exported: the build picked below

# A batch's row values are built compiled (_fastpath/log_rows.pyx) unless EDGE_PROXY_PURE_PYTHON forces the twin,
# _rows_py.sqlite_params (the specification); as metering/pricing.py chooses its cost rule.
ROWS_IMPLEMENTATION = "py"
if os.environ.get("EDGE_PROXY_PURE_PYTHON", "") in ("", "0"):
    try:
        from ._rows_c import sqlite_params  # the same API (.pyi)
        ROWS_IMPLEMENTATION = "c"
    except ImportError:  # not built: tests/test_fastpath_loaded.py fails loudly on a build that should have it
        pass

COLUMNS = list(RequestRecord.__struct_fields__)
# column kinds come from the record's own types, so a new field can never get the wrong column type
_KIND = {f.name: f.type for f in msgspec.structs.fields(RequestRecord)}
_BOOL_COLUMNS = {n for n, t in _KIND.items() if t is bool}
_INT_COLUMNS = {n for n, t in _KIND.items() if t is int or t == (int | None)}
_REAL_COLUMNS = {n for n, t in _KIND.items() if t is float}


def _column_type(name: str, integer: str, real: str) -> str:
    if name in _INT_COLUMNS or name in _BOOL_COLUMNS:
        return integer
    return real if name in _REAL_COLUMNS else "TEXT"


def create_table(integer: str = "BIGINT", real: str = "DOUBLE PRECISION") -> str:
    cols = [f"{name} TEXT NOT NULL" if name in ("request_id", "merchant_id") else
            f"{name} {_column_type(name, integer, real)}" for name in COLUMNS]
    # Ids the gateway makes are unique everywhere; ids a merchant reports (POST /v1/requests) only within it.
    cols.append("PRIMARY KEY (merchant_id, request_id)")
    return (f"CREATE TABLE IF NOT EXISTS requests ({', '.join(cols)});\n"
            "CREATE INDEX IF NOT EXISTS requests_by_merchant ON requests (merchant_id, created_at, request_id);\n"
            # the request list filtered by customer (the Lava SDK's filter, and the dashboard's): without it a
            # customer with few requests is found by reading every row of the merchant
            "CREATE INDEX IF NOT EXISTS requests_by_customer ON requests "
            "(merchant_id, customer_id, created_at, request_id);")


def existing_columns_sql(dialect: str) -> str:
    """The statement listing the requests table's columns: their names are the first value of each row."""
    if dialect == "sqlite":
        return "SELECT name FROM pragma_table_info('requests')"
    return ("SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'requests' AND table_schema = current_schema()")


def add_column_sql(name: str, dialect: str) -> str:
    # PostgreSQL's IF NOT EXISTS makes two workers opening at once harmless; SQLite has no such clause, and the
    # sink treats its "duplicate column" error as the other worker having won.
    guard = "" if dialect == "sqlite" else "IF NOT EXISTS "
    return f"ALTER TABLE requests ADD COLUMN {guard}{name} {_column_type(name, 'BIGINT', 'DOUBLE PRECISION')}"


# A NULL in a row (`sqlite_params`): a nullable column's None is bound as a marker of the type that column never
# holds, and NULLIF turns it back into NULL: the integer 0 for a text column (no text equals an integer in SQLite),
# '' for a numeric one (_rows_py says why).
_NULL_MARKS = {name: NULL_MARKS[kind] for name, kind in zip(COLUMNS, KINDS) if kind in NULL_MARKS}


def _value(name: str, mark: str) -> str:
    if name not in _NULL_MARKS:
        return mark
    return f"nullif({mark}, {_sql_literal(_NULL_MARKS[name])})"


def insert_sql(placeholder: Callable[[int], str]) -> str:
    """The INSERT of one row as `to_row` makes it (SQLite)."""
    marks = ", ".join(_value(name, placeholder(i + 1)) for i, name in enumerate(COLUMNS))
    return (f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({marks}) "
            "ON CONFLICT (merchant_id, request_id) DO NOTHING")


def insert_many_sql(n: int, returning: bool = True,
                    _cache: dict[tuple[int, bool], str] = {}) -> str:  # noqa: B006 - memo of statement text
    """One INSERT of n rows as `sqlite_params` makes them (SQLite); with `returning`, it returns the (request id,
    merchant id) of each row it added."""
    text = _cache.get((n, returning))
    if text is None:
        row = "(" + ", ".join(_value(name, "?") for name in COLUMNS) + ")"
        text = _cache[(n, returning)] = (
            f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES {', '.join([row] * n)} "
            "ON CONFLICT (merchant_id, request_id) DO NOTHING" + (" RETURNING request_id, merchant_id" if returning
                                                                   else ""))
    return text


def _json_type(name: str) -> str:
    if name in _BOOL_COLUMNS:
        return "boolean"
    if name == "metadata":
        return "json"
    return _column_type(name, "bigint", "double precision")


# PostgreSQL: the same insert with the whole batch as one JSON text (msgspec encodes it at C speed; the server
# parses it). Binding one parameter per value instead cost asyncpg about 10 us a row on the event loop, a 5 ms
# stall for a 500-row batch, and the 100-row VALUES text (26 kB) was too long for asyncpg's statement cache.
def _sql_literal(value: object) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


# The record's JSON omits fields equal to their default (omit_defaults), which json_to_recordset reads as NULL:
# each such column gets its default back, so the row holds 0, 'completed', 'managed' as SQLite's rows do (and
# SQL that filters or sums them, such as the usage and status queries, sees the values).
_DEFAULTS = {f.name: _sql_literal(f.default) for f in msgspec.structs.fields(RequestRecord)
             if f.default is not msgspec.NODEFAULT and f.default is not None}


def _json_column(n: str) -> str:
    expr = f"r.{n}::int" if n in _BOOL_COLUMNS else f"r.{n}::text" if n == "metadata" else f"r.{n}"
    return f"coalesce({expr}, {_DEFAULTS[n]})" if n in _DEFAULTS else expr


INSERT_JSON_QUIET_SQL = (  # the count of rows added is all it answers (the status line)
    f"INSERT INTO requests ({', '.join(COLUMNS)}) SELECT "
    + ", ".join(_json_column(n) for n in COLUMNS)
    + " FROM json_to_recordset(?::json) AS r(" + ", ".join(f"{n} {_json_type(n)}" for n in COLUMNS) + ") "
    "ON CONFLICT (merchant_id, request_id) DO NOTHING")
INSERT_JSON_SQL = INSERT_JSON_QUIET_SQL + " RETURNING request_id, merchant_id"


def to_row(record: RequestRecord) -> list[Any]:
    """A record as the table's row for SQLite (`insert_sql`): `sqlite_params` of one record."""
    return sqlite_params((record,))


def from_row(row: Sequence[Any]) -> RequestRecord:
    values = dict(zip(COLUMNS, row))
    if values["metadata"]:
        values["metadata"] = msgspec.json.decode(values["metadata"])
    for name in _BOOL_COLUMNS:
        values[name] = bool(values[name])
    return RequestRecord(**{k: v for k, v in values.items() if v is not None})


@dataclass
class Filters:
    """What the query APIs filter on. Metadata filters are [key, value] pairs that must all match."""

    merchant_id: str
    customer_id: str | None = None
    meter_id: str | None = None
    metadata: list[tuple[str, str]] = field(default_factory=list)
    start: str | None = None  # created_at >= start
    end: str | None = None    # created_at < end
    model: str | None = None
    status: str | None = None  # Lava's request status: "completed" (completed with a status under 400) or "error"


class Where:
    """Builds a WHERE clause with the dialect's placeholders."""

    def __init__(self, placeholder: Callable[[int], str], json_text: Callable[[str, str], str]) -> None:
        self._ph = placeholder
        self._json_text = json_text
        self.args: list[object] = []
        self.terms: list[str] = []

    def add(self, template: str, *values: object) -> None:
        marks = []
        for v in values:
            self.args.append(v)
            marks.append(self._ph(len(self.args)))
        self.terms.append(template.format(*marks))

    def filters(self, f: Filters) -> Where:
        self.add("merchant_id = {}", f.merchant_id)
        if f.customer_id:
            self.add("customer_id = {}", f.customer_id)
        if f.meter_id:
            self.add("(meter_id = {} OR meter_slug = {})", f.meter_id, f.meter_id)
        if f.model:
            self.add("model = {}", f.model)
        # coalesce: PostgreSQL rows written before INSERT_JSON_SQL restored defaults hold NULL for them
        if f.status == "completed":
            self.add("(coalesce(outcome, 'completed') = 'completed' AND coalesce(status_code, 0) < 400)")
        elif f.status == "error":
            self.add("(coalesce(outcome, 'completed') <> 'completed' OR coalesce(status_code, 0) >= 400)")
        if f.start:
            self.add("created_at >= {}", f.start)
        if f.end:
            self.add("created_at < {}", f.end)
        for key, value in f.metadata:
            self.args.append(key)
            key_mark = self._ph(len(self.args))
            self.args.append(value)
            self.terms.append(f"{self._json_text('metadata', key_mark)} = {self._ph(len(self.args))}")
        return self

    @property
    def sql(self) -> str:
        return " AND ".join(self.terms) or "TRUE"


def list_sql(where: Where, cursor: tuple[str, ...] | None, limit: int) -> tuple[str, list[object]]:
    if cursor:  # a row comparison, so the index range starts at the cursor instead of filtering every row above it
        where.add("(created_at, request_id) < ({}, {})", cursor[0], cursor[1])
    where.args.append(limit)
    return (f"SELECT {', '.join(COLUMNS)} FROM requests WHERE {where.sql} "
            f"ORDER BY created_at DESC, request_id DESC LIMIT {where._ph(len(where.args))}", where.args)


# coalesce inside the sum too: a NULL count (see _DEFAULTS) must not hide the other one
TOKENS_SUM = "coalesce(sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)), 0)"
_USAGE_SUMS = f"count(*), {TOKENS_SUM}, coalesce(sum(cost_nanos), 0), coalesce(sum(charge_nanos), 0)"
USAGE_GROUPS = {"model": "model", "provider": "provider", "customer": "customer_id"}


def usage_sql(where: Where) -> tuple[str, list[object]]:
    query = (f"SELECT substr(created_at, 1, 10) AS day, {_USAGE_SUMS} "
             f"FROM requests WHERE {where.sql} GROUP BY day ORDER BY day")
    return query, where.args


def usage_by_sql(where: Where, group: str) -> tuple[str, list[object]]:
    """Per day and per value of one column (a key of USAGE_GROUPS): day, value, requests, tokens, cost, charge."""
    column = USAGE_GROUPS[group]
    query = (f"SELECT substr(created_at, 1, 10) AS day, {column}, {_USAGE_SUMS} "
             f"FROM requests WHERE {where.sql} GROUP BY day, {column} ORDER BY day, {column}")
    return query, where.args
