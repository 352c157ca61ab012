"""Autopay: a customer falling below its threshold fires one signed event to the merchant's webhooks."""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx2 as httpx

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
