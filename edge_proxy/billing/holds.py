"""Holds: the part of a payer's balance that a gateway worker has set aside for requests in flight.

Each worker keeps at most one hold per payer (hold id = worker id + payer). `hold(payer, hold_id, add)` grows
it atomically, only if the payer's available balance (balance minus every unexpired hold) covers `add`, and
returns the hold's new amount. Holds expire after a TTL, so a crashed worker's hold frees itself.

Two backends: SQL (SQLite, or PostgreSQL with a row lock) and Redis (a Lua script over one hash per payer; the
key carries a hash tag so Redis Cluster keeps a payer on one slot). The Redis scripts are sent with EVALSHA and
reloaded when the server answers NOSCRIPT (redis-py's Script objects do that).

**Regions.** Each region has its own Redis; the database is shared by every region. So a region never lends its
workers the payer's whole balance: it first takes a *region lease* on it in the database (a SQL hold whose id is
`region:<EDGE_PROXY_REGION>`, checked against the balance less every other hold, every other region's included),
and its Redis hash holds that lease (`b`) and when it ends (`e`). Workers' holds come out of `b`; when `b` runs
short the region grows its lease by a chunk, when `e` comes near it renews it, and billing shrinks the lease by
what requests consumed (settle.py), in the same transaction as the charge. A region that loses the database goes
on serving within its lease until `e`, then answers 503 for payers whose lease ran out: the sum of all regions'
leases never exceeds the balance.
"""
from __future__ import annotations

import time
from typing import Any, Protocol

from ..store.db import Database, fetch_row
from .payer import Payer


class HoldBackend(Protocol):
    async def hold(self, payer: Payer, hold_id: str, add: int, ttl: float) -> int | None: ...
    async def release(self, payer: Payer, hold_id: str) -> None: ...


class SQLHolds:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = " FOR UPDATE" if db.dialect == "postgres" else ""  # SQLite's BEGIN IMMEDIATE serializes

    async def hold(self, payer: Payer, hold_id: str, add: int, ttl: float) -> int | None:
        now = time.time()
        async with self.db.transaction() as tx:
            row = await tx.fetchone(f"SELECT balance_nanos FROM {payer.table} WHERE {payer.key_column} = ?"
                                    f"{self._lock}", payer.id)
            if row is None:
                return None
            others = await fetch_row(
                tx, "SELECT coalesce(sum(amount_nanos), 0) FROM holds WHERE payer_kind = ? AND payer_id = ? "
                "AND expires_at > ? AND hold_id <> ?", payer.kind, payer.id, now, hold_id)
            own = await tx.fetchone("SELECT amount_nanos, expires_at FROM holds WHERE hold_id = ?", hold_id)
            current = int(own[0]) if own and own[1] > now else 0
            if add > 0 and int(row[0]) - int(others[0]) - current < add:
                return None
            await tx.execute(
                "INSERT INTO holds VALUES (?, ?, ?, ?, ?) ON CONFLICT (hold_id) DO UPDATE SET "
                "amount_nanos = excluded.amount_nanos, expires_at = excluded.expires_at",
                hold_id, payer.kind, payer.id, current + add, now + ttl)
        return current + add

    async def release(self, payer: Payer, hold_id: str) -> None:
        await self.db.execute("DELETE FROM holds WHERE hold_id = ?", hold_id)


# KEYS[1] payer hash: field "b" = the region's lease on the balance, "e" = when it ends; fields
# "h:<hold id>" = "<amount>:<expires at>". ARGV: hold id, add, now, ttl. Returns the hold's new amount, -1 when the
# lease does not cover it, -2 when the region holds no lease yet, -3 when its lease has ended.
_HOLD = """
local bal = redis.call('HGET', KEYS[1], 'b')
if not bal then return -2 end
local now = tonumber(ARGV[3])
if tonumber(redis.call('HGET', KEYS[1], 'e') or '0') <= now then return -3 end
local mine = 'h:' .. ARGV[1]
local others, current = 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f = all[i]
  if string.sub(f, 1, 2) == 'h:' then
    local sep = string.find(all[i + 1], ':', 1, true)
    local amount = tonumber(string.sub(all[i + 1], 1, sep - 1))
    local expires = tonumber(string.sub(all[i + 1], sep + 1))
    if expires <= now then
      redis.call('HDEL', KEYS[1], f)
    elseif f == mine then
      current = amount
    else
      others = others + amount
    end
  end
end
local add = tonumber(ARGV[2])
if add > 0 and tonumber(bal) - others - current < add then return -1 end
redis.call('HSET', KEYS[1], mine, string.format('%d', current + add) .. ':' .. tostring(now + tonumber(ARGV[4])))
return current + add
"""

