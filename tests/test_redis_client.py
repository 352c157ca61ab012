"""EDGE_PROXY_REDIS_URL -> a redis-py client (edge_proxy/store/redis_client.py): which forms it reads, what each
becomes, and that a bad URL is a SettingsError naming the variable (and never echoing a password). The clients
themselves are exercised against real servers in test_redis_topologies.py and test_redis_failover.py."""
from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from edge_proxy.errors import SettingsError
from edge_proxy.settings import Settings
from edge_proxy.store.redis_client import RedisTarget, open_redis, parse_redis_url

PARSED = [
    ("redis://127.0.0.1:6379/0", None),
    ("rediss://:pw@cache.internal:6380/2", None),
    ("unix:///run/redis.sock?db=1", None),
    ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
     RedisTarget("cluster", (("10.0.0.1", 7000), ("10.0.0.2", 7001)))),
    ("redis+cluster://a,b:7001/", RedisTarget("cluster", (("a", 6379), ("b", 7001)))),
    ("rediss+cluster://user:s%40cret@a:7000?max_connections=50&require_full_coverage=no",
     RedisTarget("cluster", (("a", 7000),), True, "user", "s@cret",
                 options={"max_connections": 50, "require_full_coverage": False})),
    ("redis+cluster://[::1]:7000,[::1]:7001", RedisTarget("cluster", (("::1", 7000), ("::1", 7001)))),
    ("redis+sentinel://s1:26379,s2:26380/mymaster",
     RedisTarget("sentinel", (("s1", 26379), ("s2", 26380)), service="mymaster")),
    ("redis+sentinel://pw@s1,s2/mymaster/3",
     RedisTarget("sentinel", (("s1", 26379), ("s2", 26379)), password="pw", service="mymaster", db=3)),
    ("redis+sentinel://app:pw@s1:5000/mymaster?sentinel_password=spw",
     RedisTarget("sentinel", (("s1", 5000),), username="app", password="pw", service="mymaster",
                 options={"sentinel_password": "spw"})),
]


@pytest.mark.parametrize("url, target", PARSED, ids=[u for u, _ in PARSED])
def test_each_supported_form_is_read(url, target):
    assert parse_redis_url(url) == target


BAD = [
    ("127.0.0.1:6379", "not a URL"),
    ("http://127.0.0.1:6379", "unknown scheme 'http'"),
    ("redis+cluster://:hunter2@a:notaport", "port 'notaport' is not a number"),
    ("redis+cluster://a:70000", "out of range"),
    ("redis+cluster://a,,b", "an empty host"),
    ("redis+cluster://a:7000/1", "a cluster URL has no path"),
    ("redis+cluster://a:7000?read_from_replicas=yes", "unknown option 'read_from_replicas'"),
    ("redis+cluster://a:7000?require_full_coverage=maybe", "must be true or false"),
    ("redis+sentinel://s1:26379", "needs the master's service name"),
    ("redis+sentinel://s1:26379/svc/x", "database 'x' is not a number"),
    ("redis+sentinel://s1:26379/svc/1/2", "path is /<service name>[/db]"),
    ("redis://:hunter2@host:port/0", "Port could not be cast"),
]


@pytest.mark.parametrize("url, why", BAD, ids=[u for u, _ in BAD])
def test_a_bad_url_is_a_settings_error_naming_the_variable_and_not_the_password(url, why):
    with pytest.raises(SettingsError) as caught:
        open_redis(url, 0.5)
    message = str(caught.value)
    assert message.startswith("EDGE_PROXY_REDIS_URL: ") and why in message
    assert "hunter2" not in message


@pytest.mark.parametrize("url", ["http://cache:6379", "redis+cluster://a:x", "redis+sentinel://s1:26379"])
def test_settings_refuse_a_bad_redis_url_at_load(url):
    with pytest.raises(SettingsError, match="^EDGE_PROXY_REDIS_URL: "):
        Settings.load(env={"EDGE_PROXY_REDIS_URL": url})


def test_settings_take_every_supported_form():
    for url, _ in PARSED:
        assert Settings.load(env={"EDGE_PROXY_REDIS_URL": url}).redis_url == url


async def _clients():
    plain = open_redis("redis://127.0.0.1:1/0", 0.25)
    cluster = open_redis("redis+cluster://127.0.0.1:1,127.0.0.1:2", 0.25)
    sentinel = open_redis("redis+sentinel://127.0.0.1:1/edge/2", 0.25)
    try:
        return plain, cluster, sentinel
    finally:
        for c in (plain, cluster, sentinel):
            await c.aclose()


def test_each_form_gives_redis_pys_own_client_with_the_timeout_set():
    import asyncio
    plain, cluster, sentinel = asyncio.run(_clients())
    assert type(plain) is Redis
    assert plain.connection_pool.connection_kwargs["socket_timeout"] == 0.25
    assert plain.connection_pool.connection_kwargs["socket_connect_timeout"] == 0.25
    assert isinstance(cluster, RedisCluster)
    assert [(n.host, n.port) for n in cluster.nodes_manager.startup_nodes.values()] == [
        ("127.0.0.1", 1), ("127.0.0.1", 2)]
    assert cluster.get_connection_kwargs()["socket_timeout"] == 0.25
    assert isinstance(sentinel, Redis)
    pool = sentinel.connection_pool
    assert pool.service_name == "edge" and pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["socket_timeout"] == 0.25
    assert pool.sentinel_manager.sentinel_kwargs["socket_connect_timeout"] == 0.25
