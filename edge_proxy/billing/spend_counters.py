"""Spend-key counters shared by every worker and gateway process: rate buckets, request counts, spend per cycle.

Two backends answer one admission in one round trip, all or nothing (a refused request counts nowhere):
- SQL (embedded): one transaction (`BEGIN IMMEDIATE` on SQLite; on PostgreSQL the first statement, an upsert of
  the key's `spend_key_state` row, locks it, so admissions of one key are serialized) — schema_spend.py;
- Redis (EDGE_PROXY_REDIS_URL): one Lua script over keys that share the hash tag `{spend_key:<id>}`, so Redis
  Cluster keeps a key's counters on one slot. Its clock is Redis's (`TIME`), so gateway clocks need not agree.

What is counted:
- rate limit: a token bucket of `burst` tokens (default rpm) refilling at rpm/60 per second; each admitted request
  takes one. Refused: 429 with Retry-After = seconds until a token is back.
- request limit: admitted requests per cycle (daily from 00:00 UTC, weekly from Monday 00:00 UTC, monthly from the
  1st, total never resets), incremented at admission in every cycle at once, so changing a key's cycle keeps its
  history. Requests made while a key had no request limit are not counted toward a later one.
- spend limit: billed spend per cycle, added by the log writer in the billing transaction (`record_spend`, called
  from BillingEngine.commit with the records settle() charged now, so each request is added exactly once, replays
  and retries included), plus the reservations of requests in flight. A request is admitted only while
  spend + reservations in flight + its own reservation (the most it can cost, as billing/charging.py computes it)
  is within the limit; its reservation is dropped when it is billed.

The bound, as billing/leases.py gives its own: billed spend in a cycle can exceed the limit only by
  (a) the amount by which requests in flight cost more than their reservations (inputs whose tokens are not bounded
      by their bytes: images, audio; see charging.py), and
  (b) the reservation of a request still in flight RESERVATION_TTL seconds after it was admitted (its reservation
      stops counting then), and
  (c) Redis mode only: a charge billed while the Redis copy of the period's spend was being re-read from SQL
      (the copy lives REDIS_SPEND_TTL seconds), or while Redis was unreachable for the log writer; it is counted
      again at the next re-read, at most REDIS_SPEND_TTL seconds later.
The other way round, a worker that dies with requests in flight leaves their reservations counting (the key may
spend less than its limit) for at most RESERVATION_TTL seconds. Request and rate limits are exact: the check and
the increment are one atomic step (a request refused later, for example 402 on an empty wallet, still counts).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import math
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ServiceUnavailable
from ..store.db import Database, Tx, fetch_row

if TYPE_CHECKING:
    from ..metering.record import RequestRecord
    from .holds import RedisHolds
    from .spend_key_store import SpendKey

log = logging.getLogger("edge_proxy.spend_keys")

RESERVATION_TTL = 900.0    # seconds a reservation counts unless its request is billed first
REDIS_SPEND_TTL = 300      # seconds the Redis copy of a period's billed spend lives before it is re-read from SQL
CYCLES = ("daily", "weekly", "monthly", "total")
_DAY = dt.timedelta(days=1)


# -- cycles ------------------------------------------------------------------------------------------------------
def period(cycle: str, when: dt.datetime) -> tuple[str, float | None]:
    """(label, end in epoch seconds) of the cycle that contains `when` (UTC). "total" never ends."""
    if cycle == "total":
        return "total", None
    day = when.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if cycle == "daily":
        return f"daily:{day:%Y-%m-%d}", (day + _DAY).timestamp()
    if cycle == "weekly":
        start = day - dt.timedelta(days=day.weekday())
        return f"weekly:{start:%Y-%m-%d}", (start + 7 * _DAY).timestamp()
    if cycle == "monthly":
        start = day.replace(day=1)
        return f"monthly:{start:%Y-%m}", (start + 32 * _DAY).replace(day=1).timestamp()
    raise ValueError(f"unknown cycle {cycle!r}")


def utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.UTC)


def periods(now: float, first: str | None = None) -> list[tuple[str, float | None]]:
    """Every cycle's (label, end) at `now`; `first`'s cycle first."""
    when = utc(now)
    order = ([first] if first else []) + [c for c in CYCLES if c != first]
    return [period(c, when) for c in order]


@functools.lru_cache(maxsize=64)
def _labels_on(day: str) -> tuple[str, ...]:
    when = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    return tuple(period(c, when)[0] for c in CYCLES)


def labels_at(created_at: str) -> tuple[str, ...]:
    """The labels of every cycle a record created at `created_at` (now_iso() text, UTC) falls in."""
    return _labels_on(created_at[:10])


# -- one admission -----------------------------------------------------------------------------------------------
class Admission(NamedTuple):
    """What one request asks of a key's counters."""
    spend_key_id: str
    request_id: str
    now: float
    rate: tuple[float, float] | None                               # (bucket capacity, tokens per second)
    requests: tuple[int, list[tuple[str, float | None]]] | None    # (limit, every cycle, the limit's first)
    spend: tuple[int, str, int] | None                             # (limit nanos, cycle label, this reservation)


