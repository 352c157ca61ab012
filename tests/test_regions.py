"""Two regions, each with its own Redis, writing one PostgreSQL database (billing/holds.py, "Regions").

A payer's money is shared by the regions without either waiting on the other: each region serves from its lease on
the balance, taken in the shared database, and the leases of all regions together never exceed the balance. A
region that loses the database goes on within its lease, then answers 503; its records land when it returns.
"""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx2 as httpx
import pytest

from edge_proxy.billing.payer import Payer

from .billing_helpers import customer, customer_balance, meter, settled, token
from .gateway_process import GatewayProcess, base_env, cli
from .redis_server import RedisServer

CHAT = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}
PATH = "/providers/openai/v1/chat/completions"


async def _burst(urls: list[str], credential: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:
        async def one(i: int) -> httpx.Response:
            return await client.post(urls[i % len(urls)] + PATH, json=CHAT,
                                     headers={"Authorization": f"Bearer {credential}"})
        return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.fixture
def regions(fake, tmp_path, private_postgres):
    """Two gateway processes in regions "eu" and "us", each with its own Redis, on one database."""
    private_postgres.ensure_running()
    url = private_postgres.create_database()
    servers = [RedisServer().start(), RedisServer().start()]
    gateways: list[GatewayProcess] = []
    try:
        for region, server in zip(("eu", "us"), servers):
            env = base_env(tmp_path / f"unused-{region}.db", fake.url, {
                "EDGE_PROXY_DATABASE_URL": url, "EDGE_PROXY_REDIS_URL": server.url, "EDGE_PROXY_REGION": region,
                "EDGE_PROXY_SPILL_DIR": str(tmp_path / f"spill-{region}"), "EDGE_PROXY_REGION_LEASE_TTL": "2",
                "EDGE_PROXY_LEASE_TTL": "2"})
            g = GatewayProcess(env)
            if gateways:  # one merchant, created once
                first = {"secret_key": gateways[0].secret_key, "merchant_id": gateways[0].merchant_id}
                g.create_merchant = lambda *a, first=first, **k: first  # type: ignore[method-assign]
            gateways.append(g.start(tmp_path))
        yield gateways, servers, url
    finally:
        for g in gateways:
            g.stop()
        for s in servers:
            s.stop()
        private_postgres.ensure_running()
        private_postgres.drop_database(url)


def _leases(url: str, payer: Payer) -> int:
    async def go() -> int:
        import asyncpg
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval("SELECT coalesce(sum(amount_nanos), 0) FROM holds WHERE payer_kind = $1 "
                                           "AND payer_id = $2 AND expires_at > extract(epoch from now())",
                                           payer.kind, payer.id))
        finally:
            await conn.close()
    return asyncio.run(go())


def test_two_regions_never_spend_a_balance_twice(regions):
    (eu, us), _, url = regions
    key = eu.secret_key
    meter(eu, key, "per-call", "fixed", "requests", [(0, "0.01")])
    cus = customer(eu, key, "0.50")  # 50 requests' worth, for both regions together
    credential = token(key, customer_id=cus, meter_slug="per-call")
    # each region serves this customer once, one after the other, before the burst: so each holds a lease on the
    # balance when it starts (a worker asks 16 requests' worth first). Without it, one region could lease the whole
    # balance before the other's first request (seen in full runs: 50 served by one region, 0 by the other), which
    # is correct but leaves nothing for this test to check
    warm = [asyncio.run(_burst([g.url], credential, 1))[0] for g in (us, eu)]
    assert [r.status_code for r in warm] == [200, 200]
    burst = asyncio.run(_burst([eu.url, us.url], credential, 200))
    codes = [r.status_code for r in burst]
    assert set(codes) <= {200, 402}, codes
    responses = warm + burst
    served = [r for r in responses if r.status_code == 200]
    by_region = {g.url: 0 for g in (eu, us)}
    for i, r in enumerate(burst):
        if r.status_code == 200:
            by_region[(eu.url, us.url)[i % 2]] += 1
    assert 0 < len(served) <= 50 and all(by_region.values()), by_region  # both regions served, from one balance
    assert _leases(url, Payer("customer", cus)) <= 500_000_000  # every region's lease together, within the balance
    records = settled(eu, key, [r.headers["x-lava-request-id"] for r in responses])
    assert {r["region"] for r in records if r["status"] == "completed"} == {"eu", "us"}
    charged = sum(Decimal(r["charge"]["amount"]) for r in records)
    assert charged == Decimal("0.01") * len(served)
    assert customer_balance(eu, key, cus) == Decimal("0.50") - charged >= 0
    report = cli(eu.env, "ledger", "verify", check=False)
    assert report.returncode == 0, report.stdout + report.stderr


def test_a_region_without_the_database_serves_within_its_lease_then_refuses(regions, private_postgres):
    (eu, us), _, url = regions
    key = eu.secret_key
    meter(eu, key, "per-call", "fixed", "requests", [(0, "0.001")])
    cus = customer(eu, key, "1")
    credential = token(key, customer_id=cus, meter_slug="per-call")
    send = lambda g: httpx.post(g.url + PATH, json=CHAT, headers={"Authorization": f"Bearer {credential}"},  # noqa
                                timeout=10)
    assert send(eu).status_code == 200  # the eu region now holds a lease on the customer's balance
    private_postgres.stop_server()
    try:
        during = [send(eu).status_code for _ in range(3)]
        assert during == [200, 200, 200]  # served from the lease it holds
        deadline = time.monotonic() + 15  # the lease (EDGE_PROXY_REGION_LEASE_TTL=2) runs out: then 503, fast
        statuses: list[int] = []
        while time.monotonic() < deadline and (not statuses or statuses[-1] != 503):
            statuses.append(send(eu).status_code)  # a hang would be httpx's ReadTimeout (timeout=10), not an answer
            time.sleep(0.2)
        assert statuses[-1] == 503 and set(statuses) <= {200, 503}, statuses
    finally:
        private_postgres.start_server()
    served = 1 + 3 + statuses.count(200)
    deadline = time.monotonic() + 30  # the records waited on disk and land now
    while True:
        listed = httpx.get(f"{eu.url}/v1/requests?customer_id={cus}&limit=100",
                           headers={"Authorization": f"Bearer {key}"}, timeout=10).json()["data"]
        if sum(1 for r in listed if r["status"] == "completed") == served:
            break
        assert time.monotonic() < deadline, (len(listed), served)
        time.sleep(0.2)
    assert customer_balance(eu, key, cus) == Decimal("1") - Decimal("0.001") * served
    report = cli(eu.env, "ledger", "verify", check=False)
    assert report.returncode == 0, report.stdout + report.stderr
