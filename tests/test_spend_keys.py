"""Spend keys on the request path: scopes, expiry, revocation and rotation, and rate, request and spend limits whose
counters are shared by every gateway process (SQLite when embedded, Redis when configured).

Each mode runs two real gateways on one SQLite file (and, in Redis mode, one private redis-server), with the
principal cache off so that revocation and rotation show at once.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from decimal import Decimal

import httpx2 as httpx
import pytest

from edge_proxy.billing import spend_key_store
from edge_proxy.billing.charging import max_provider_cost
from edge_proxy.metering.pricing import PriceTable

from .billing_helpers import h, settled, wallet
from .gateway_process import ROOT, base_env, start_pair
from .inprocess import InProcess
from .redis_server import RedisServer

CHAT_PATH = "/providers/openai/v1/chat/completions"
MODEL = "gpt-4o-mini"
SLOW = "gpt-4o-mini+fake-slow-head"  # the fake waits fake.slow_seconds before answering; priced like MODEL
PRICES = (ROOT / "tests" / "fixtures" / "prices_override.toml").read_text() + f"""
[openai."{SLOW}"]
input = "0.15"
output = "0.60"
"""


def chat(model: str = MODEL) -> bytes:
    return json.dumps({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]},
                      separators=(",", ":")).encode()


def send(gw, credential: str, body: bytes | None = None, header: str = "authorization") -> httpx.Response:
    value = f"Bearer {credential}" if header == "authorization" else credential
    return httpx.post(gw.url + CHAT_PATH, content=body or chat(), timeout=10,
                      headers={header: value, "content-type": "application/json"})


def new_key(gw, **policy) -> dict:
    r = httpx.post(f"{gw.url}/v1/spend_keys", json={"name": "test", **policy}, headers=h(gw.secret_key), timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def show(gw, k: dict) -> dict:
    return httpx.get(f"{gw.url}/v1/spend_keys/{k['spend_key_id']}", headers=h(gw.secret_key), timeout=10).json()


async def _burst(urls: list[str], credential: str, n: int, body: bytes) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:
        async def one(i: int):
            return await client.post(urls[i % len(urls)] + CHAT_PATH, content=body,
                                     headers={"Authorization": f"Bearer {credential}",
                                              "content-type": "application/json"})
        return await asyncio.gather(*(one(i) for i in range(n)))


def burst(pair, credential: str, n: int, body: bytes | None = None) -> list[int]:
    return sorted(r.status_code for r in asyncio.run(_burst([g.url for g in pair], credential, n, body or chat())))


# -- the gateways ----------------------------------------------------------------------------------------------
def _pair(fake, tmp_path, extra: dict[str, str]):
    (tmp_path / "prices.toml").write_text(PRICES)
    env = base_env(tmp_path / "shared.db", fake.url, {"EDGE_PROXY_PRINCIPAL_CACHE_TTL": "0",
                                                      "EDGE_PROXY_PRICES_FILE": str(tmp_path / "prices.toml"), **extra})
    return start_pair(env, tmp_path)


@pytest.fixture(scope="module")
def sqlite_pair(fake, tmp_path_factory):
    pair = _pair(fake, tmp_path_factory.mktemp("spend-sqlite"), {})
    yield pair
    for g in pair:
        g.stop()


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_pair(fake, tmp_path_factory, redis_server):
    pair = _pair(fake, tmp_path_factory.mktemp("spend-redis"), {"EDGE_PROXY_REDIS_URL": redis_server.url})
    yield pair
    for g in pair:
        g.stop()


@pytest.fixture(params=["SQLite", "Redis"], ids=["counters in SQLite", "counters in Redis"])
def pair(request):
    return request.getfixturevalue("sqlite_pair" if request.param == "SQLite" else "redis_pair")


@pytest.fixture
def gw(sqlite_pair):
    return sqlite_pair[0]


# -- policy: one request after another -------------------------------------------------------------------------
# (id, policy, [(model, expected status)], whether the refusal carries Retry-After)
CASES = [
    ("an allowed model and provider are forwarded",
     {"allowed_models": [MODEL], "allowed_providers": ["openai"]}, [(MODEL, 200)], None),
    ("a model the key does not allow is 403 and nothing is sent upstream",
     {"allowed_models": ["gpt-4o"]}, [(MODEL, 403)], None),
    ("a model allowed by its provider-qualified name is forwarded, as GET /v1/models lists it",
     {"allowed_models": [f"openai/{MODEL}"]}, [(MODEL, 200)], None),
    ("a model allowed under another provider's qualified name is 403",
     {"allowed_models": [f"anthropic/{MODEL}"]}, [(MODEL, 403)], None),
    ("a provider the key does not allow is 403 and nothing is sent upstream",
     {"allowed_providers": ["anthropic"]}, [(MODEL, 403)], None),
    ("a paused key is 401",
     {"status": "paused"}, [(MODEL, 401)], None),
    ("a rate limit of 2 rpm with burst 2 refuses the third request in a row with 429 and Retry-After",
     {"rate_limit": {"rpm": 2, "burst": 2}}, [(MODEL, 200), (MODEL, 200), (MODEL, 429)], True),
    ("a daily request limit of 3 refuses the fourth request with 429 and Retry-After",
     {"request_limit": {"count": 3, "cycle": "daily"}}, [(MODEL, 200)] * 3 + [(MODEL, 429)], True),
    ("a total request limit refuses with 429 and no Retry-After",
     {"request_limit": {"count": 1, "cycle": "total"}}, [(MODEL, 200), (MODEL, 429)], False),
    ("a refused request is not counted against the request limit",
     {"request_limit": {"count": 1, "cycle": "monthly"}, "allowed_models": [MODEL]},
     [("gpt-4o", 403), (MODEL, 200), (MODEL, 429)], True),
    ("a spend limit of zero refuses every request with 402",
     {"spend_limit": {"amount": "0", "cycle": "weekly"}}, [(MODEL, 402)], None),
]


@pytest.mark.parametrize("policy, steps, retry_after", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_spend_keys_policy_is_enforced_before_anything_is_sent(pair, fake, policy, steps, retry_after):
    gw = pair[0]
    k = new_key(gw, **policy)
    for model, status in steps:
        fake.clear()
        r = send(gw, k["key"], chat(model))
        assert r.status_code == status, r.text
        assert len(fake.received) == (status == 200)
        if status == 429:
            assert r.json()["error"]["type"] == "rate_limit_exceeded"
            if retry_after:
                assert 0 < int(r.headers["retry-after"]) <= 31 * 86400
            else:
                assert "retry-after" not in r.headers
        if status == 402:
            assert r.json()["error"]["type"] == "spend_limit_reached"
            assert "spend limit reached" in r.json()["error"]["message"]


@pytest.mark.parametrize("header", ["authorization", "x-api-key", "x-goog-api-key"])
def test_a_spend_key_works_as_a_drop_in_provider_key(gw, fake, header):
    k = new_key(gw, allowed_models=[MODEL])
    fake.clear()
    r = send(gw, k["key"], header=header)
    assert r.status_code == 200, r.text
    assert fake.last().header("authorization") == "Bearer sk-managed-openai"  # the managed key, never the spend key


def test_an_expired_key_is_401(gw, fake):
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.2)
    k = new_key(gw, expires_at=expires.isoformat())
    assert send(gw, k["key"]).status_code == 200
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.05)
    fake.clear()
    r = send(gw, k["key"])
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    assert fake.received == []


def test_a_revoked_key_is_401(gw):
    k = new_key(gw)
    assert send(gw, k["key"]).status_code == 200
    assert httpx.delete(f"{gw.url}/v1/spend_keys/{k['spend_key_id']}", headers=h(gw.secret_key)).status_code == 200
    assert send(gw, k["key"]).status_code == 401


def test_a_rotated_keys_old_value_is_401_and_the_new_one_works(gw):
    k = new_key(gw, request_limit={"count": 3, "cycle": "daily"})
    assert send(gw, k["key"]).status_code == 200
    r = httpx.post(f"{gw.url}/v1/spend_keys/{k['spend_key_id']}/rotate", headers=h(gw.secret_key), timeout=10)
    new = r.json()["key"]
    assert send(gw, k["key"]).status_code == 401
    assert [send(gw, new).status_code for _ in range(3)] == [200, 200, 429]  # the counters stay with the key
    assert show(gw, k)["current_requests"] == 3


RACES = [  # (id, what lands between a change to the key and the read of its answer, what the change is)
    ("rotated, then revoked before the answer is read", spend_key_store.revoke, "POST", "/rotate", None),
    ("rotated twice at once", spend_key_store.rotate, "POST", "/rotate", None),
    ("updated, then revoked before the answer is read", spend_key_store.revoke, "PUT", "", {"name": "renamed"}),
]


@pytest.mark.parametrize("intruder,method,suffix,body", [c[1:] for c in RACES], ids=[c[0] for c in RACES])
def test_a_change_racing_another_is_answered_whole_or_404_never_500(tmp_path, monkeypatch, intruder, method, suffix,
                                                                     body):
    """The answer to a rotate or an update is the row its own transaction wrote: another change landing just after
    it cannot turn the answer into a 500 (a revoked key read as None) or pair one key with another's preview."""
    async def scenario():
        async with InProcess(tmp_path, None) as gw:
            created = await gw.call("POST", "/v1/spend_keys", body=json.dumps({"name": "k"}).encode(),
                                    key=gw.secret_key)
            key_id = created.json()["spend_key_id"]
            real_get, intruded = spend_key_store.get, []

            async def get_after_an_intruder(db, merchant_id, spend_key_id):
                if not intruded:  # the other change lands between this change's commit and its read
                    intruded.append(await intruder(db, merchant_id, spend_key_id))
                return await real_get(db, merchant_id, spend_key_id)

            monkeypatch.setattr(spend_key_store, "get", get_after_an_intruder)
            answer = await gw.call(method, f"/v1/spend_keys/{key_id}{suffix}",
                                   body=None if body is None else json.dumps(body).encode(), key=gw.secret_key)
            return answer

    answer = asyncio.run(scenario())
    assert answer.status in (200, 404), answer.body
    if answer.status == 200 and "key" in answer.json():
        secret = answer.json()["key"]
        assert answer.json()["key_preview"] == secret[:len("ep_spk_") + 4] + "..." + secret[-4:]


