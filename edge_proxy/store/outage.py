"""Which exceptions mean "a store did not answer" (the database or Redis): the client gets a 503, not a 500.

A request that needs the store while it is down (the first request of a credential no worker has verified, a REST
call, a reservation beyond the lease) is a fast, clear 503 with Retry-After; a bug stays a 500 with its traceback
in the server log. The drivers are optional, so their exception classes are looked up only if they were imported.
"""
from __future__ import annotations

import sys

from ..errors import ServiceUnavailable

# SQLite reports an unreachable store and a wrong statement with one class; these are the unreachable ones
_SQLITE_OUTAGE = ("locked", "busy", "not open", "disk i/o", "unable to open", "readonly database")
# what a transport closed under a write raises (asyncio's loop, uvloop); see _redis_connection_closed_mid_command
_CLOSED_TRANSPORT = ("'NoneType' object", "the handler is closed")


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):  # refused, reset, broken pipe, timed out
        return True
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(exc, sqlite3.OperationalError):
        return any(m in str(exc).lower() for m in _SQLITE_OUTAGE)
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                                                asyncpg.exceptions.OperatorInterventionError)):
        return True  # cannot connect, the connection died, the server is shutting down or cancelled the query
    redis = sys.modules.get("redis.exceptions")
    if redis is not None and isinstance(exc, (redis.ConnectionError, redis.TimeoutError, redis.ClusterDownError,
                                              redis.TryAgainError)):
        return True
    return _redis_connection_closed_mid_command(exc)


def _redis_connection_closed_mid_command(exc: BaseException) -> bool:
    """redis-py's asyncio connection, closed by another task while this one writes on it (the cluster client drops
    a failed node's connections during a failover), leaks the closed transport's own error instead of redis-py's
    ConnectionError (redis/redis-py#4287, open in redis 8.1): with asyncio's loop "'NoneType' object has no
    attribute 'writelines'" (or "... is not callable"), with uvloop "RuntimeError: unable to perform operation on
    <TCPTransport closed=True ...>; the handler is closed". It is a connection that went away, not a bug of ours,
    so it is an outage: a 503 to retry."""
    if not isinstance(exc, (AttributeError, TypeError, RuntimeError)):
        return False
    if not any(m in str(exc) for m in _CLOSED_TRANSPORT):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") == "redis.asyncio.connection":
            return True
        tb = tb.tb_next
    return False


def store_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("the gateway's store did not answer; retry shortly", headers=[("retry-after", "1")])
