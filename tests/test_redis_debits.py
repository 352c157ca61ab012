"""Mirroring committed transfers to Redis (BillingEngine.flush_redis -> RedisHolds.apply), against a real
redis-server: one pipeline per 500 debits, each request debited once however often a batch is retried, and
debits kept for the next flush while Redis is down."""
from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time

import redis.asyncio

from edge_proxy.billing.engine import BillingEngine
from edge_proxy.billing.holds import RedisHolds
from edge_proxy.billing.payer import Payer
from edge_proxy.store import open_store

from .redis_server import RedisServer

ALICE, BOB, CAROL = Payer("customer", "cus_alice"), Payer("customer", "cus_bob"), Payer("merchant", "mer_carol")


@contextlib.asynccontextmanager
async def mirroring(server: RedisServer):
    """A client of the real Redis, a SQLite store, their holds and a billing engine that mirrors debits through them."""
    client = redis.asyncio.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
    store = open_store(f"sqlite:///{tempfile.mkdtemp()}/d.db")
    await store.open()
    holds = RedisHolds(client, store.db)
    try:
        yield client, store, holds, BillingEngine(None, None, None, None, redis_holds=holds)
    finally:
        await client.aclose()
        await store.close()


def test_debits_land_once_each_and_wait_while_redis_is_down():
    server = RedisServer().start()

    async def main():
        client = redis.asyncio.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
        store = open_store(f"sqlite:///{tempfile.mkdtemp()}/d.db")
        await store.open()
        holds = RedisHolds(client, store.db)
        engine = BillingEngine(None, None, None, None, redis_holds=holds)
        try:
            for payer in (ALICE, BOB):
                await client.hset(payer.redis_key, mapping={"b": 10_000, "h:w1": "5000:9999999999"})
            engine.redis_pending = [(ALICE, f"req_{i}", -10, "w1", 10) for i in range(1200)]  # three pipelines
            engine.redis_pending += [(BOB, "req_b", -300, "w1", 300), (BOB, "req_b", -300, "w1", 300)]  # the same request twice
            await engine.flush_redis()
            assert engine.redis_pending == []
            assert int(await client.hget(ALICE.redis_key, "b")) == 10_000 - 12_000
            assert await client.hget(ALICE.redis_key, "h:w1") == b"0:9999999999"  # a hold never goes below 0
            assert int(await client.hget(BOB.redis_key, "b")) == 9_700
            assert await client.hget(BOB.redis_key, "h:w1") == b"4700:9999999999"

            # big sums stay exact integers (Lua's tostring would write 3e+15); each worker's hold shrinks by its own
            await client.hset(CAROL.redis_key, mapping={"b": 5 * 10**15, "h:w1": f"{3 * 10**15}:9999999999",
                                                        "h:w2": "700:9999999999"})
            engine.redis_pending = [(CAROL, "req_c1", -(10**15 + 1), "w1", 10**15 + 1), (CAROL, "req_c2", -200, "w2", 200),
                                    (CAROL, "req_c3", -(10**15 - 1), None, 0), (CAROL, "req_c4", -300, "w2", 300)]
            await engine.flush_redis()
            assert await client.hmget(CAROL.redis_key, ["b", "h:w1", "h:w2"]) == [
                str(3 * 10**15 - 500).encode(), b"1999999999999999:9999999999", b"200:9999999999"]

            # a batch retried after a lost answer debits nothing twice; a new request in it is debited
            engine.redis_pending = [(BOB, "req_b", -300, "w1", 300), (BOB, "req_b2", -100, None, 0)]
            await engine.flush_redis()
            assert int(await client.hget(BOB.redis_key, "b")) == 9_600

            server.stop()
            engine.redis_pending = [(BOB, "req_b3", -50, None, 0)]
            await engine.flush_redis()  # logs and keeps it
            assert engine.redis_pending == [(BOB, "req_b3", -50, None, 0)]
            server.start()  # empty: no balances and no scripts (the pipeline loads the script again)
            await client.hset(BOB.redis_key, "b", 9_600)  # as reloaded from SQL, the durable record
            await engine.flush_redis()
            assert engine.redis_pending == []
            assert int(await client.hget(BOB.redis_key, "b")) == 9_550
        finally:
            await client.aclose()
            await store.close()

    _run(main, server)


