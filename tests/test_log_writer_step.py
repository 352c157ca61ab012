"""The log writer process's step (log_sinks/writer_process._Step): a batch of journal lines decoded at once, billed
and written in one transaction; a record the store refuses is kept aside alone (the batch is halved down to it)
and every other record is billed once, also when the same batch comes again."""
from __future__ import annotations

import asyncio

import pytest

from edge_proxy.billing.reconcile import verify
from edge_proxy.log_sinks import open_log_sink
from edge_proxy.log_sinks.writer_process import _PIECE, WriterProcess, _pieces, _Step
from edge_proxy.metering.record import RequestRecord, now_iso, to_json_line
from edge_proxy.settings import Settings
from edge_proxy.store import open_store

from . import pg

USD = 1_000_000_000


async def _world(url: str) -> str:
    store, sink = open_store(url), open_log_sink(url)
    await store.open()
    await sink.open()
    merchant, _ = await store.create_merchant("m", 100 * USD)
    await sink.close()
    await store.close()
    return merchant.merchant_id


def line(mid: str, i: int) -> bytes:
    return to_json_line(RequestRecord(request_id=f"req_step_{i}", created_at=now_iso(), merchant_id=mid,
                                      provider="openai", model="gpt-4o-mini", status_code=200, input_tokens=10,
                                      output_tokens=5, cost_nanos=1000 + i, priced=True))


async def _scenario(url: str) -> None:
    mid = await _world(url)
    lines = [line(mid, i) for i in range(6)]
    lines.insert(4, b'{"request_id": "req_step_bad", "merchant_id": 7}\n')  # the store can never take it
    step = _Step(Settings(database_url=url))
    try:
        first = await step.commit(b"".join(lines))
        assert first.error is None and first.refused == [4]
        assert first.done is not None
        assert sorted(rid for rid, _, _ in first.done.consumed) == [f"req_step_{i}" for i in range(6)]
        assert [took for _, took, _ in sorted(first.done.consumed)] == [1000 + i for i in range(6)]

        again = await step.commit(b"".join(lines))  # the worker retries a batch whose answer it lost
        assert again.error is None and again.refused == [4]
        assert again.done is not None and again.done.consumed == []  # billed once

        rows = await step.db.fetchall("SELECT count(*), sum(operator_nanos) FROM requests")
        assert rows == [(6, sum(1000 + i for i in range(6)))]
        proof = await verify(step.db)
        assert proof["ok"], proof["problems"]

        only_bad = await step.commit(lines[4])  # nothing in the batch can be taken: an error, not a refusal
        assert only_bad.error is not None and only_bad.done is None
    finally:
        await step.close()


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_a_refused_record_is_kept_aside_and_the_rest_billed_once(tmp_path, dialect):
    if dialect == "sqlite":
        asyncio.run(_scenario(f"sqlite:///{tmp_path}/step.db"))
        return
    url = asyncio.run(pg.create_database())
    try:
        asyncio.run(_scenario(url))
    finally:
        asyncio.run(pg.drop_database(url))


async def _through_the_pipe(url: str) -> None:
    mid = await _world(url)
    lines = [line(mid, i) for i in range(3 * _PIECE // 300)]  # several pieces' worth
    pieces = list(_pieces(lines))
    assert len(pieces) >= 3 and b"".join(pieces) == b"".join(lines)
    assert all(p.endswith(b"\n") for p in pieces)  # whole lines only
    writer = WriterProcess(Settings(database_url=url))
    try:
        done, refused = await writer.commit(lines)
        assert refused == [] and len(done.consumed) == len(lines)
        again, _ = await writer.commit(lines)  # the same batch again bills nothing
        assert again.consumed == []
    finally:
        await writer.close()


def test_a_batch_goes_to_the_writer_process_in_pieces_and_is_billed_once(tmp_path):
    asyncio.run(_through_the_pipe(f"sqlite:///{tmp_path}/pipe.db"))
