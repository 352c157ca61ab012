"""Autopay: a customer falling below its threshold fires one signed event to the merchant's webhooks."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import httpx2 as httpx
import pytest

from .billing_helpers import customer, h, meter, settled, token
from .gateway_process import GatewayProcess, base_env
from .webhook_receivers import ThreadedReceiver

CHAT = {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


def test_autopay_fires_once_signed_retried_and_rearms_after_a_credit(fake, tmp_path):
    receiver = ThreadedReceiver(statuses=(500, 204))   # the first attempt fails
    gw = GatewayProcess(base_env(tmp_path / "g.db", fake.url, {
        "EDGE_PROXY_WEBHOOK_RETRY_SECONDS": "0.2",
        # the receiver is on loopback over http: only the operator's leave lets a webhook reach it
        "EDGE_PROXY_WEBHOOK_ALLOW_HTTP": "1", "EDGE_PROXY_WEBHOOK_ALLOW": f"127.0.0.1:{receiver.port}",
    })).start(tmp_path)
    try:
        key = gw.secret_key
        hook = httpx.post(f"{gw.url}/v1/webhooks", json={"name": "billing", "url": receiver.url}, headers=h(key)).json()
        meter(gw, key, "per-call", "fixed", "requests", [(0, "0.10")])
        cus = customer(gw, key, "0.50", autopay={"threshold": "0.25", "amount": "1.00"})
        t = token(key, customer_id=cus, meter_slug="per-call")
        rids = [httpx.post(gw.url + "/providers/openai/v1/chat/completions", json=CHAT, headers=h(t)).headers[
            "x-lava-request-id"] for _ in range(4)]  # 0.50 -> 0.10: crosses 0.25 once
        settled(gw, key, rids)
        receiver.wait(1)
        time.sleep(1.0)
        assert len(receiver.deliveries) == 1 and receiver.attempts == 2  # one event; the first attempt got a 500
        headers, body = receiver.deliveries[0]
        event = json.loads(body)
        assert event["type"] == "customer.autopay" and headers["x-edge-proxy-event"] == "customer.autopay"
        balance = event["data"].pop("balance")  # after the batch that crossed the threshold: 0.2 or lower
        assert balance in ("0.2", "0.1")
        assert event["data"] == {"customer_id": cus, "autopay_threshold": "0.25", "autopay_amount": "1"}
        stamp, mac = headers["x-edge-proxy-signature"].split(",")
        ts = stamp.removeprefix("t=")
        want = hmac.new(hook["webhook_secret"].encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        assert mac == "v1=" + want
        # a credit back above the threshold re-arms it; the next fall fires again
        httpx.post(f"{gw.url}/v1/customers/{cus}/credit", json={"amount": "1.00"}, headers=h(key))
        rids = [httpx.post(gw.url + "/providers/openai/v1/chat/completions", json=CHAT, headers=h(t)).headers[
            "x-lava-request-id"] for _ in range(9)]
        settled(gw, key, rids)
        receiver.wait(2)
    finally:
        gw.stop()
        receiver.stop()


def _rearm_world(tmp_path, dialect: str):
    """A customer under its autopay threshold whose event has fired (disarmed), and a way to see a next one."""
    from edge_proxy.billing import accounts
    from edge_proxy.billing.settle import disarm_autopay
    from edge_proxy.store import open_store

    from . import pg

    async def scenario(change: dict) -> list:
        url = await pg.create_database() if dialect == "postgres" else f"sqlite:///{tmp_path / 'rearm.db'}"
        store = open_store(url)
        await store.open()
        try:
            merchant, _ = await store.create_merchant("acme", 0)
            mid = merchant.merchant_id
            cus = await accounts.create_customer(store.db, mid, {"autopay_threshold_nanos": 250_000_000,
                                                                 "autopay_amount_nanos": 1_000_000_000})
            await store.db.execute("UPDATE customers SET balance_nanos = 100000000 WHERE customer_id = ?",
                                   cus.customer_id)
            async with store.db.transaction() as tx:
                assert len(await disarm_autopay(tx, {cus.customer_id})) == 1   # the event that fired
            await accounts.update_customer(store.db, mid, cus.customer_id, change)
            async with store.db.transaction() as tx:   # the next charge, balance still under the threshold
                return await disarm_autopay(tx, {cus.customer_id})
        finally:
            await store.close()
            if dialect == "postgres":
                await pg.drop_database(url)
    return scenario


@pytest.mark.parametrize("change, fires_again", [
    pytest.param({"name": "Ada", "autopay_threshold_nanos": 250_000_000, "autopay_amount_nanos": 1_000_000_000},
                 False, id="a PATCH that repeats the same autopay does not owe a second top-up event"),
    pytest.param({"name": "Ada"}, False, id="a PATCH without autopay leaves it disarmed"),
    pytest.param({"autopay_threshold_nanos": 250_000_000, "autopay_amount_nanos": 2_000_000_000}, True,
                 id="a new autopay amount re-arms it"),
    pytest.param({"autopay_threshold_nanos": 500_000_000, "autopay_amount_nanos": 1_000_000_000}, True,
                 id="a new autopay threshold re-arms it"),
])
@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_only_a_changed_autopay_rearms_a_customer_still_under_its_threshold(tmp_path, dialect, change, fires_again):
    fired = asyncio.run(_rearm_world(tmp_path, dialect)(change))
    assert bool(fired) == fires_again