def test_large_debits_land_exactly():
    """Amounts past 2^53 nanos (9 million USD) up to the most one amount may be land to the nano: summed as a Lua
    double they were inexact, and 1e17 reached Redis as 1e+17, which HINCRBY refused."""
    server = RedisServer().start()

    async def main():
        client = redis.asyncio.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
        store = open_store(f"sqlite:///{tempfile.mkdtemp()}/d.db")
        await store.open()
        engine = BillingEngine(None, None, None, None, redis_holds=RedisHolds(client, store.db))
        try:
            await client.hset(CAROL.redis_key, mapping={"b": 4 * 10**18, "h:w1": "5000:9999999999"})
            engine.redis_pending = [(CAROL, "req_big1", -(10**17), None, 0),
                                    (CAROL, "req_big2", -123_456_789_012_345_678, None, 0),
                                    (CAROL, "req_big3", -(10**18), "w1", 1_000)]
            await engine.flush_redis()
            assert engine.redis_pending == []
            assert await client.hmget(CAROL.redis_key, ["b", "h:w1"]) == [
                str(4 * 10**18 - 10**17 - 123_456_789_012_345_678 - 10**18).encode(), b"4000:9999999999"]
        finally:
            await client.aclose()
            await store.close()

    _run(main, server)


def test_the_writer_process_mirrors_a_batch_and_hands_back_what_redis_did_not_take(tmp_path):
    """With Redis holds, the log writer process mirrors a committed batch's debits itself, so the worker gets none
    to send; while Redis is down the batch still commits and its debits come back in the answer, for the worker's
    after_commit to keep and retry once Redis is back. Each lands once."""
    from edge_proxy.log_sinks import open_log_sink
    from edge_proxy.log_sinks.writer_process import _Step
    from edge_proxy.metering.record import RequestRecord, now_iso, to_json_line
    from edge_proxy.settings import Settings

    server = RedisServer().start()
    url = f"sqlite:///{tmp_path}/w.db"
    usd = 10**9

    def lines(mid: str, ids: range) -> bytes:
        return b"".join(to_json_line(RequestRecord(
            request_id=f"req_m{i}", created_at=now_iso(), merchant_id=mid, provider="openai", model="gpt-4o-mini",
            status_code=200, input_tokens=10, output_tokens=5, cost_nanos=1000 + i, priced=True,
            reserved_nanos=5000, hold_id="w1")) for i in ids)

    async def main():
        store, sink = open_store(url), open_log_sink(url)
        await store.open()
        await sink.open()  # the request log's tables
        await sink.close()
        merchant, _ = await store.create_merchant("m", 100 * usd)
        mid = merchant.merchant_id
        payer = Payer("merchant", mid)
        client = redis.asyncio.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
        await client.hset(payer.redis_key, mapping={"b": 100 * usd, "h:w1": "50000:9999999999"})
        step = _Step(Settings(database_url=url, redis_url=server.url, redis_timeout=1.0))
        worker = BillingEngine(None, None, None, None, redis_holds=RedisHolds(client, store.db))
        try:
            first = await step.commit(lines(mid, range(3)))
            assert first.error is None and first.done is not None
            assert sorted(first.done.consumed) == [(f"req_m{i}", 1000 + i, 0) for i in range(3)]
            assert first.done.debits == []  # mirrored by the writer process: nothing for the worker to send
            assert await client.hmget(payer.redis_key, ["b", "h:w1"]) == [
                str(100 * usd - 3003).encode(), b"46997:9999999999"]
            # one marker for the batch's three debits of one payer out of one hold, not one per request
            assert await client.keys(f"{payer.redis_key}:settled:*") == [
                f"{payer.redis_key}:settled:{mid}:req_m0:provider_cost".encode()]

            again = await step.commit(lines(mid, range(3)))  # the worker retries a batch whose answer it lost
            assert again.done is not None and again.done.consumed == [] and again.done.debits == []
            assert int(await client.hget(payer.redis_key, "b")) == 100 * usd - 3003

            server.stop()
            down = await step.commit(lines(mid, range(3, 5)))  # SQL takes it; Redis cannot
            assert down.error is None and down.done is not None
            assert sorted(down.done.consumed) == [("req_m3", 1003, 0), ("req_m4", 1004, 0)]
            assert down.done.debits == [("merchant", mid, f"{mid}:req_m3:provider_cost", -2007, "w1", 2007)]  # summed

            server.start()  # empty, as after a restart: the balance is reloaded from SQL, the durable record
            await client.hset(payer.redis_key, mapping={"b": 100 * usd - 3003, "h:w1": "46997:9999999999"})
            await worker.after_commit(["req_m3", "req_m4"], down.done)  # the worker's side retries them
            assert worker.redis_pending == []
            await worker.after_commit(["req_m3", "req_m4"], down.done)  # and the same answer twice lands once
            assert await client.hmget(payer.redis_key, ["b", "h:w1"]) == [
                str(100 * usd - 5010).encode(), b"44990:9999999999"]
        finally:
            await step.close()
            await client.aclose()
            await store.close()

    _run(main, server)


