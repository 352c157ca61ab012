"""Spend keys on the request path (Lava's "Manage AI spend"): is this key allowed to make this request?

Answers: 401 when the key is expired or paused; 403 for a model or provider it does not allow; 429 (with
Retry-After) over its rate limit or request limit; 402 when its spend limit is reached; 503 when the shared
counters cannot be reached (never a hang: Redis has short socket timeouts, and each call a deadline).

A key without rate, request or spend limits is decided from the key alone, with no I/O. A key with limits costs
one round trip to the shared counters (spend_counters.py: Redis when configured, else the SQL database), which
checks and counts every limit at once. spend_counters.py documents how far a spend limit can be overshot.
"""
from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from ..errors import Forbidden, GatewayError, InsufficientBalance, RateLimited, ServiceUnavailable
from ..money import usd
from .spend_counters import Admission, RedisCounters, Refusal, SQLCounters, period, periods, utc
from ..store.db import Database
from .spend_key_store import SpendKey

REDIS_DEADLINE = 2.0  # seconds one admission may wait for Redis (its socket timeouts are shorter)
_PER = {"daily": "day", "weekly": "week", "monthly": "month"}


class SpendLimitReached(InsufficientBalance):
    """402: the key's spend limit for this cycle is used up (or would be by this request's maximum cost)."""

    type = "spend_limit_reached"
    message = "spend limit reached"


class SpendKeyGate:
    def __init__(self, db: Database, redis: Any = None) -> None:  # redis-py's client, as open_redis() answers it
        self.db = db
        self.redis = redis
        self.counters: RedisCounters | SQLCounters = RedisCounters(redis, db) if redis is not None else SQLCounters(db)

    async def admit(self, key: SpendKey, provider: str, model: str | None, request_id: str, max_cost: int) -> None:
        """Admit one request made with `key`, or raise. `max_cost` is the most the request can cost (the billing
        engine's quote): it is reserved against a spend limit. A revoked or expired key never gets here: the
        router refuses it (access.py)."""
        if key.allowed_providers is not None and provider not in key.allowed_providers:
            raise Forbidden(f"this spend key may not use provider {provider!r}")
        allowed = key.allowed_models  # a bare name, or qualified by its provider as GET /v1/models lists it
        if allowed is not None and model not in allowed and f"{provider}/{model}" not in allowed:
            raise Forbidden(f"this spend key may not use model {model!r}")
        if key.rate_limit is None and key.request_limit is None and key.spend_limit is None:
            return  # the common case: nothing to count
        now = time.time()
        rate = key.rate_limit
        request = key.request_limit
        spend = key.spend_limit
        cycles = periods(now, request.cycle) if request is not None else []
        admission = Admission(
            key.spend_key_id, request_id, now,
            None if rate is None else (float(rate.burst or rate.rpm), rate.rpm / 60.0),
            None if request is None else (request.count, cycles),
            None if spend is None else (spend.amount_nanos, period(spend.cycle, utc(now))[0],
                                        max_cost))
        try:
            if self.redis is not None:
                refusal = await asyncio.wait_for(self.counters.admit(admission), REDIS_DEADLINE)
            else:
                refusal = await self.counters.admit(admission)
        except GatewayError:
            raise
        except Exception as exc:
            if isinstance(exc, (TimeoutError, OSError, ConnectionError)) or _store_error(exc):
                raise ServiceUnavailable("the spend-key counters are not answering; try again shortly") from exc
            raise
        if refusal is not None:
            raise _refused(key, refusal, cycles)


def _store_error(exc: Exception) -> bool:
    return type(exc).__module__.split(".")[0] in ("redis", "asyncpg", "sqlite3")


def _refused(key: SpendKey, refusal: Refusal, cycles: list[tuple[str, float | None]]) -> GatewayError:
    # Each refusal comes from the limit of the same name, so that limit is set; were it not, the request is still
    # refused (the last line), never admitted.
    rl, rq, sl = key.rate_limit, key.request_limit, key.spend_limit
    if refusal.kind == "rate" and rl is not None:
        wait = max(1, math.ceil(refusal.value))
        return RateLimited(f"rate limit exceeded: this spend key allows {rl.rpm} requests per minute (burst "
                           f"{rl.burst or rl.rpm}); retry in {wait} s", headers=[("retry-after", str(wait))])
    if refusal.kind == "requests" and rq is not None:
        end = cycles[0][1]
        if end is None:
            return RateLimited(f"request limit reached: this spend key may make {rq.count} requests in total")
        wait = max(1, math.ceil(end - time.time()))
        return RateLimited(f"request limit reached: this spend key may make {rq.count} requests per "
                           f"{_PER[rq.cycle]} (UTC); the cycle restarts in {wait} s",
                           headers=[("retry-after", str(wait))])
    if refusal.kind == "spend" and sl is not None:
        return SpendLimitReached(f"spend limit reached: this spend key has used ${usd(int(refusal.value))} (billed "
                                 f"and in flight) of its {sl.cycle} spend limit of ${usd(sl.amount_nanos)}")
    return SpendLimitReached(f"this spend key is over its {refusal.kind} limit")