class Refusal(NamedTuple):
    kind: str      # "rate" | "requests" | "spend"
    value: float   # rate: seconds until a token is back; requests: the count; spend: nanos used (with in flight)


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


class SQLCounters:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def admit(self, a: Admission) -> Refusal | None:
        try:
            async with self.db.transaction() as tx:
                await self._admit(tx, a)
        except _Refused as refused:  # raised inside the transaction, so nothing it did is kept
            return refused.refusal
        return None

    async def _admit(self, tx: Tx, a: Admission) -> None:
        key = a.spend_key_id
        state = await fetch_row(
            tx, "INSERT INTO spend_key_state (spend_key_id, tokens, refilled_at) VALUES (?, NULL, ?) "
            "ON CONFLICT (spend_key_id) DO UPDATE SET spend_key_id = excluded.spend_key_id "
            "RETURNING tokens, refilled_at", key, a.now)
        tokens = 0.0
        if a.rate is not None:
            capacity, per_second = a.rate
            tokens = capacity if state[0] is None else min(
                capacity, float(state[0]) + max(0.0, a.now - float(state[1])) * per_second)
            if tokens < 1:
                raise _Refused(Refusal("rate", (1 - tokens) / per_second))
        labels = ([a.requests[1][0][0]] if a.requests else []) + ([a.spend[1]] if a.spend else [])
        counters: dict[str, tuple[int, int]] = {}
        if labels:
            rows = await tx.fetchall(
                f"SELECT period, spend_nanos, requests FROM spend_key_counters WHERE spend_key_id = ? AND "
                f"period IN ({', '.join('?' * len(labels))})", key, *labels)
            counters = {r[0]: (int(r[1]), int(r[2])) for r in rows}
        if a.requests is not None:
            made = counters.get(a.requests[1][0][0], (0, 0))[1]
            if made >= a.requests[0]:
                raise _Refused(Refusal("requests", made))
        if a.spend is not None:
            limit, label, amount = a.spend
            row = await fetch_row(tx, "SELECT coalesce(sum(amount_nanos), 0) FROM spend_key_reservations WHERE "
                                  "spend_key_id = ? AND expires_at > ?", key, a.now)
            used = counters.get(label, (0, 0))[0] + int(row[0])
            if used + max(amount, 1) > limit:
                raise _Refused(Refusal("spend", used))
        # admitted: count it everywhere
        if a.rate is not None:
            await tx.execute("UPDATE spend_key_state SET tokens = ?, refilled_at = ? WHERE spend_key_id = ?",
                             tokens - 1, a.now, key)
        if a.requests is not None:
            cycles = a.requests[1]
            await tx.execute(
                "INSERT INTO spend_key_counters (spend_key_id, period, spend_nanos, requests) VALUES "
                + ", ".join(["(?, ?, 0, 1)"] * len(cycles))
                + " ON CONFLICT (spend_key_id, period) DO UPDATE SET requests = spend_key_counters.requests + 1",
                *(v for label, _ in cycles for v in (key, label)))
        if a.spend is not None:
            await tx.execute("INSERT INTO spend_key_reservations VALUES (?, ?, ?, ?)", a.request_id, key,
                             a.spend[2], a.now + RESERVATION_TTL)


