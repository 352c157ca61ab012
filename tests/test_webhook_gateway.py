"""Webhooks through running gateways: an event is owed in the database, delivered only where the operator's
policy allows (checked again at delivery, whatever the table holds), readable at
`GET /v1/webhooks/{id}/deliveries`, and still delivered when the gateway that owed it stopped first."""
from __future__ import annotations

import asyncio
import json
import time

import httpx2 as httpx

from edge_proxy.billing import accounts
from edge_proxy.store import open_store

from .billing_helpers import customer, h, meter, settled, token
from .gateway_process import GatewayProcess, base_env
from .webhook_receivers import ThreadedCanary, ThreadedReceiver

CHAT = {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


def gateway_env(tmp_path, fake, receiver: ThreadedReceiver, **extra: str) -> dict[str, str]:
    return base_env(tmp_path / "g.db", fake.url, {
        "EDGE_PROXY_WEBHOOK_RETRY_SECONDS": "0.2", "EDGE_PROXY_WEBHOOK_ALLOW_HTTP": "1",
        "EDGE_PROXY_WEBHOOK_ALLOW": f"127.0.0.1:{receiver.port}", **extra})


def fire_autopay(gw: GatewayProcess) -> None:
    """Make a customer fall below its autopay threshold once, which owes one customer.autopay event."""
    key = gw.secret_key
    meter(gw, key, "per-call", "fixed", "requests", [(0, "0.10")])
    cus = customer(gw, key, "0.30", autopay={"threshold": "0.25", "amount": "1.00"})
    t = token(key, customer_id=cus, meter_slug="per-call")
    rids = [httpx.post(gw.url + "/providers/openai/v1/chat/completions", json=CHAT, headers=h(t), timeout=10
                       ).headers["x-lava-request-id"] for _ in range(1)]
    settled(gw, key, rids)


def deliveries(gw: GatewayProcess, webhook_id: str) -> list[dict]:
    r = httpx.get(f"{gw.url}/v1/webhooks/{webhook_id}/deliveries", headers=h(gw.secret_key), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def wait_for(condition, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)


def insert_webhook(db_path, merchant_id: str, url: str) -> str:
    """A webhook row written straight into the table, as one registered before the checks existed would be."""
    async def go():
        store = open_store(f"sqlite:///{db_path}")
        await store.open()
        try:
            return (await accounts.create_webhook(store.db, merchant_id, "old", url, "whsec_old")).webhook_id
        finally:
            await store.close()
    return asyncio.run(go())


def test_a_delivery_is_signed_logged_and_readable_while_inside_urls_in_the_table_reach_nothing(fake, tmp_path):
    receiver, canary = ThreadedReceiver(), ThreadedCanary()
    gw = GatewayProcess(gateway_env(tmp_path, fake, receiver)).start(tmp_path)
    try:
        good = httpx.post(f"{gw.url}/v1/webhooks", json={"name": "billing", "url": receiver.url},
                          headers=h(gw.secret_key), timeout=10).json()
        bad = [insert_webhook(tmp_path / "g.db", gw.merchant_id, url) for url in (
            f"http://127.0.0.1:{canary.port}/", f"http://2130706433:{canary.port}/",
            f"http://0x7f000001:{canary.port}/", f"http://0177.0.0.1:{canary.port}/",
            f"http://127.1:{canary.port}/", f"http://[::ffff:127.0.0.1]:{canary.port}/",
            f"http://localhost:{canary.port}/", f"http://[64:ff9b::7f00:1]:{canary.port}/")]
        fire_autopay(gw)
        receiver.wait(1)
        (done,) = wait_for(lambda: [d for d in deliveries(gw, good["webhook_id"]) if d["status"] == "delivered"],
                           "the delivery to the allowed receiver")
        headers, body = receiver.deliveries[0]
        assert json.loads(body)["id"] == headers["x-edge-proxy-event-id"] == done["event_id"]
        assert done["attempts"] == 1 and done["last_status"] == 204 and done["event_type"] == "customer.autopay"
        for webhook_id in bad:
            (owed,) = wait_for(lambda w=webhook_id: [d for d in deliveries(gw, w) if d["last_error"]],
                               "a refused attempt")
            assert owed["status"] == "pending" and owed["last_error"].startswith("refused:"), owed
        assert canary.connections == 0
        other = gw.create_merchant("other", "1")["secret_key"]   # another merchant cannot read them
        r = httpx.get(f"{gw.url}/v1/webhooks/{good['webhook_id']}/deliveries", headers=h(other), timeout=10)
        assert r.status_code == 404
    finally:
        gw.stop()
        receiver.stop()
        canary.stop()


def test_a_delivery_owed_when_the_gateway_stops_is_delivered_by_the_next_one(fake, tmp_path):
    receiver = ThreadedReceiver(statuses=(500,))   # down while the first gateway runs
    first = GatewayProcess(gateway_env(tmp_path, fake, receiver, EDGE_PROXY_WEBHOOK_RETRY_SECONDS="4")
                           ).start(tmp_path)
    try:
        hook = httpx.post(f"{first.url}/v1/webhooks", json={"name": "billing", "url": receiver.url},
                          headers=h(first.secret_key), timeout=10).json()
        fire_autopay(first)
        wait_for(lambda: receiver.attempts >= 1, "the first attempt")
        (owed,) = deliveries(first, hook["webhook_id"])
        assert owed["status"] == "pending" and owed["last_error"] == "HTTP 500"
    finally:
        first.stop()
    receiver.statuses = [204]   # the receiver is back; a new gateway starts on the same database
    second = GatewayProcess(gateway_env(tmp_path, fake, receiver)).start(tmp_path)
    second.secret_key, second.merchant_id = first.secret_key, first.merchant_id   # start() made a merchant too
    try:
        assert wait_for(lambda: [d for d in deliveries(second, hook["webhook_id"]) if d["status"] == "delivered"],
                        "the owed delivery, after the restart", timeout=20)
        assert [json.loads(b)["id"] for _, b in receiver.deliveries] == [owed["event_id"]]
    finally:
        second.stop()
        receiver.stop()

