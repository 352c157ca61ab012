"""The request log's insert (log_sinks.SQLLogSink.insert_new) is what decides which records get charged: only
the rows it adds now. Checked on both databases, across the statement sizes the sink uses."""
from __future__ import annotations

import asyncio


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

        nulls = await sink.get("mer_a", "req_ins_000001")  # None fields come back as None, not as text
        assert nulls.customer_id is None and nulls.cost_nanos is None and nulls.metadata is None
        assert nulls.input_tokens == 10 and nulls.stream is False
    finally:
        await sink.close()


def test_insert_new_on_sqlite(tmp_path):
    asyncio.run(_scenario(f"sqlite:///{tmp_path}/log.db"))


def test_insert_new_on_postgres():
    url = asyncio.run(pg.create_database())
    try:
        asyncio.run(_scenario(url))
    finally:
        asyncio.run(pg.drop_database(url))