# -- Redis -------------------------------------------------------------------------------------------------------
def redis_key(spend_key_id: str, suffix: str) -> str:
    # the braces are a Redis Cluster hash tag: every counter of one key lands in the same slot
    return f"edge_proxy:{{spend_key:{spend_key_id}}}:{suffix}"


# KEYS: 1 rate bucket (hash t, u), 2 reservations (hash request id -> "amount:expires at"), 3 the spend cycle's
#       billed spend (a copy of SQL's, re-read when missing), 4.. request counters (the limit's cycle first).
# ARGV: 1 bucket capacity (0: no rate limit), 2 tokens per second, 3 request limit (0: none), 4 spend limit
#       (-1: none), 5 this request's reservation, 6 request id, 7 reservation ttl, 8.. expire-at of each request
#       counter (0: never).
# Returns {0} admitted, {1, seconds} rate limited, {2, count} request limit, {3, used} spend limit, {-2} when the
# spend copy must be loaded first. Nothing is written unless the request is admitted.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap, per = tonumber(ARGV[1]), tonumber(ARGV[2])
local reqlimit, spendlimit = tonumber(ARGV[3]), tonumber(ARGV[4])
local spent = 0
if spendlimit >= 0 then
  local s = redis.call('GET', KEYS[3])
  if not s then return {-2} end
  spent = tonumber(s)
end
local tokens = 0
if cap > 0 then
  local st = redis.call('HMGET', KEYS[1], 't', 'u')
  if st[1] then
    tokens = math.min(cap, tonumber(st[1]) + math.max(0, now - tonumber(st[2])) * per)
  else
    tokens = cap
  end
  if tokens < 1 then return {1, tostring((1 - tokens) / per)} end
end
if reqlimit > 0 then
  local n = tonumber(redis.call('GET', KEYS[4]) or '0')
  if n >= reqlimit then return {2, n} end
end
if spendlimit >= 0 then
  local reserved = 0
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    local v = all[i + 1]
    local sep = string.find(v, ':', 1, true)
    if tonumber(string.sub(v, sep + 1)) <= now then
      redis.call('HDEL', KEYS[2], all[i])
    else
      reserved = reserved + tonumber(string.sub(v, 1, sep - 1))
    end
  end
  local need = tonumber(ARGV[5])
  if need < 1 then need = 1 end
  if spent + reserved + need > spendlimit then return {3, tostring(spent + reserved)} end
end
if cap > 0 then
  redis.call('HSET', KEYS[1], 't', tostring(tokens - 1), 'u', tostring(now))
  redis.call('EXPIRE', KEYS[1], math.ceil(cap / per) + 60)
end
if reqlimit > 0 then
  for i = 4, #KEYS do
    local n = redis.call('INCR', KEYS[i])
    local at = tonumber(ARGV[4 + i])
    if n == 1 and at > 0 then redis.call('EXPIREAT', KEYS[i], at) end
  end
end
if spendlimit >= 0 then
  redis.call('HSET', KEYS[2], ARGV[6], ARGV[5] .. ':' .. string.format('%.3f', now + tonumber(ARGV[7])))
  redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[7])) + 60)
end
return {0}
"""

# KEYS: 1 reservations, 2.. the billed-spend copies of every cycle the request falls in. ARGV: request id, charge.
# Once per request: only a request whose reservation is still there adds its charge (a replay finds it gone);
# a copy that is missing is left alone (it is re-read from SQL, which has the charge).
_SETTLE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if tonumber(ARGV[2]) > 0 then
  for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[2]) end
  end
end
return 1
"""