# KEYS[1] account hash, KEYS[2..] one marker per entry (a transfer, or a batch's debits from one account out of one
# hold, summed: engine._redis_debits). ARGV[1] marker ttl, then per entry: the change to the balance (negative for a
# debit), the hold it came out of ('-': none) and how much of that hold it used. Applies each entry once; shrinks each
# worker's hold by what its requests used (never below 0). Returns how many it applied. Each change goes to HINCRBY as
# the text it came as, which Redis adds as a 64-bit integer: a sum in Lua is a double, exact only below 2^53 (9
# million USD in nanos), and one such as 1e17 reaches Redis as "1e+17", which HINCRBY refuses. A hold's amount is a
# Lua double here (exact below 2^53 nanos), written with %d.
_APPLY = """
local applied, shrink = 0, {}
local balance = redis.call('HEXISTS', KEYS[1], 'b') == 1
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', tonumber(ARGV[1])) then
    local change, hold, took = ARGV[3 * i - 4], ARGV[3 * i - 3], tonumber(ARGV[3 * i - 2])
    if balance and change ~= '0' then
      redis.call('HINCRBY', KEYS[1], 'b', change)
    end
    applied = applied + 1
    if hold ~= '-' and took > 0 then
      shrink[hold] = (shrink[hold] or 0) + took
    end
  end
end
for hold, amount in pairs(shrink) do
  local f = 'h:' .. hold
  local v = redis.call('HGET', KEYS[1], f)
  if v then
    local sep = string.find(v, ':', 1, true)
    local left = tonumber(string.sub(v, 1, sep - 1)) - amount
    if left < 0 then left = 0 end
    redis.call('HSET', KEYS[1], f, string.format('%d', left) .. string.sub(v, sep))
  end
end
return applied
"""

# KEYS[1] payer hash. ARGV: the region lease's amount in the database, when it ends. The database's amount is what
# is left after every charge it has settled; a charge settled but not yet mirrored here would be taken off twice,
# which only ever makes Redis hold less than the lease, never more.
_SET_LEASE = """
redis.call('HSET', KEYS[1], 'b', ARGV[1], 'e', ARGV[2])
return 1
"""

# A debit waits at most REDIS_RETRY_WINDOW seconds for Redis (BillingEngine.flush_redis): after that it is not sent
# again, and its payer's lease is reloaded from the database, which counts it already. Its marker outlives that
# window, so a debit that landed but whose answer was lost is never applied twice; and markers, one per account
# and batch, cost Redis ~250 bytes each for 15 minutes, not for days (bench/RESULTS.md, eighth and ninth sessions).
REDIS_RETRY_WINDOW = 600.0
SETTLED_MARKER_TTL = 900


def is_cluster(redis: object) -> bool:
    """Whether `redis` is redis-py's Redis Cluster client (its pipelines take EVAL but not EVALSHA)."""
    from redis.asyncio.cluster import RedisCluster
    return isinstance(redis, RedisCluster)


REGION_CHUNK = 4  # a region's lease grows by this many times what the worker asked for (fewer database trips)


def region_hold_id(region: str, payer: Payer) -> str:
    """The database hold that is a region's lease on one payer's balance."""
    return f"region:{region}:{payer.kind}:{payer.id}"


