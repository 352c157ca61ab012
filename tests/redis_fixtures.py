"""pytest fixtures for the three Redis deployments the gateway supports: standalone, Cluster and Sentinel.

Each is session-scoped (under pytest-xdist, a session is one worker): a worker starts its own servers, so one
worker's `kill -9` or FLUSHALL never reaches another's. That costs a few seconds of start-up per worker that uses
them, and spares every test a key prefix. Tests that break a topology for good start their own
(`with LocalRedisCluster() as cluster:`).
"""
from __future__ import annotations

import pytest

from .redis_cluster import LocalRedisCluster
from .redis_sentinel import LocalRedisSentinel
from .redis_server import RedisServer

TOPOLOGIES = ["standalone", "cluster", "sentinel"]


class Standalone:
    """RedisServer with the same face as the cluster and sentinel harnesses."""

    def __init__(self) -> None:
        self.server = RedisServer()

    def start(self) -> Standalone:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def flushall(self) -> None:
        c = self.server.client()
        c.flushall()
        c.script_flush()


_MAKERS = {"standalone": Standalone, "cluster": LocalRedisCluster, "sentinel": LocalRedisSentinel}


@pytest.fixture(scope="session")
def redis_deployments():
    """The deployments started so far in this session, by name; each stops at the session's end."""
    started: dict[str, object] = {}
    yield started
    for deployment in started.values():
        deployment.stop()


def _deployment(started: dict, name: str):
    if name not in started:
        started[name] = _MAKERS[name]().start()
    deployment = started[name]
    deployment.flushall()
    return deployment


@pytest.fixture(params=TOPOLOGIES)
def redis_topology(request, redis_deployments):
    """Each Redis deployment in turn, started once per session and emptied (data and scripts) before each test."""
    return _deployment(redis_deployments, request.param)


@pytest.fixture
def redis_cluster(redis_deployments) -> LocalRedisCluster:
    """The session's Redis Cluster, emptied. A test that moves a slot puts it back."""
    return _deployment(redis_deployments, "cluster")
