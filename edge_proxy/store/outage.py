"""Which exceptions mean "a store did not answer" (the database or Redis): the client gets a 503, not a 500.

A request that needs the store while it is down (the first request of a credential no worker has verified, a REST
call, a reservation beyond the lease) is a fast, clear 503 with Retry-After; a bug stays a 500 with its traceback
in the server log. The drivers are optional, so their exception classes are looked up only if they were imported.
"""
from __future__ import annotations

import sqlite3
import sys

from ..errors import ServiceUnavailable

# SQLite reports an unreachable store and a wrong statement with one class; these are the unreachable ones
_SQLITE_OUTAGE = ("locked", "busy", "not open", "disk i/o", "unable to open", "readonly database")


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):  # refused, reset, broken pipe, timed out
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return any(m in str(exc).lower() for m in _SQLITE_OUTAGE)
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                                                asyncpg.exceptions.OperatorInterventionError)):
        return True  # cannot connect, the connection died, the server is shutting down or cancelled the query
    redis = sys.modules.get("redis.exceptions")
    return redis is not None and isinstance(exc, (redis.ConnectionError, redis.TimeoutError, redis.ClusterDownError,
                                                  redis.TryAgainError))


def store_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("the gateway's store did not answer; retry shortly", headers=[("retry-after", "1")])
