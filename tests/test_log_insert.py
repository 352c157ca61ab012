"""The request log's insert (log_sinks.SQLLogSink.insert_new) is what decides which records get charged: only
the rows it adds now. Checked on both databases, across the statement sizes the sink uses."""
from __future__ import annotations

import asyncio

import pytest

from edge_proxy.log_sinks import open_log_sink
from edge_proxy.metering.record import RequestRecord, now_iso

from . import pg


def record(i: int, merchant: str = "mer_a", **fields) -> RequestRecord:
    return RequestRecord(request_id=f"req_ins_{i:06d}", created_at=now_iso(), merchant_id=merchant,
                         provider="openai", model="gpt-4o-mini", input_tokens=10, output_tokens=5, **fields)


async def _scenario(url: str) -> None:
    sink = open_log_sink(url)
    await sink.open()
    try:
        first = [record(i) for i in range(130)]  # more than one statement on SQLite (50 rows each)
        async with sink.db.transaction() as tx:
            added = await sink.insert_new(tx, first)
        assert added == first

        again = [record(i) for i in range(120, 140)]  # 10 already logged, 10 new
        again.append(record(135))                      # the same request twice in one batch
        again.append(record(135, merchant="mer_b"))    # another merchant may use the same id
        async with sink.db.transaction() as tx:
            added = await sink.insert_new(tx, again)
        assert [(r.merchant_id, r.request_id) for r in added] == (
            [("mer_a", f"req_ins_{i:06d}") for i in range(130, 140)] + [("mer_b", "req_ins_000135")])
        assert added[5] is again[15]  # the first of the two records for req_ins_000135 is the one kept

        full = record(900, customer_id="cus_1", stream=True, priced=True, latency_ms=12.25, cost_nanos=2**40,
                      metadata={"team": "a \"quoted\" \u00e9 value", "run": "7"}, error_reason="line\nbreak")
        async with sink.db.transaction() as tx:
            assert await sink.insert_new(tx, [full]) == [full]
        assert await sink.get("mer_a", "req_ins_000900") == full  # every kind of field comes back as it went in

        # values that look like the markers SQLite's rows bind for NULL (sql.to_row) stay what they are
        edge = record(901, customer_id="", endpoint="0", cost_nanos=0, input_cost_nanos=0, metadata={},
                      response_id="0", region="")
        async with sink.db.transaction() as tx:
            assert await sink.insert_new(tx, [edge]) == [edge]
        assert await sink.get("mer_a", "req_ins_000901") == edge

        nulls = await sink.get("mer_a", "req_ins_000001")  # None fields come back as None, not as text
        assert nulls.customer_id is None and nulls.cost_nanos is None and nulls.metadata is None
        assert nulls.input_tokens == 10 and nulls.stream is False
    finally:
        await sink.close()


NEW_FIELDS = ("cache_write_1h_tokens", "input_audio_tokens", "cached_audio_tokens", "output_audio_tokens")


async def _old_table_gains_new_columns(url: str) -> None:
    """A requests table made before the audio and 1-hour cache fields existed gains them when the sink opens."""
    from edge_proxy.log_sinks import sql
    from edge_proxy.store.db import open_database

    db = open_database(url)
    await db.open()
    old_create = sql.create_table().replace(
        "".join(f", {n} BIGINT" for n in NEW_FIELDS), "")  # the table as the previous version made it
    assert all(n not in old_create for n in NEW_FIELDS)
    await db.executescript(old_create)
    await db.execute("INSERT INTO requests (request_id, merchant_id, created_at, input_tokens, provider_key_type, "
                     "stream, priced) VALUES ('req_old', 'mer_a', '2025-01-01T00:00:00.000Z', 7, 'managed', 0, 0)")
    await db.close()
    for i in range(2):  # opening twice (a second worker) finds nothing left to add
        sink = open_log_sink(url)
        await sink.open()
        try:
            old = await sink.get("mer_a", "req_old")
            assert old.input_tokens == 7 and all(getattr(old, n) == 0 for n in NEW_FIELDS)
            new = record(i, cache_write_tokens=3000, cache_write_1h_tokens=2000, input_audio_tokens=40,
                         cached_audio_tokens=8, output_audio_tokens=30)
            async with sink.db.transaction() as tx:
                await sink.insert_new(tx, [new])
            assert await sink.get("mer_a", new.request_id) == new
        finally:
            await sink.close()


SCENARIOS = [
    pytest.param(_scenario, id="insert_new adds each new row once and returns only those"),
    pytest.param(_old_table_gains_new_columns, id="an old requests table gains the new columns on open"),
]


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_on_both_databases(tmp_path, scenario, dialect):
    if dialect == "sqlite":
        asyncio.run(scenario(f"sqlite:///{tmp_path}/log.db"))
        return
    url = asyncio.run(pg.create_database())
    try:
        asyncio.run(scenario(url))
    finally:
        asyncio.run(pg.drop_database(url))
