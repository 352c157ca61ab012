"""One table of request records, run against the compiled row encoding and its pure-Python twin
(log_sinks/_rows_py.sqlite_params): the values SQLite's multi-row INSERT binds for each record.

Each row names the columns it checks and the value each must be bound as (the markers are _rows_py's: 0 for a
text column's NULL, '' for a numeric one's, NULLIF in the INSERT turns them back). A last test writes every row
of the table through SQLite with both builds and reads back the same records.
"""
from __future__ import annotations

import importlib
import os
import sqlite3

import pytest

from edge_proxy.log_sinks import _rows_py, sql
from edge_proxy.metering.record import RequestRecord

PURE_PYTHON = os.environ.get("EDGE_PROXY_PURE_PYTHON", "") not in ("", "0")


def compiled():
    """The compiled row encoding, which must be built (tests/test_fastpath_loaded.py says so when it is not)."""
    if PURE_PYTHON:
        pytest.skip("EDGE_PROXY_PURE_PYTHON is set: only the pure-Python twin is under test")
    return importlib.import_module("edge_proxy.log_sinks._rows_c")


@pytest.fixture(params=["py", "c"])
def build(request):
    """The module whose sqlite_params is under test: the twin, or the compiled module."""
    return _rows_py if request.param == "py" else compiled()


def rec(**fields) -> RequestRecord:
    return RequestRecord(request_id=fields.pop("request_id", "req_1"), created_at="2026-12-03T18:00:00.000000Z",
                         merchant_id="mer_a", **fields)


ROWS = [  # id, record, {column: the value bound for it}
    ("a bare record binds its defaults and NULL markers", rec(),
     {"request_id": "req_1", "customer_id": 0, "cost_nanos": "", "stream": 0, "status_code": 0,
      "outcome": "completed", "latency_ms": 0.0, "metadata": 0, "charge_rate": 0, "free": 0}),
    ("booleans bind as 1, not as True", rec(stream=True, priced=True, free=True),
     {"stream": 1, "priced": 1, "free": 1}),
    ("a nullable number that is set binds as itself, 0 too", rec(cost_nanos=0, input_cost_nanos=2**62),
     {"cost_nanos": 0, "input_cost_nanos": 2**62, "output_cost_nanos": ""}),
    ("text that looks like a marker binds as that text", rec(customer_id="", endpoint="0", response_id="0"),
     {"customer_id": "", "endpoint": "0", "response_id": "0"}),
    ("metadata binds as JSON text, an empty dict too", rec(metadata={"team": "a \"q\" é", "run": "7"}),
     {"metadata": '{"team":"a \\"q\\" é","run":"7"}'}),
    ("an empty metadata dict is not a NULL", rec(metadata={}), {"metadata": "{}"}),
    ("floats and big integers pass as they are", rec(latency_ms=12.25, overhead_ms=0.5, input_tokens=10**15),
     {"latency_ms": 12.25, "overhead_ms": 0.5, "input_tokens": 10**15}),
    ("every text field set", rec(customer_id="cus_1", meter_slug="m", meter_id="met_1", provider="openai",
                                 model="gpt-4o", error_reason="line\nbreak", charge_rate="percentage|x|0|10",
                                 hold_id="h", spend_key_id="sk", merchant_hold_id="mh", region="eu"),
     {"customer_id": "cus_1", "error_reason": "line\nbreak", "region": "eu", "merchant_hold_id": "mh"}),
]


@pytest.mark.parametrize("record,expected", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_a_records_values(build, record, expected):
    values = build.sqlite_params([record])
    assert len(values) == len(sql.COLUMNS)
    assert {name: values[sql.COLUMNS.index(name)] for name in expected} == expected
    assert [type(v) for v in values] == [type(v) for v in _rows_py.sqlite_params([record])]


def test_a_batch_is_its_records_one_after_another(build):
    records = [r[1] for r in ROWS]
    values = build.sqlite_params(records)
    assert values == [v for r in records for v in _rows_py.sqlite_params([r])]
    assert build.sqlite_params(iter(records)) == values  # any iterable
    assert build.sqlite_params([]) == []


def test_something_else_than_a_record_is_refused(build):
    with pytest.raises(TypeError):
        build.sqlite_params([object()])


def test_both_builds_write_rows_that_read_back_as_the_records(build, tmp_path):
    records = [r[1] for r in ROWS]
    for i, r in enumerate(records):
        r.request_id = f"req_{i}"
    conn = sqlite3.connect(tmp_path / "rows.db")
    conn.executescript(sql.create_table())
    conn.execute(sql.insert_many_sql(len(records), returning=False), build.sqlite_params(records))
    rows = conn.execute(f"SELECT {', '.join(sql.COLUMNS)} FROM requests ORDER BY request_id").fetchall()
    assert [sql.from_row(row) for row in rows] == sorted(records, key=lambda r: r.request_id)
