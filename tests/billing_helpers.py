"""Small helpers the billing tests share: make customers and meters over the REST API, read balances."""
from __future__ import annotations

import time
from decimal import Decimal

import httpx2 as httpx

from edge_proxy.forward_token import encode_forward_token


def h(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def customer(gw, key: str, balance: str, **extra) -> str:
    r = httpx.post(f"{gw.url}/v1/customers", json={"name": "Ada Lovelace", "balance": balance, **extra},
                   headers=h(key), timeout=10)
    assert r.status_code in (200, 201), r.text
    return r.json()["customer_id"]


def meter(gw, key: str, slug: str, rate_type: str, tier_type: str, tiers: list[tuple[int, str]]) -> dict:
    r = httpx.post(f"{gw.url}/v1/meters", json={
        "name": slug, "meter_slug": slug, "rate_type": rate_type, "tier_type": tier_type,
        "tiers": [{"start": str(s), "rate": rate} for s, rate in tiers]}, headers=h(key), timeout=10)
    assert r.status_code in (200, 201), r.text
    return r.json()


def customer_balance(gw, key: str, customer_id: str) -> Decimal:
    r = httpx.get(f"{gw.url}/v1/customers/{customer_id}", headers=h(key), timeout=10)
    return Decimal(r.json()["balance"])


def wallet(gw, key: str) -> Decimal:
    return Decimal(httpx.get(f"{gw.url}/v1/wallet", headers=h(key), timeout=10).json()["balance"])


def token(key: str, **fields) -> str:
    return encode_forward_token(key, **fields)


def settled(gw, key: str, request_ids: list[str], timeout: float = 10.0) -> list[dict]:
    """The log records of these requests, once all are written (billing happens in the same transaction)."""
    deadline = time.monotonic() + timeout
    out = []
    for rid in request_ids:
        while True:
            r = httpx.get(f"{gw.url}/v1/requests/{rid}", headers=h(key), timeout=10)
            if r.status_code == 200:
                out.append(r.json())
                break
            assert time.monotonic() < deadline, f"{rid} was never logged"
            time.sleep(0.05)
    return out