class RedisHolds:
    """Hot holds in Redis, inside each payer's region lease in the database (see the module docstring); SQL stays
    the durable record (balances, transfers)."""

    def __init__(self, redis: Any, db: Database, region: str = "default", region_ttl: float = 120.0) -> None:
        self.redis = redis
        self.db = db
        self.region = region
        self.region_ttl = region_ttl
        self.sql = SQLHolds(db)
        self._hold = redis.register_script(_HOLD)
        self._apply = redis.register_script(_APPLY)
        self._set_lease = redis.register_script(_SET_LEASE)
        self._cluster = is_cluster(redis)
        self._renew_at: dict[Payer, float] = {}

    async def hold(self, payer: Payer, hold_id: str, add: int, ttl: float) -> int | None:
        for _ in range(3):
            got = int(await self._hold(keys=[payer.redis_key], args=[hold_id, add, time.time(), ttl]))
            if got >= 0:
                if time.time() >= self._renew_at.get(payer, 0.0):
                    await self._lease(payer, 0)  # the region's lease ends in less than half its life: renew it
                return got
            if got == -1:  # the lease is short: grow it by a chunk, or at least by what this hold needs
                grown = await self._lease(payer, max(add, 1) * REGION_CHUNK, max(add, 0))
            else:  # no lease in Redis (new, flushed) or it ended: take the region's lease as the database has it
                grown = await self._lease(payer, 0)
            if not grown:
                return None
        return None

    async def _lease(self, payer: Payer, grow: int, at_least: int = 0) -> bool:
        """Grow (or renew, with `grow` 0) this region's lease on the payer in the database, and give Redis what
        it now holds. False when the balance, less every other hold, cannot cover even `at_least` more; raises
        when the database does not answer (the caller turns that into a 503)."""
        lease = region_hold_id(self.region, payer)
        total = await self.sql.hold(payer, lease, grow, self.region_ttl)
        if total is None and at_least and at_least < grow:
            total = await self.sql.hold(payer, lease, at_least, self.region_ttl)
        grown = total is not None
        if total is None:
            total = await self.sql.hold(payer, lease, 0, self.region_ttl)  # still renew what is held
            if total is None:
                return False  # no such payer
        await self._set_lease(keys=[payer.redis_key], args=[total, time.time() + self.region_ttl])
        self._renew_at[payer] = time.time() + self.region_ttl / 2
        return grown

    async def release(self, payer: Payer, hold_id: str) -> None:
        await self.redis.hdel(payer.redis_key, "h:" + hold_id)

    async def apply(self, entries: list[tuple[Payer, str, int, str | None, int]]) -> None:
        """Mirror transfers onto the region's leases: (account, transfer id, change, hold id, how much of the hold
        it used) each; one script call per account, all in one pipeline. Only debits reach Redis: Redis holds the
        region's lease, never the balance, and a credit raises the balance in the database, which the lease can
        grow into. Each transfer is applied once however often this is retried. Raises if Redis fails, whether or
        not some landed."""
        entries = [e for e in entries if e[2] < 0]
        by_payer: dict[Payer, tuple[list[str], list[object]]] = {}
        for payer, transfer_id, change, hold_id, took in entries:
            keys, args = by_payer.setdefault(payer, ([payer.redis_key], [SETTLED_MARKER_TTL]))
            keys.append(f"{payer.redis_key}:settled:{transfer_id}")
            args += (change, hold_id or "-", took)
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in by_payer.values():
                if self._cluster:
                    # redis-py refuses EVALSHA in a Redis Cluster pipeline (it could not reload a script one node
                    # lacks mid-pipeline), so there the script goes as EVAL: the same script, which each node
                    # caches by its SHA; its keys share the payer's hash tag, so each call is routed to one node
                    # and MOVED/ASK are followed by redis-py. A standalone pipeline keeps EVALSHA (it loads
                    # missing scripts before it runs).
                    pipe.eval(_APPLY, len(keys), *keys, *args)
                else:
                    await self._apply(keys=keys, args=args, client=pipe)
            await pipe.execute()

    async def resync(self, payer: Payer) -> None:
        """Give Redis the region's lease as the database has it now (after a restore, or missed mirrors)."""
        await self._lease(payer, 0)