def test_changing_a_limits_cycle_keeps_what_was_counted(gw):
    k = new_key(gw, request_limit={"count": 2, "cycle": "daily"})
    assert [send(gw, k["key"]).status_code for _ in range(2)] == [200, 200]
    r = httpx.put(f"{gw.url}/v1/spend_keys/{k['spend_key_id']}", headers=h(gw.secret_key), timeout=10,
                  json={"request_limit": {"count": 3, "cycle": "monthly"}})
    assert r.status_code == 200 and r.json()["current_requests"] == 2
    assert [send(gw, k["key"]).status_code for _ in range(2)] == [200, 429]


# -- spend limits: billed spend, reservations in flight ------------------------------------------------------------
def reservation_of(body: bytes) -> int:
    """What a spend key reserves for this request: the most it can cost (billing/charging.py)."""
    return max_provider_cost(PriceTable.load().lookup("openai", MODEL), len(body), 100)


def _costs(gw) -> tuple[int, int]:
    """(the reservation of one chat(), its billed cost), in nanos."""
    k = new_key(gw)
    r = send(gw, k["key"])
    [rec] = settled(gw, gw.secret_key, [r.headers["x-lava-request-id"]])
    cost = int(Decimal(rec["cost"]) * 10**9)
    reservation = reservation_of(chat())
    assert 0 < cost < reservation / 2
    return reservation, cost


