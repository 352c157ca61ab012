"""Shared fixtures: a fake provider on loopback and a real gateway process in front of it."""
from __future__ import annotations

import pytest

from edge_proxy.forward_token import encode_forward_token

from .fake_provider import FakeProvider
from .gateway_process import GatewayProcess, base_env
from .pg import PrivatePostgres

# Redis standalone, Cluster and Sentinel deployments (tests/redis_fixtures.py)
from .redis_fixtures import redis_cluster, redis_deployments, redis_topology  # noqa: F401

# one gateway in-process with a credential of every kind, per module (tests/test_trust_*.py, tests/test_fuzz.py)
from .trust_world import trust_world  # noqa: F401


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Name a failure the moment it happens (pytest -n 2 prints them only at the end, which a run cut short by
    CI's time limit never reaches)."""
    if report.failed:
        print(f"\nFAILED {report.nodeid} ({report.when}, {report.duration:.1f} s)", flush=True)


@pytest.fixture(scope="session")
def fake() -> FakeProvider:
    server = FakeProvider()
    server.start_in_thread()
    yield server
    server.stop_thread()


@pytest.fixture(scope="session")
def gateway(fake, tmp_path_factory) -> GatewayProcess:
    tmp = tmp_path_factory.mktemp("gateway")
    gw = GatewayProcess(base_env(tmp / "edge-proxy.db", fake.url)).start(tmp)
    yield gw
    gw.stop()


@pytest.fixture
def token(gateway):
    def make(**fields) -> str:
        return encode_forward_token(gateway.secret_key, **fields)
    return make


@pytest.fixture(scope="session")
def private_postgres() -> PrivatePostgres:
    """A PostgreSQL server of this session's own (under xdist, of this worker's), for tests that stop, restart or
    kill it. Each such test leaves it running (`ensure_running`) for the next."""
    with PrivatePostgres() as server:
        yield server
