"""The gateway's Redis code, unchanged in behaviour, on each deployment it supports: a standalone redis-server, a
real 6-node Redis Cluster (3 masters, 3 replicas) and a Sentinel set (master, replica, 3 sentinels), each reached
through the client that EDGE_PROXY_REDIS_URL gives (edge_proxy/store/redis_client.py).

Holds, debits (a pipeline of script calls across payers on different nodes), credits, spend-key counters (the
admission script, the settle pipeline, the counts read back), reconcile and NOSCRIPT reloads run on all three;
a slot migration under traffic (ASK, then MOVED) runs on the cluster, and a failover under traffic on the
cluster and on Sentinel. SQL is a real SQLite file, the durable record the Redis code reloads from."""
from __future__ import annotations

import asyncio
import itertools
import time
from types import SimpleNamespace

from edge_proxy.billing import spend_counters
from edge_proxy.billing.holds import RedisHolds
from edge_proxy.billing.payer import Payer
from edge_proxy.billing.reconcile import reconcile
from edge_proxy.billing.spend_counters import (
    Admission,
    RedisCounters,
    labels_at,
    periods,
    record_spend,
)
from edge_proxy.clock import now_iso
from edge_proxy.log_sinks.sql import create_table
from edge_proxy.store import open_store
from edge_proxy.store.redis_client import open_redis

TIMEOUT = 0.5   # EDGE_PROXY_REDIS_TIMEOUT's default
FAR = 9_999_999_999


def scenario(tmp_path, url, body, payers: int = 12, balance: int = 10_000):
    """Run `body(holds, client, db, merchants)` with a SQLite store holding `payers` merchants of `balance` each
    and a client from `url`."""
    async def main():
        store = open_store(f"sqlite:///{tmp_path}/store.db")
        await store.open()
        await store.db.executescript(create_table("INTEGER", "REAL"))
        client = open_redis(url, TIMEOUT)
        try:
            merchants = [Payer("merchant", (await store.create_merchant(f"m{i}", balance))[0].merchant_id)
                         for i in range(payers)]
            return await body(RedisHolds(client, store.db), client, store.db, merchants)
        finally:
            await client.aclose()
            await store.close()
    return asyncio.run(main())


async def hot(client, payer) -> int | None:
    value = await client.hget(payer.redis_key, "b")
    return None if value is None else int(value)


def debits(entries):
    """(payer, request id, amount, hold id) debits as the transfers RedisHolds.apply mirrors."""
    return [(payer, rid, -amount, hold, amount if hold else 0) for payer, rid, amount, hold in entries]


def test_the_payers_used_here_spread_over_every_master(redis_cluster):
    """The debit pipeline below only proves something on a cluster if its payers live on different nodes."""
    owners = {redis_cluster.master_for_key(Payer("merchant", f"mer_{i}").redis_key) for i in range(12)}
    assert len(owners) == 3


def test_a_hold_grows_only_while_the_balance_less_other_holds_covers_it(redis_topology, tmp_path):
    async def body(holds, client, db, merchants):
        alice, bob = merchants[:2]
        assert await hot(client, alice) is None
        assert await holds.hold(alice, "w1", 6_000, 30) == 6_000       # the region leases it in SQL (-2), then holds
        assert await hot(client, alice) == 6_000                       # four times 6,000 was more than the balance
        assert await holds.hold(alice, "w2", 5_000, 30) is None        # 10,000 less w1's 6,000 cannot cover it
        assert await holds.hold(alice, "w2", 4_000, 30) == 4_000
        assert await holds.hold(alice, "w1", 1, 30) is None
        await holds.release(alice, "w2")
        assert await holds.hold(alice, "w1", 4_000, 30) == 10_000      # grows on top of what it had
        assert await holds.hold(bob, "w1", 0, 0.05) == 0               # a zero-length hold that expires at once
        await asyncio.sleep(0.1)
        assert await holds.hold(bob, "w2", 10_000, 30) == 10_000
        assert await holds.hold(Payer("merchant", "mer_nobody"), "w1", 1, 30) is None
        await holds.apply([(alice, "t_credit", 500, None, 0)])        # a credit is the database's: the lease can
        assert await hot(client, alice) == 10_000                      # grow into it, Redis is not told
        await holds.apply([(Payer("merchant", "mer_unloaded"), "t_credit", 500, None, 0)])
        assert await client.exists(Payer("merchant", "mer_unloaded").redis_key) == 0
    scenario(tmp_path, redis_topology.url, body)


