"""Who pays and how much: wallets, customers, meters, reservations and 402s."""
from __future__ import annotations

from decimal import Decimal

import httpx2 as httpx
import pytest

from .billing_helpers import customer, customer_balance, h, meter, settled, token, wallet
from .gateway_process import GatewayProcess, base_env

CHAT_PATH = "/providers/openai/v1/chat/completions"
CHAT = {"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]}


def send(gw, credential, body=None, path=CHAT_PATH):
    return httpx.post(gw.url + path, json=body or CHAT, headers=h(credential), timeout=10)


@pytest.fixture
def merchant(gateway):
    """A fresh merchant with $10 in its wallet: (gateway, secret key)."""
    m = gateway.create_merchant("billing", "10")
    return gateway, m["secret_key"]


def test_the_merchant_wallet_pays_provider_cost_at_zero_markup(merchant):
    gw, key = merchant
    before = wallet(gw, key)
    rids = [send(gw, key).headers["x-lava-request-id"] for _ in range(3)]
    records = settled(gw, key, rids)
    spent = sum(Decimal(r["cost"]) for r in records)
    assert spent > 0
    assert all(r["payer"] == "merchant" and r["charge"]["amount"] == "0" for r in records)
    assert before - wallet(gw, key) == spent


def test_a_meter_slug_alone_charges_the_merchant_and_tracks_the_meter(merchant):
    gw, key = merchant
    m = meter(gw, key, "track-only", "fixed", "tokens_1m", [(0, "1.00")])
    before = wallet(gw, key)
    [rec] = settled(gw, key, [send(gw, token(key, meter_slug="track-only")).headers["x-lava-request-id"]])
    assert rec["payer"] == "merchant" and rec["meter_id"] == m["meter_id"]
    assert before - wallet(gw, key) == Decimal(rec["cost"])


def test_a_customer_pays_the_meters_fixed_price_per_million_tokens(merchant):
    gw, key = merchant
    meter(gw, key, "per-token", "fixed", "tokens_1m", [(0, "3.00")])
    cus = customer(gw, key, "1.00")
    wallet_before = wallet(gw, key)
    r = send(gw, token(key, customer_id=cus, meter_slug="per-token"))
    assert r.status_code == 200
    [rec] = settled(gw, key, [r.headers["x-lava-request-id"]])
    tokens = rec["model_usage"]["total_tokens"]
    assert rec["payer"] == "customer" and rec["customer_id"] == cus
    assert Decimal(rec["charge"]["amount"]) == Decimal(tokens) * Decimal("3.00") / 1_000_000
    assert rec["charge"]["rate_type"] == "fixed"
    assert rec["charge"]["breakdown"][0]["tier"] == {"start": 0, "rate": "3.00", "type": "tokens_1m"}
    assert customer_balance(gw, key, cus) == Decimal("1.00") - Decimal(rec["charge"]["amount"])
    # the customer paid the merchant the meter's price; the merchant paid the operator the provider cost
    assert wallet(gw, key) == wallet_before + Decimal(rec["charge"]["amount"]) - Decimal(rec["cost"])


def test_a_percentage_meter_is_provider_cost_plus_its_markup(merchant):
    gw, key = merchant
    meter(gw, key, "markup", "percentage", "tokens_1m", [(0, "20")])
    cus = customer(gw, key, "1.00")
    [rec] = settled(gw, key, [send(gw, token(key, customer_id=cus, meter_slug="markup")).headers["x-lava-request-id"]])
    assert Decimal(rec["charge"]["amount"]) == Decimal(rec["cost"]) * Decimal("1.2")


def test_a_requests_meter_uses_volume_tiers(merchant):
    gw, key = merchant
    meter(gw, key, "per-call", "fixed", "requests", [(0, "0.01"), (2, "0.005")])
    cus = customer(gw, key, "1.00")
    t = token(key, customer_id=cus, meter_slug="per-call")
    rids = []
    for _ in range(3):
        rids.append(send(gw, t).headers["x-lava-request-id"])
        settled(gw, key, rids[-1:])  # one at a time, so each sees the volume before it
    charges = [Decimal(r["charge"]["amount"]) for r in settled(gw, key, rids)]
    assert charges == [Decimal("0.01"), Decimal("0.01"), Decimal("0.005")]
    assert customer_balance(gw, key, cus) == Decimal("0.975")


def test_disable_billing_tracks_the_customer_and_the_merchant_pays_the_provider_cost(merchant):
    gw, key = merchant
    meter(gw, key, "free", "fixed", "requests", [(0, "1.00")])
    cus = customer(gw, key, "0")
    wallet_before = wallet(gw, key)
    r = send(gw, token(key, customer_id=cus, meter_slug="free", disable_billing=True))
    assert r.status_code == 200
    [rec] = settled(gw, key, [r.headers["x-lava-request-id"]])
    assert rec["customer_id"] == cus and rec["payer"] == "none" and rec["charge"]["amount"] == "0"
    assert Decimal(rec["cost"]) > 0
    assert customer_balance(gw, key, cus) == 0 and wallet(gw, key) == wallet_before - Decimal(rec["cost"])


def test_a_customer_who_cannot_cover_the_reservation_gets_402_and_nothing_is_sent(merchant, fake):
    gw, key = merchant
    meter(gw, key, "pricey", "fixed", "requests", [(0, "0.50")])
    cus = customer(gw, key, "0.40")
    fake.clear()
    r = send(gw, token(key, customer_id=cus, meter_slug="pricey"))
    assert r.status_code == 402 and r.json()["error"]["type"] == "insufficient_balance"
    assert fake.received == []
    assert customer_balance(gw, key, cus) == Decimal("0.40")


def test_an_empty_wallet_gets_402(gateway, fake):
    m = gateway.create_merchant("broke", "0")
    fake.clear()
    r = send(gateway, m["secret_key"])
    assert r.status_code == 402 and "insufficient balance" in r.json()["error"]["message"]
    assert fake.received == []


def test_a_failed_request_releases_its_reservation(merchant):
    gw, key = merchant
    meter(gw, key, "one-call", "fixed", "requests", [(0, "0.30")])
    cus = customer(gw, key, "0.40")  # covers one reservation of $0.30, not two
    t = token(key, customer_id=cus, meter_slug="one-call")
    failed = send(gw, t, {**CHAT, "model": "fake-reset"})
    assert failed.status_code == 502
    [rec] = settled(gw, key, [failed.headers["x-lava-request-id"]])
    assert rec["charge"]["amount"] == "0" and rec["status"] == "error"
    ok = send(gw, t)  # the failed request's $0.30 is free again
    assert ok.status_code == 200
    settled(gw, key, [ok.headers["x-lava-request-id"]])
    assert customer_balance(gw, key, cus) == Decimal("0.10")


UNKNOWN = [("an unknown meter", {"meter_slug": "nope"}),
           ("an unknown customer", {"customer_id": "cus_nope", "meter_slug": "known"}),
           ("an unknown customer without a meter", {"customer_id": "cus_nope"})]


@pytest.mark.parametrize("fields", [u[1] for u in UNKNOWN], ids=[u[0] for u in UNKNOWN])
def test_unknown_billing_targets_are_400(merchant, fake, fields):
    gw, key = merchant
    meter(gw, key, "known", "fixed", "requests", [(0, "0")])
    fake.clear()
    r = send(gw, token(key, **fields))
    assert r.status_code == 400 and r.json()["error"]["message"].split(":")[0] in ("meter_slug", "customer_id")
    assert fake.received == []


def test_unmanaged_requests_charge_the_service_fee_not_provider_cost(fake, tmp_path):
    gw = GatewayProcess(base_env(tmp_path / "g.db", fake.url, {"EDGE_PROXY_BYOK_FEE": "0.002"})).start(tmp_path)
    try:
        key = gw.secret_key
        before = wallet(gw, key)
        r = send(gw, token(key, provider_key="sk-own"))
        [rec] = settled(gw, key, [r.headers["x-lava-request-id"]])
        assert rec["provider_key_type"] == "unmanaged" and Decimal(rec["cost"]) > 0
        assert before - wallet(gw, key) == Decimal("0.002")
    finally:
        gw.stop()


def test_post_request_reporting_bills_the_customer(merchant):
    gw, key = merchant
    meter(gw, key, "reported", "fixed", "tokens_1m", [(0, "2.00")])
    cus = customer(gw, key, "1.00")
    body = {"request_id": "ext-1", "customer_id": cus, "meter_slug": "reported", "input_tokens": 1000,
            "output_tokens": 500}
    assert httpx.post(f"{gw.url}/v1/requests", json=body, headers=h(key)).status_code == 201
    assert httpx.post(f"{gw.url}/v1/requests", json=body, headers=h(key)).status_code == 200
    assert customer_balance(gw, key, cus) == Decimal("1.00") - Decimal("0.003")  # charged once
