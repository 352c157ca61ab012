"""Balances hold under concurrency: 200 requests at once against a small balance, across 2 gateway processes."""
from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal

import httpx2 as httpx
import pytest

from .billing_helpers import customer, customer_balance, meter, settled, token
from .gateway_process import base_env, start_pair
from .redis_server import RedisServer

CHAT = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}


async def _burst(urls: list[str], credential: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:
        async def one(i: int):
            return await client.post(urls[i % len(urls)] + "/providers/openai/v1/chat/completions", json=CHAT,
                                     headers={"Authorization": f"Bearer {credential}"})
        return await asyncio.gather(*(one(i) for i in range(n)))


def _two_gateways(fake, tmp_path, extra=None):
    return start_pair(base_env(tmp_path / "shared.db", fake.url, extra), tmp_path)


@pytest.mark.parametrize("with_redis", [False, True], ids=["balances in SQLite", "balances in Redis"])
def test_200_concurrent_requests_never_overspend_a_small_balance(fake, tmp_path, with_redis):
    redis_server = RedisServer().start() if with_redis else None
    extra = {"EDGE_PROXY_REDIS_URL": redis_server.url} if redis_server else None
    a, b = _two_gateways(fake, tmp_path, extra)
    try:
        key = a.secret_key
        meter(a, key, "per-call", "fixed", "requests", [(0, "0.01")])
        cus = customer(a, key, "0.50")  # 50 requests' worth
        responses = asyncio.run(_burst([a.url, b.url], token(key, customer_id=cus, meter_slug="per-call"), 200))
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 402}, codes
        ok = [r.headers["x-lava-request-id"] for r in responses if r.status_code == 200]
        assert 0 < len(ok) <= 50
        records = settled(a, key, [r.headers["x-lava-request-id"] for r in responses])
        charged = sum(Decimal(r["charge"]["amount"]) for r in records)
        assert charged == Decimal("0.01") * len(ok)
        final = customer_balance(a, key, cus)
        assert final == Decimal("0.50") - charged
        assert final >= 0
        with sqlite3.connect(tmp_path / "shared.db") as conn:  # exactly one charge row per request
            rows = conn.execute("SELECT count(*), count(DISTINCT request_id), sum(charge_nanos > 0) FROM requests "
                                "WHERE customer_id = ?", (cus,)).fetchone()
        assert rows[0] == rows[1] == 200 and rows[2] == len(ok)
        if redis_server:
            from edge_proxy.billing.payer import Payer
            hot = int(redis_server.client().hget(Payer("customer", cus).redis_key, "b"))
            # Redis holds the region's lease (here the whole balance), less what was billed: as SQL has it
            assert Decimal(hot) / 10**9 == final
    finally:
        a.stop()
        b.stop()
        if redis_server:
            redis_server.stop()