def test_debits_across_payers_on_every_node_land_once_each_however_often_retried(redis_topology, tmp_path):
    async def body(holds, client, db, merchants):
        for payer in merchants:
            await client.hset(payer.redis_key, mapping={"b": 10_000, "h:w1": f"5000:{FAR}"})
        batch = [(payer, f"req_{i}_{n}", 10, "w1") for i, payer in enumerate(merchants) for n in range(40)]
        await holds.apply(debits(batch))  # a fresh deployment: no node has seen the script
        await holds.apply(debits(batch))  # the same batch again (a lost answer): nothing twice
        await holds.apply(debits(batch[:7] + [(merchants[0], "req_new", 100, None)]))
        assert [await hot(client, p) for p in merchants] == [10_000 - 400 - 100] + [10_000 - 400] * 11
        assert await client.hget(merchants[1].redis_key, "h:w1") == f"4600:{FAR}".encode()
        big = merchants[2]     # whole numbers stay exact (Lua's tostring would write 3e+15)
        await client.hset(big.redis_key, mapping={"b": 5 * 10**15, "h:w2": f"{3 * 10**15}:{FAR}"})
        await holds.apply(debits([(big, "req_big", 10**15 + 1, "w2")]))
        assert await client.hmget(big.redis_key, ["b", "h:w2"]) == [
            str(4 * 10**15 - 1).encode(), f"{2 * 10**15 - 1}:{FAR}".encode()]
    scenario(tmp_path, redis_topology.url, body)


def test_a_script_the_server_forgot_is_loaded_again(redis_topology, tmp_path):
    async def body(holds, client, db, merchants):
        alice = merchants[0]
        assert await holds.hold(alice, "w1", 100, 30) == 100
        redis_topology.flushall()          # every node forgets the scripts (and the data)
        assert await holds.hold(alice, "w1", 100, 30) == 100      # NOSCRIPT, reload, and the balance reloads too
        await holds.apply(debits([(alice, "req_1", 40, "w1")]))
        redis_topology.flushall()
        await client.hset(alice.redis_key, "b", 1_000)
        await holds.apply(debits([(alice, "req_2", 40, None)]))
        assert await hot(client, alice) == 960
    scenario(tmp_path, redis_topology.url, body)


def test_reconcile_rebuilds_every_redis_balance_from_the_ledger(redis_topology, tmp_path):
    async def body(holds, client, db, merchants):
        for payer in merchants:
            assert await holds.hold(payer, "w1", 2_500, 30) == 2_500   # the region leases 4 x 2,500 in SQL
            await client.hset(payer.redis_key, "b", 1)                  # then Redis misses debits and loses the rest
        assert await reconcile(db, holds) == {"payers": 14, "repaired": 12}  # and the operator's two accounts
        assert {await hot(client, p) for p in merchants} == {10_000}     # each region lease, as SQL has it
        assert await reconcile(db, holds) == {"payers": 14, "repaired": 0}
    scenario(tmp_path, redis_topology.url, body)


def test_spend_key_counters_admit_settle_and_count_in_one_slot_per_key(redis_topology, tmp_path):
    async def body(holds, client, db, merchants):
        counters = RedisCounters(client, db)
        now = time.time()
        created = now_iso()
        ids = (f"spk_{i}" for i in itertools.count())
        cycles = periods(now, "daily")
        rate_key, count_key, spend_key = next(ids), next(ids), next(ids)

        def ask(key, rid, rate=None, requests=None, spend=None):
            return counters.admit(Admission(key, rid, now, rate, requests, spend))

        assert await ask(rate_key, "r1", rate=(2, 0.001)) is None
        assert await ask(rate_key, "r2", rate=(2, 0.001)) is None
        refused = await ask(rate_key, "r3", rate=(2, 0.001))
        assert refused.kind == "rate" and refused.value > 0
        for n in range(3):
            assert await ask(count_key, f"c{n}", requests=(3, cycles)) is None
        assert await ask(count_key, "c3", requests=(3, cycles)) == ("requests", 3.0)
        label = cycles[0][0]
        assert await ask(spend_key, "s1", spend=(1_000, label, 600)) is None
        assert await ask(spend_key, "s2", spend=(1_000, label, 600)) == ("spend", 600.0)  # s1 is in flight
        # s1 is billed 300: its reservation goes, its charge counts (the settle pipeline, EVAL per key)
        record = SimpleNamespace(spend_key_id=spend_key, request_id="s1", charge_nanos=300, status_code=200,
                                 created_at=created)
        async with db.transaction() as tx:
            await record_spend(tx, [record], holds)
        for _ in range(200):
            if not spend_counters._redis_pending and not spend_counters._flushing:
                break
            await asyncio.sleep(0.02)
        assert not spend_counters._redis_pending
        assert await client.get(spend_counters.redis_key(spend_key, "spend:" + labels_at(created)[0])) == b"300"
        assert await ask(spend_key, "s2", spend=(1_000, label, 600)) is None      # 300 + 600 fits
        key = SimpleNamespace(spend_key_id=count_key, spend_limit=None, total_spend_nanos=0, total_requests=0,
                              request_limit=SimpleNamespace(cycle="daily"))
        assert (await spend_counters.current(db, client, [key], now))[count_key] == (0, 3)
    scenario(tmp_path, redis_topology.url, body)