class RedisCounters:
    def __init__(self, redis: Any, db: Database) -> None:  # redis-py's client, as open_redis() answers it
        self.redis = redis
        self.db = db
        self._admit = redis.register_script(_ADMIT)

    async def admit(self, a: Admission) -> Refusal | None:
        key = a.spend_key_id
        cycles = a.requests[1] if a.requests else []
        spend_label = a.spend[1] if a.spend else "-"
        keys = [redis_key(key, "rate"), redis_key(key, "reserved"), redis_key(key, "spend:" + spend_label),
                *(redis_key(key, "requests:" + label) for label, _ in cycles)]
        args = [a.rate[0] if a.rate else 0, a.rate[1] if a.rate else 0, a.requests[0] if a.requests else 0,
                a.spend[0] if a.spend else -1, a.spend[2] if a.spend else 0, a.request_id, RESERVATION_TTL,
                *(0 if end is None else math.ceil(end) + 3600 for _, end in cycles)]
        for _ in range(2):
            got = await self._admit(keys=keys, args=args)
            code = int(got[0])
            if code == -2:
                await self._load_spend(key, spend_label, keys[2])
                continue
            if code == 0:
                return None
            return Refusal({1: "rate", 2: "requests", 3: "spend"}[code], float(got[1]))
        raise ConnectionError("the spend counter could not be loaded into Redis")

    async def _load_spend(self, spend_key_id: str, label: str, rkey: str) -> None:
        row = await self.db.fetchone("SELECT spend_nanos FROM spend_key_counters WHERE spend_key_id = ? AND "
                                     "period = ?", spend_key_id, label)
        await self.redis.set(rkey, int(row[0]) if row else 0, nx=True, ex=REDIS_SPEND_TTL)


# -- the log writer: billed spend --------------------------------------------------------------------------------
_SWEEP_EVERY = 60.0
_swept_at = 0.0
# (client, keys, args) waiting for Redis; the client is redis-py's, typed Any as open_redis() answers it
_redis_pending: list[tuple[Any, list[str], list[str | int]]] = []
_REDIS_PENDING_MAX = 100_000
_REDIS_RETRY = 1.0         # seconds before pending Redis updates are tried again after a failure
_flushing = False
_tasks: set[asyncio.Task[None]] = set()


async def record_spend(tx: Tx, records: list[RequestRecord], redis_holds: RedisHolds | None = None) -> None:
    """Add what `records` (the ones settle() charged now) spent to their spend keys, in the billing transaction:
    totals and last use on `spend_keys`, billed spend per cycle, and drop their reservations. With Redis
    (`redis_holds` set) the Redis copies are updated just after, off this transaction."""
    global _swept_at
    mine = [(r.spend_key_id, r) for r in records if r.spend_key_id]
    if not mine:
        return
    totals: dict[str, list[Any]] = defaultdict(lambda: [0, 0, None])   # key -> [spend, served requests, last used]
    spent: dict[tuple[str, str], int] = defaultdict(int)
    for key, r in mine:
        t = totals[key]
        t[0] += r.charge_nanos
        if 0 < r.status_code < 400:
            t[1] += 1
            t[2] = r.created_at if t[2] is None or r.created_at > t[2] else t[2]
        if r.charge_nanos:
            for label in labels_at(r.created_at):
                spent[(key, label)] += r.charge_nanos
    # one statement for every key of the batch (in key order, so two writers lock shared rows in the same order)
    used = [(spend, served, last, last, key) for key, (spend, served, last) in sorted(totals.items()) if served]
    if used:
        await tx.executemany("UPDATE spend_keys SET total_spend_nanos = total_spend_nanos + ?, total_requests = "
                             "total_requests + ?, last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < ? "
                             "THEN ? ELSE last_used_at END WHERE spend_key_id = ?", used)
    spent_only = [(spend, key) for key, (spend, served, _) in sorted(totals.items()) if spend and not served]
    if spent_only:
        await tx.executemany("UPDATE spend_keys SET total_spend_nanos = total_spend_nanos + ? WHERE spend_key_id = ?",
                             spent_only)
    if spent:
        await tx.execute(
            "INSERT INTO spend_key_counters (spend_key_id, period, spend_nanos, requests) VALUES "
            + ", ".join(["(?, ?, ?, 0)"] * len(spent))
            + " ON CONFLICT (spend_key_id, period) DO UPDATE SET spend_nanos = spend_key_counters.spend_nanos + "
            "excluded.spend_nanos", *(v for (key, label), n in sorted(spent.items()) for v in (key, label, n)))
    redis = getattr(redis_holds, "redis", None)
    if redis is None:
        for i in range(0, len(mine), 500):
            chunk = mine[i:i + 500]
            await tx.execute(f"DELETE FROM spend_key_reservations WHERE request_id IN "
                             f"({', '.join('?' * len(chunk))})", *(r.request_id for _, r in chunk))
        now = time.time()
        if now - _swept_at > _SWEEP_EVERY:  # reservations whose request was never billed (its worker died)
            _swept_at = now
            await tx.execute("DELETE FROM spend_key_reservations WHERE expires_at < ?", now)
        return
    for key, r in mine:
        _redis_pending.append((redis, [redis_key(key, "reserved"), *(
            redis_key(key, "spend:" + label) for label in labels_at(r.created_at))],
            [r.request_id, r.charge_nanos]))
    del _redis_pending[:-_REDIS_PENDING_MAX]  # past that, the copies are re-read from SQL within REDIS_SPEND_TTL
    _kick()


