"""Mirroring committed transfers to Redis (BillingEngine.flush_redis -> RedisHolds.apply), against a real
redis-server: one pipeline per 500 debits, each request debited once however often a batch is retried, and
debits kept for the next flush while Redis is down."""
from __future__ import annotations

import asyncio
import tempfile

import redis.asyncio

from edge_proxy.billing.engine import BillingEngine
from edge_proxy.billing.holds import RedisHolds
from edge_proxy.billing.payer import Payer
from edge_proxy.store import open_store

from .redis_server import RedisServer

ALICE, BOB, CAROL = Payer("customer", "cus_alice"), Payer("customer", "cus_bob"), Payer("merchant", "mer_carol")


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

    try:
        asyncio.run(main())
    finally:
        server.stop()
