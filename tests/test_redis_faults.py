"""Redis down or frozen: requests neither hang nor bill wrongly; NOSCRIPT and reconcile."""
from __future__ import annotations

import asyncio

import json
from decimal import Decimal

import httpx2 as httpx
import pytest

from edge_proxy.billing.holds import region_hold_id
from edge_proxy.billing.payer import Payer
from edge_proxy.store import open_store

from .billing_helpers import customer, customer_balance, h, meter, settled, token
from .gateway_process import GatewayProcess, base_env, cli
from .redis_server import RedisServer

CHAT = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def redis_gateway(fake, tmp_path):
    server = RedisServer().start()
    env = base_env(tmp_path / "g.db", fake.url, {"EDGE_PROXY_REDIS_URL": server.url,
                                                  "EDGE_PROXY_LOG_SPILL_AFTER": "1"})
    gw = GatewayProcess(env).start(tmp_path)
    yield gw, server
    gw.stop()
    server.stop()


def send(gw, credential):
    """One request; a gateway that hangs on a frozen Redis fails the test with httpx's ReadTimeout (no timed
    assertion: the gateway's own store deadlines are far below the client's 15 s)."""
    return httpx.post(gw.url + "/providers/openai/v1/chat/completions", json=CHAT, headers=h(credential), timeout=15)


@pytest.mark.parametrize("fault", ["frozen", "stopped"])
def test_without_redis_new_reservations_fail_fast_with_503_and_nothing_is_billed_wrongly(redis_gateway, fault):
    gw, server = redis_gateway
    key = gw.secret_key
    meter(gw, key, "per-call", "fixed", "requests", [(0, "0.01")])
    funded = customer(gw, key, "5.00")
    fresh = customer(gw, key, "5.00")
    warm = token(key, customer_id=funded, meter_slug="per-call")
    ok = send(gw, warm)  # this worker now holds a lease on `funded`
    assert ok.status_code == 200
    if fault == "frozen":
        server.freeze()
    else:
        server.stop()
    try:
        during = send(gw, warm)  # inside the lease: no Redis call on the request path
        assert during.status_code == 200
        refused = send(gw, token(key, customer_id=fresh, meter_slug="per-call"))  # a hang: ReadTimeout
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "service_unavailable"
    finally:
        if fault == "frozen":
            server.thaw()
        else:
            server = RedisServer()
            server.port = int(gw.env["EDGE_PROXY_REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
            server.start()
    after = send(gw, warm)
    assert after.status_code == 200
    ids = [ok.headers["x-lava-request-id"], during.headers["x-lava-request-id"], after.headers["x-lava-request-id"]]
    records = settled(gw, key, ids, timeout=20)
    assert [r["charge"]["amount"] for r in records] == ["0.01", "0.01", "0.01"]
    assert customer_balance(gw, key, funded) == Decimal("4.97")  # SQL, the durable record: each charged once
    assert customer_balance(gw, key, fresh) == Decimal("5.00")


def test_a_flushed_script_cache_is_reloaded_on_noscript(redis_gateway):
    gw, server = redis_gateway
    key = gw.secret_key
    meter(gw, key, "m", "fixed", "requests", [(0, "0.01")])
    cus = customer(gw, key, "1.00")
    assert send(gw, token(key, customer_id=cus, meter_slug="m")).status_code == 200
    server.client().script_flush()
    other = customer(gw, key, "1.00")  # needs a fresh hold: EVALSHA answers NOSCRIPT, the script is re-sent
    assert send(gw, token(key, customer_id=other, meter_slug="m")).status_code == 200


def test_redis_keys_carry_a_hash_tag_per_payer(redis_gateway):
    gw, server = redis_gateway
    key = gw.secret_key
    meter(gw, key, "m", "fixed", "requests", [(0, "0.01")])
    cus = customer(gw, key, "1.00")
    assert send(gw, token(key, customer_id=cus, meter_slug="m")).status_code == 200
    keys = [k.decode() for k in server.client().keys("edge_proxy:*")]
    assert f"edge_proxy:{{customer:{cus}}}" in keys
    assert all("{" in k and "}" in k for k in keys)


def test_reconcile_rebuilds_redis_balances_from_the_durable_record(redis_gateway):
    gw, server = redis_gateway
    key = gw.secret_key
    meter(gw, key, "m", "fixed", "requests", [(0, "0.01")])
    cus = customer(gw, key, "1.00")
    rid = send(gw, token(key, customer_id=cus, meter_slug="m")).headers["x-lava-request-id"]
    settled(gw, key, [rid])
    hot = server.client()
    hot.hset(Payer("customer", cus).redis_key, "b", 123)  # Redis drifted (say, it was restored from an old copy)
    out = json.loads(cli(gw.env, "balances", "reconcile").stdout)
    assert out["payers"] >= 1 and out["repaired"] >= 1
    # Redis holds the region's lease on the customer's balance, as the database has it (billing/holds.py)
    lease = asyncio.run(_region_lease(gw, Payer("customer", cus)))
    assert 0 < lease <= 990_000_000 and int(hot.hget(Payer("customer", cus).redis_key, "b")) == lease
    assert customer_balance(gw, key, cus) == Decimal("0.99")


async def _region_lease(gw, payer: Payer) -> int:
    store = open_store(gw.env["EDGE_PROXY_DATABASE_URL"])
    await store.open()
    try:
        row = await store.db.fetchone("SELECT amount_nanos FROM holds WHERE hold_id = ?",
                                      region_hold_id("default", payer))
        return int(row[0]) if row else 0
    finally:
        await store.close()