def test_a_spend_limit_counts_only_billed_spend_and_refuses_with_402_once_used_up(pair, fake):
    gw = pair[0]
    reservation, cost = _costs(gw)
    # room for one reservation on top of 2.5 billed requests: the 3rd is admitted only if the reservations of the
    # first two were dropped when they were billed, and the 4th is refused
    limit = reservation + 2 * cost + cost // 2
    k = new_key(gw, spend_limit={"amount": format(Decimal(limit) / 10**9, "f"), "cycle": "daily"})
    before = wallet(gw, gw.secret_key)
    for _ in range(3):
        r = send(gw, k["key"])
        assert r.status_code == 200, r.text
        settled(gw, gw.secret_key, [r.headers["x-lava-request-id"]])
    fake.clear()
    r = send(gw, k["key"])
    assert r.status_code == 402 and r.json()["error"]["type"] == "spend_limit_reached", r.text
    assert fake.received == []
    got = show(gw, k)
    assert Decimal(got["current_spend"]) == Decimal(got["total_spend"]) == Decimal(3 * cost) / 10**9
    assert got["total_requests"] == 3 and got["last_used_at"] is not None
    assert before - wallet(gw, gw.secret_key) == Decimal(3 * cost) / 10**9  # spent from the merchant wallet


# -- shared by two gateway processes ---------------------------------------------------------------------------
def test_counters_are_shared_by_two_gateway_processes(pair, fake):
    """12 requests at once, split over both gateways: exactly as many as the limit allows get through."""
    rate = new_key(pair[0], rate_limit={"rpm": 1, "burst": 4})
    assert burst(pair, rate["key"], 12) == [200] * 4 + [429] * 8
    requests = new_key(pair[0], request_limit={"count": 5, "cycle": "monthly"})
    assert burst(pair, requests["key"], 12) == [200] * 5 + [429] * 7
    assert show(pair[1], requests)["current_requests"] == 5
    # reservations in flight count: room for two slow requests' maximum cost, not three
    slow = chat(SLOW)
    spend = new_key(pair[0], spend_limit={"amount": format(Decimal(reservation_of(slow) * 5 // 2) / 10**9, "f"),
                                          "cycle": "total"})
    fake.slow_seconds = 1.0
    try:
        assert burst(pair, spend["key"], 12, slow) == [200] * 2 + [402] * 10
    finally:
        fake.slow_seconds = type(fake).slow_seconds


def test_a_key_with_limits_is_503_when_redis_is_down_and_never_hangs(redis_pair, redis_server, fake):
    gw = redis_pair[0]
    k = new_key(gw, request_limit={"count": 100, "cycle": "daily"})
    assert send(gw, k["key"]).status_code == 200
    redis_server.freeze()
    try:
        fake.clear()
        r = send(gw, k["key"])  # a hang would be httpx's ReadTimeout (timeout=10), not an answer
        assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable", r.text
        assert fake.received == []
    finally:
        redis_server.thaw()