def test_a_batchs_debits_are_summed_per_account_and_hold_under_one_marker():
    """_redis_debits: a committed batch's debits from one account out of one hold become one entry (their sum, and
    what they used of the hold), marked by the first of their transfer ids, so Redis keeps one marker per account
    and batch. A customer's charge comes out of its own hold and the merchant's share out of the merchant's."""
    from edge_proxy.billing.engine import _redis_debits
    from edge_proxy.billing.ledger import REVENUE, Transfer
    from edge_proxy.metering.record import RequestRecord

    mer = Payer("merchant", "mer_m")

    def rec(rid: str, customer: str | None, charge: int, operator: int, hold: str) -> RequestRecord:
        return RequestRecord(request_id=rid, created_at="", merchant_id="mer_m", provider="openai", model="m",
                             payer="customer" if customer else "merchant", customer_id=customer,
                             charge_nanos=charge, operator_nanos=operator, hold_id=hold, merchant_hold_id="wm")

    records = [rec("r1", "cus_alice", 500, 700, "w1"), rec("r2", "cus_alice", 300, 100, "w1"),
               rec("r3", "cus_bob", 40, 60, "w2"), rec("r4", None, 0, 900, "w1"), rec("r5", "cus_alice", 8, 0, "w2")]
    transfers = []
    for r in records:
        if r.customer_id:
            transfers.append(Transfer(f"mer_m:{r.request_id}:charge", Payer("customer", r.customer_id), mer,
                                      r.charge_nanos, "charge", "mer_m", r.request_id))
        if r.operator_nanos:
            transfers.append(Transfer(f"mer_m:{r.request_id}:provider_cost", mer, REVENUE, r.operator_nanos,
                                      "provider_cost", "mer_m", r.request_id))
    assert _redis_debits(records, transfers) == [
        ("customer", "cus_alice", "mer_m:r1:charge", -800, "w1", 800),
        ("merchant", "mer_m", "mer_m:r1:provider_cost", -860, "wm", 200 + 0 + 20),  # what the charges left
        ("customer", "cus_bob", "mer_m:r3:charge", -40, "w2", 40),
        ("merchant", "mer_m", "mer_m:r4:provider_cost", -900, "w1", 900),  # a merchant paying: its own hold
        ("customer", "cus_alice", "mer_m:r5:charge", -8, "w2", 8),
    ]


def test_a_debits_marker_lives_past_the_retry_window_and_not_for_days():
    """A marker per entry (a transfer, or a batch's summed debits) makes the mirror idempotent; at ~250 bytes each
    they must not pile up for a week (one a request kept ~15 GB at 100 a second): each lives SETTLED_MARKER_TTL,
    longer than a debit may wait to be sent."""
    from edge_proxy.billing.holds import REDIS_RETRY_WINDOW, SETTLED_MARKER_TTL
    server = RedisServer().start()

    async def main():
        async with mirroring(server) as (client, _, _, engine):
            await client.hset(ALICE.redis_key, mapping={"b": 10_000})
            engine.redis_pending = [(ALICE, "req_ttl", -10, None, 0)]
            await engine.flush_redis()
            ttl = await client.ttl(f"{ALICE.redis_key}:settled:req_ttl")
            assert REDIS_RETRY_WINDOW < SETTLED_MARKER_TTL <= 3600 and 0 < ttl <= SETTLED_MARKER_TTL

    _run(main, server)


