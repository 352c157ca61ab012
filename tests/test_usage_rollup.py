"""The daily usage rollup always equals a GROUP BY of the request log: batches, replays, None keys, rebuilds, on
SQLite and PostgreSQL; and queries it cannot answer go to the log."""
from __future__ import annotations

import asyncio
import random

import pytest

from edge_proxy.log_sinks import SQLLogSink, sql, usage_rollup
from edge_proxy.log_sinks.sql import Filters
from edge_proxy.metering.record import RequestRecord
from edge_proxy.store.db import open_database

from . import pg

MODELS = ["gpt-4o-mini", "gpt-4o", "claude-haiku-4-5", None]
CUSTOMERS = ["cus_a", "cus_b", None]


def records(rng: random.Random, n: int, merchant: str = "mer_1") -> list[RequestRecord]:
    out = []
    for i in range(n):
        day = 1 + rng.randrange(5)
        model = rng.choice(MODELS)
        out.append(RequestRecord(
            request_id=f"req_{rng.getrandbits(48):012x}_{i}", created_at=f"2026-03-0{day}T0{rng.randrange(10)}:00:00.000Z",
            merchant_id=merchant, customer_id=rng.choice(CUSTOMERS), model=model,
            provider=None if model is None else model.split("-")[0], input_tokens=rng.randrange(1000),
            output_tokens=rng.randrange(500), cost_nanos=rng.choice([None, rng.randrange(10**6)]),
            charge_nanos=rng.randrange(10**6), status_code=200))
    return out


@pytest.fixture(params=["sqlite", "postgres"])
def sink(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'log.db'}"
    else:
        url = asyncio.run(pg.create_database())
    yield url
    if request.param == "postgres":
        asyncio.run(pg.drop_database(url))


async def _log_and_rollup(s: SQLLogSink, filters: Filters, group: str | None) -> tuple[list, list]:
    """The same usage question answered from the log and from the rollup."""
    where = s._where().filters(filters)
    raw = sql.usage_sql(where) if group is None else sql.usage_by_sql(where, group)
    rolled = usage_rollup.query(filters, group)
    assert rolled is not None
    norm = (lambda r: (r[0], *map(int, r[1:]))) if group is None else (
        lambda r: (r[0], r[1] or None, *map(int, r[2:])))
    key = (lambda r: (r[0], r[1] or "")) if group else (lambda r: r[0])
    return (sorted((norm(r) for r in await s.db.fetchall(raw[0], *raw[1])), key=key),
            sorted((norm(r) for r in await s.db.fetchall(rolled[0], *rolled[1])), key=key))


QUESTIONS = [
    pytest.param(Filters("mer_1"), None, id="all days"),
    pytest.param(Filters("mer_1", start="2026-03-02", end="2026-03-04"), None, id="a range of days"),
    pytest.param(Filters("mer_1"), "model", id="by model"),
    pytest.param(Filters("mer_1"), "provider", id="by provider"),
    pytest.param(Filters("mer_1", start="2026-03-01", end="2026-03-06"), "customer", id="by customer in a range"),
    pytest.param(Filters("mer_1", customer_id="cus_a"), "model", id="one customer by model"),
    pytest.param(Filters("mer_2"), None, id="another merchant sees only its own"),
]


@pytest.mark.parametrize("filters, group", QUESTIONS)
def test_the_rollup_equals_the_log_after_batches_and_replays(sink, filters, group):
    async def run():
        s = SQLLogSink(open_database(sink))
        await s.open()
        try:
            rng = random.Random(7)
            first = records(rng, 300) + records(rng, 40, "mer_2")
            await s.write(first[:200])
            await s.write(first[150:] + first[:10])   # a replay overlapping two batches: counted once
            await s.write(first[100:120])
            raw, rolled = await _log_and_rollup(s, filters, group)
            assert raw == rolled and raw  # and not trivially empty
            await usage_rollup.rebuild(s.db)         # a rebuild gives the same table
            assert (await _log_and_rollup(s, filters, group))[1] == rolled
        finally:
            await s.close()
    asyncio.run(run())


def test_a_log_from_before_the_rollup_is_counted_at_the_first_start(tmp_path):
    async def run():
        url = f"sqlite:///{tmp_path / 'log.db'}"
        db = open_database(url)
        await db.open()
        await db.executescript(sql.create_table())  # a log written by a gateway without the rollup
        rows = records(random.Random(3), 50)
        await db.executemany(sql.insert_sql(lambda i: "?"), [sql.to_row(r) for r in rows])
        await db.close()
        s = SQLLogSink(open_database(url))
        await s.open()
        try:
            raw, rolled = await _log_and_rollup(s, Filters("mer_1"), "customer")
            assert raw == rolled and sum(r[2] for r in rolled) == 50
            await s.close()
            await s.open()                          # later starts do not count them again
            assert (await _log_and_rollup(s, Filters("mer_1"), "customer"))[1] == rolled
        finally:
            await s.close()
    asyncio.run(run())


@pytest.mark.parametrize("filters", [
    pytest.param(Filters("m", meter_id="mtr_1"), id="a meter filter"),
    pytest.param(Filters("m", metadata=[("team", "blue")]), id="a metadata filter"),
    pytest.param(Filters("m", model="gpt-4o"), id="a model filter"),
    pytest.param(Filters("m", status="error"), id="a status filter"),
    pytest.param(Filters("m", start="2026-03-01T12:00:00Z"), id="a range that starts mid-day"),
])
def test_questions_the_rollup_cannot_answer_go_to_the_log(filters):
    assert usage_rollup.query(filters, None) is None and usage_rollup.query(filters, "model") is None


def test_fields_at_their_defaults_are_stored_as_values_and_filter_and_sum_as_such(sink):
    """PostgreSQL takes a batch as JSON that omits default fields: the row must still hold them (not NULL)."""
    async def run():
        s = SQLLogSink(open_database(sink))
        await s.open()
        try:
            done = RequestRecord(request_id="r-ok", created_at="2026-03-01T00:00:00.000Z", merchant_id="m",
                                 status_code=200, output_tokens=7)  # outcome, input tokens, stream: defaults
            failed = RequestRecord(request_id="r-bad", created_at="2026-03-01T00:00:01.000Z", merchant_id="m",
                                   status_code=502, outcome="error", input_tokens=3)
            await s.write([done, failed])
            row = await s.db.fetchone("SELECT outcome, input_tokens, stream, provider_key_type FROM requests "
                                      "WHERE request_id = ?", "r-ok")
            assert tuple(row) == ("completed", 0, 0, "managed")
            assert [r.request_id for r in await s.list(Filters("m", status="completed"), None, 10)] == ["r-ok"]
            assert [r.request_id for r in await s.list(Filters("m", status="error"), None, 10)] == ["r-bad"]
            raw, rolled = await _log_and_rollup(s, Filters("m"), None)
            assert raw == rolled == [("2026-03-01", 2, 10, 0, 0)]
        finally:
            await s.close()
    asyncio.run(run())
