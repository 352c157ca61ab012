"""When the database or Redis does not answer, a request that needs it is a fast 503 with Retry-After, never a 500
(store/outage.py); a bug stays a 500. In-process, on a private PostgreSQL that the test stops."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest
import redis.exceptions

from edge_proxy.store.outage import is_outage

from .inprocess import InProcess
from .redis_server import RedisServer

UNKNOWN_KEY = "ep_sk_" + "A" * 43  # well formed, so it is looked up


@pytest.mark.parametrize("exc, outage", [
    (ConnectionRefusedError(111, "Connection refused"), True),
    (ConnectionResetError(104, "Connection reset by peer"), True),
    (TimeoutError(), True),
    (sqlite3.OperationalError("database is locked"), True),
    (sqlite3.OperationalError("database is not open"), True),
    (sqlite3.OperationalError("no such table: requests"), False),  # a bug, not an outage
    (redis.exceptions.ConnectionError("Error 111 connecting"), True),
    (redis.exceptions.TimeoutError("Timeout reading from socket"), True),
    (redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"), True),
    (redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
    (KeyError("merchant_id"), False),
    (FileNotFoundError(2, "No such file"), False),
], ids=repr)
def test_which_exceptions_are_a_store_outage(exc, outage):
    assert is_outage(exc) is outage


def test_asyncpg_connection_failures_are_an_outage():
    import asyncpg
    assert is_outage(asyncpg.CannotConnectNowError("the database system is shutting down"))
    assert is_outage(asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"))
    assert not is_outage(asyncpg.UndefinedTableError('relation "nope" does not exist'))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_redis_connection_closed_under_a_command_is_an_outage_and_a_bug_is_not(loop):
    """redis-py up to 8.1 lets a transport closed by another task escape as the loop's own error
    (redis/redis-py#4287), as a Redis Cluster failover under load does (tests/test_faults.py): the connection went
    away, not our bug; redis-py 8.2 raises its own ConnectionError there. Either way it is an outage. Made here the
    way it happens: a real connection to a real server, its transport closed under a write."""
    import uvloop
    from redis.asyncio.connection import Connection
    from redis.exceptions import ConnectionError as RedisConnectionError

    server = RedisServer().start()

    async def closed_under_us() -> BaseException:
        conn = Connection(port=server.port)
        await conn.connect()
        if loop == "asyncio":
            conn._writer = None  # what the concurrent disconnect leaves behind on asyncio's loop
        else:
            conn._writer.transport.close()  # uvloop keeps the writer; its transport is closed
            await asyncio.sleep(0)
        try:
            await conn._send_packed_command([b"PING\r\n"])
        except (AttributeError, TypeError, RuntimeError, RedisConnectionError) as exc:
            return exc
        finally:
            await conn.disconnect()
        raise AssertionError("redis-py raised nothing")
    try:
        leaked = asyncio.run(closed_under_us()) if loop == "asyncio" else uvloop.run(closed_under_us())
    finally:
        server.stop()
    assert is_outage(leaked), repr(leaked)
    assert not is_outage(AttributeError("'NoneType' object has no attribute 'merchant_id'"))  # ours: a bug
    assert not is_outage(RuntimeError("the handler is closed"))  # not from redis-py's connection


def test_a_request_that_needs_a_stopped_database_is_a_503(tmp_path, private_postgres):
    url = private_postgres.create_database()

    async def scenario() -> None:
        async with InProcess(tmp_path, None, {"EDGE_PROXY_DATABASE_URL": url}) as gw:
            private_postgres.stop_server()
            try:
                for method, path, key in (("POST", "/providers/openai/v1/chat/completions", UNKNOWN_KEY),
                                          ("GET", "/v1/wallet", gw.secret_key)):  # never verified by this worker
                    answer = await gw.call(method, path, key=key, body={"model": "gpt-4o-mini", "messages": []}
                                           if method == "POST" else None)
                    assert answer.status == 503, answer.body
                    assert answer.json()["error"]["type"] == "service_unavailable"
                    assert ("retry-after", "1") in answer.headers
            finally:
                private_postgres.start_server()
    try:
        asyncio.run(scenario())
    finally:
        private_postgres.drop_database(url)