def test_debits_that_waited_past_the_retry_window_give_way_to_a_lease_reload_from_the_database():
    """A debit pending longer than REDIS_RETRY_WINDOW may have landed once already (an answer lost) and its marker
    may be gone by now: it is not sent again. The payer's lease is reloaded from the database instead, which has
    counted the debit since its commit; a reload that cannot reach Redis is tried again at the next flush."""
    from edge_proxy.billing.holds import REDIS_RETRY_WINDOW, region_hold_id
    server = RedisServer().start()

    async def main():
        async with mirroring(server) as (client, store, holds, engine):
            merchant, _ = await store.create_merchant("m", 1_000_000)
            payer = Payer("merchant", merchant.merchant_id)
            assert await holds._lease(payer, 5_000)   # the region's lease: 5,000 in the database and in Redis
            assert await holds.hold(payer, "w1", 1_000, 30.0) == 1_000   # a worker's hold on it
            # a request of w1 used 300 and was charged 300 (settle shrinks the region's lease in the same
            # transaction); its mirror has failed since longer than the window allows
            assert await holds.sql.hold(payer, region_hold_id("default", payer), -300, 120.0) == 4_700
            engine.redis_pending = [(payer, "req_old", -300, "w1", 300)]
            engine.redis_failing_since = time.monotonic() - REDIS_RETRY_WINDOW - 1
            await engine.flush_redis()
            assert engine.redis_pending == [] and engine.redis_resync == set()
            assert engine.redis_failing_since is None
            assert await client.exists(f"{payer.redis_key}:settled:req_old") == 0   # never sent
            assert int(await client.hget(payer.redis_key, "b")) == 4_700   # the database's figure, debit counted
            # w1's hold was not shrunk (the reload cannot know whether a lost answer had), so it keeps the 300; the
            # same 300 is missing from what another worker may take: all holds together stay within 4,700
            assert await holds.hold(payer, "w1", 0, 30.0) == 1_000
            hold_script, now = holds._hold, time.time()   # the script itself: a refusal here grows no lease
            assert int(await hold_script(keys=[payer.redis_key], args=["w2", 3_700, now, 30.0])) == 3_700
            assert int(await hold_script(keys=[payer.redis_key], args=["w3", 1, now, 30.0])) == -1
            await client.hdel(payer.redis_key, "h:w1", "h:w2")

            # the same while Redis is away: the payer waits for its reload, and gets it once Redis answers
            engine.redis_pending = [(payer, "req_old2", -200, None, 0)]
            engine.redis_failing_since = time.monotonic() - REDIS_RETRY_WINDOW - 1
            assert await holds.sql.hold(payer, region_hold_id("default", payer), -200, 120.0) == 4_500
            server.stop()
            await engine.flush_redis()
            assert engine.redis_pending == [] and engine.redis_resync == {payer}
            server.start()   # empty, as after a restart
            await engine.flush_redis()
            assert engine.redis_resync == set()
            assert int(await client.hget(payer.redis_key, "b")) == 4_500

            # within the window a failed debit is kept and lands once Redis answers, as before
            engine.redis_pending = [(payer, "req_new", -100, None, 0)]
            server.stop()
            await engine.flush_redis()
            assert engine.redis_pending == [(payer, "req_new", -100, None, 0)]
            assert engine.redis_failing_since is not None
            server.start()
            await client.hset(payer.redis_key, "b", 4_500)
            await engine.flush_redis()
            assert engine.redis_pending == [] and engine.redis_failing_since is None
            assert int(await client.hget(payer.redis_key, "b")) == 4_400

    _run(main, server)


def _run(main, server: RedisServer) -> None:
    try:
        asyncio.run(main())
    finally:
        server.stop()