def _kick() -> None:
    """Start sending the pending Redis updates, off the billing transaction (the script is idempotent, so it does
    not matter whether it lands just before or just after the commit)."""
    global _flushing
    if _flushing or not _redis_pending:
        return
    _flushing = True
    task = asyncio.get_running_loop().create_task(_flush_redis())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _flush_redis() -> None:
    """Send the pending Redis updates (pipelined). A failure keeps them and tries again shortly; each is applied
    once (the script drops the reservation first), so a retry after a lost answer adds nothing twice."""
    global _flushing
    try:
        while _redis_pending:
            batch = _redis_pending[:500]
            redis = batch[0][0]
            batch = [p for p in batch if p[0] is redis]
            try:
                async with redis.pipeline(transaction=False) as pipe:
                    for _, keys, args in batch:
                        pipe.eval(_SETTLE, len(keys), *keys, *args)
                    await asyncio.wait_for(pipe.execute(), 5)
            except Exception as exc:  # Redis down: keep them, try again shortly
                log.warning("spend-key counters: Redis update failed (%s: %s); %d pending", type(exc).__name__,
                            exc, len(_redis_pending))
                asyncio.get_running_loop().call_later(_REDIS_RETRY, _kick)
                return
            done = {id(p) for p in batch}
            _redis_pending[:] = [p for p in _redis_pending if id(p) not in done]
    finally:
        _flushing = False


# -- reading: the current cycle, for the API -----------------------------------------------------------------------
async def current(db: Database, redis: Any, keys: list[SpendKey],
                  now: float | None = None) -> dict[str, tuple[int, int]]:
    """Per key: (spend, requests) in the current cycle of its spend and request limits; a key without that limit
    shows its total instead."""
    now = time.time() if now is None else now
    if not keys:
        return {}
    labels = {c: label for c, (label, _) in zip(CYCLES, periods(now))}
    ids = [k.spend_key_id for k in keys]
    rows = await db.fetchall(
        f"SELECT spend_key_id, period, spend_nanos, requests FROM spend_key_counters WHERE spend_key_id IN "
        f"({', '.join('?' * len(ids))}) AND period IN ({', '.join('?' * len(labels))})", *ids, *labels.values())
    got = {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}
    out = {}
    limited = []
    for k in keys:
        spend = k.total_spend_nanos if k.spend_limit is None else got.get(
            (k.spend_key_id, labels[k.spend_limit.cycle]), (0, 0))[0]
        requests = k.total_requests
        if k.request_limit is not None:
            label = labels[k.request_limit.cycle]
            requests = got.get((k.spend_key_id, label), (0, 0))[1]
            limited.append((k.spend_key_id, label))
        out[k.spend_key_id] = (spend, requests)
    if redis is not None and limited:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for key, label in limited:
                    pipe.get(redis_key(key, "requests:" + label))
                counts = await asyncio.wait_for(pipe.execute(), 5)
        except Exception as exc:  # the request counts live in Redis only
            raise ServiceUnavailable("the spend-key counters are not answering; try again shortly") from exc
        for (key, _), n in zip(limited, counts):
            out[key] = (out[key][0], int(n or 0))
    return out
