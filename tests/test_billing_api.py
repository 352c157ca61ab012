"""The billing REST resources (customers, meters, spend keys, secret keys, webhooks, wallet, admin) against a real
gateway: Lava's shapes, paging, merchant isolation, validation, credits, and the admin token."""
from __future__ import annotations

import asyncio
import json

import httpx2 as httpx
import pytest

from edge_proxy.billing import accounts, spend_key_store
from edge_proxy.store import hash_secret, open_store

from .gateway_process import GatewayProcess, base_env

CUSTOMER_KEYS = {"customer_id", "reference_id", "contact", "subscription", "metadata", "created_at", "balance",
                 "autopay"}
METER_KEYS = {"meter_id", "meter_slug", "name", "rate_type", "tiers", "created_at"}
SPEND_KEY_KEYS = {"spend_key_id", "key_preview", "name", "status", "request_shape", "wallet_id", "allowed_models",
                  "allowed_providers", "spend_limit", "current_spend", "total_spend", "request_limit",
                  "current_requests", "total_requests", "rate_limit", "expires_at", "last_used_at", "created_at"}
METER = {"name": "Chat tokens", "rate_type": "fixed", "tier_type": "tokens_1m", "tiers": [{"start": "0", "rate": "2"}]}

# resource -> (path, a valid create body, id field)
RESOURCES = {
    "customers": ("customers", {"name": "Ada"}, "customer_id"),
    "meters": ("meters", METER, "meter_id"),
    "spend keys": ("spend_keys", {"name": "ci"}, "spend_key_id"),
    "webhooks": ("webhooks", {"name": "hook", "url": "https://example.com/h"}, "webhook_id"),
}


def api(gateway, method: str, path: str, key: str | None = None, body=None) -> httpx.Response:
    return httpx.request(method, f"{gateway.url}/v1/{path}", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {key or gateway.secret_key}"})


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture
def key(gateway) -> str:
    """A fresh merchant's secret key, so lists and slugs start empty."""
    return gateway.create_merchant("billing-test", "10")["secret_key"]


def create(gateway, key, resource: str, **extra) -> dict:
    path, body, _ = RESOURCES[resource]
    if resource == "meters":
        extra.setdefault("meter_slug", f"m-{len(ok(api(gateway, 'GET', 'meters?limit=100', key))['data'])}")
    return ok(api(gateway, "POST", path, key, {**body, **extra}), 201)


# -- customers ---------------------------------------------------------------------------------------------------
def test_a_customer_is_created_in_lavas_shape_with_its_balance_and_autopay(gateway, key):
    body = {"reference_id": "u-1", "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 1234",
            "metadata": {"plan": "pro"}, "balance": "5.5", "autopay": {"threshold": "1", "amount": "10"}}
    c = ok(api(gateway, "POST", "customers", key, body), 201)
    assert set(c) == CUSTOMER_KEYS and c["customer_id"].startswith("cus_")
    assert c["contact"] == {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 1234",
                            "first_name": "Ada", "last_name": "Lovelace"}
    assert (c["reference_id"], c["metadata"], c["subscription"]) == ("u-1", {"plan": "pro"}, None)
    assert c["balance"] == "5.5" and c["autopay"] == {"threshold": "1", "amount": "10"}
    assert ok(api(gateway, "GET", f"customers/{c['customer_id']}", key)) == c


@pytest.mark.parametrize("name,first,last", [("Ada", "Ada", None), ("Ada King Lovelace", "Ada", "King Lovelace"),
                                             (None, None, None)], ids=["one word", "split on the first space", "none"])
def test_a_customers_name_splits_into_first_and_last_name(gateway, key, name, first, last):
    contact = ok(api(gateway, "POST", "customers", key, {"name": name}), 201)["contact"]
    assert (contact["first_name"], contact["last_name"]) == (first, last)


def test_patch_changes_only_the_fields_sent_and_null_clears_one(gateway, key):
    c = ok(api(gateway, "POST", "customers", key, {"name": "Ada", "email": "a@example.com",
                                                   "autopay": {"threshold": "1", "amount": "2"}}), 201)
    c2 = ok(api(gateway, "PATCH", f"customers/{c['customer_id']}", key,
                {"email": None, "reference_id": "r-9", "autopay": None, "unknown": 1}))
    assert c2["contact"]["name"] == "Ada" and c2["contact"]["email"] is None
    assert c2["reference_id"] == "r-9" and c2["autopay"] is None


def test_a_deleted_customer_is_gone(gateway, key):
    cid = ok(api(gateway, "POST", "customers", key, {}), 201)["customer_id"]
    assert ok(api(gateway, "DELETE", f"customers/{cid}", key)) == {"success": True}
    assert api(gateway, "GET", f"customers/{cid}", key).status_code == 404
    assert api(gateway, "DELETE", f"customers/{cid}", key).status_code == 404
    assert cid not in [c["customer_id"] for c in ok(api(gateway, "GET", "customers", key))["data"]]


def test_a_customer_has_no_subscription(gateway, key):
    cid = ok(api(gateway, "POST", "customers", key, {}), 201)["customer_id"]
    assert ok(api(gateway, "GET", f"customers/{cid}/subscription", key)) == {"subscription": None}


def test_credit_adds_to_a_customers_balance_exactly(gateway, key):
    cid = ok(api(gateway, "POST", "customers", key, {"balance": "0.1"}), 201)["customer_id"]
    assert ok(api(gateway, "POST", f"customers/{cid}/credit", key, {"amount": "0.2"}))["balance"] == "0.3"
    assert ok(api(gateway, "POST", f"customers/{cid}/credit", key, {"amount": "0.000000001"}))["balance"] == \
        "0.300000001"


# -- meters ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,slug", [("Chat tokens", "chat-tokens"), ("GPT-4o  Output!!", "gpt-4o-output"),
                                       ("  ünïcode 42 ", "n-code-42")])
def test_a_meters_slug_is_derived_from_its_name(gateway, key, name, slug):
    assert ok(api(gateway, "POST", "meters", key, {**METER, "name": name}), 201)["meter_slug"] == slug


def test_a_meter_has_lavas_shape_with_tiers_sorted_and_typed(gateway, key):
    m = ok(api(gateway, "POST", "meters", key, {**METER, "meter_slug": "tiered", "rate_type": "percentage",
                                                  "tiers": [{"start": "1000000", "rate": "10.50"},
                                                            {"start": 0, "rate": 20}]}), 201)
    assert METER_KEYS <= set(m) and m["meter_id"].startswith("mtr_") and m["meter_slug"] == "tiered"
    assert m["tiers"] == [{"start": 0, "rate": "20", "type": "tokens_1m"},
                          {"start": 1000000, "rate": "10.50", "type": "tokens_1m"}]
    assert ok(api(gateway, "GET", f"meters/{m['meter_id']}", key)) == m


def test_patch_renames_a_meter_and_replaces_its_tiers_but_never_its_slug(gateway, key):
    m = ok(api(gateway, "POST", "meters", key, METER), 201)
    m2 = ok(api(gateway, "PATCH", f"meters/{m['meter_id']}", key,
                {"name": "New", "tiers": [{"start": "0", "rate": "3"}], "meter_slug": "ignored"}))
    assert (m2["name"], m2["meter_slug"], m2["tiers"][0]["rate"]) == ("New", "chat-tokens", "3")


def test_a_slug_is_unique_per_merchant_until_its_meter_is_deleted(gateway, key):
    m = ok(api(gateway, "POST", "meters", key, METER), 201)
    taken = api(gateway, "POST", "meters", key, METER)
    assert taken.status_code == 400 and "meter_slug" in taken.json()["error"]["message"]
    ok(api(gateway, "POST", "meters", None, {**METER, "meter_slug": "chat-tokens-x"}), 201)  # another merchant
    assert ok(api(gateway, "DELETE", f"meters/{m['meter_id']}", key)) == {"id": m["meter_id"], "deleted": True}
    assert api(gateway, "GET", f"meters/{m['meter_id']}", key).status_code == 404
    ok(api(gateway, "POST", "meters", key, METER), 201)


# -- spend keys --------------------------------------------------------------------------------------------------
def test_a_spend_key_is_shown_once_and_stored_only_as_a_hash(gateway, key):
    body = {"name": "ci", "allowed_models": ["gpt-4o-mini"], "spend_limit": {"amount": "5", "cycle": "daily"},
            "request_limit": {"count": 100, "cycle": "monthly"}, "rate_limit": {"rpm": 60},
            "expires_at": "2099-01-01T00:00:00+02:00"}
    k = ok(api(gateway, "POST", "spend_keys", key, body), 201)
    assert set(k) == SPEND_KEY_KEYS | {"key"} and k["key"].startswith("ep_spk_")
    assert k["key_preview"] == k["key"][:11] + "..." + k["key"][-4:]
    assert (k["status"], k["request_shape"], k["allowed_providers"]) == ("active", "openai", None)
    assert k["spend_limit"] == {"amount": "5", "cycle": "daily"} and k["rate_limit"] == {"rpm": 60, "burst": None}
    assert k["request_limit"] == {"count": 100, "cycle": "monthly"}
    assert k["expires_at"] == "2098-12-31T22:00:00.000Z" and k["total_spend"] == "0" and k["total_requests"] == 0
    wallet = ok(api(gateway, "GET", "wallet", key))["merchant_id"]
    assert k["wallet_id"] == wallet
    got = ok(api(gateway, "GET", f"spend_keys/{k['spend_key_id']}", key))
    assert "key" not in got and got == {n: v for n, v in k.items() if n != "key"}

    found = run(lambda db: spend_key_store.find_by_hash(db, hash_secret(k["key"])), gateway)
    assert found.spend_key_id == k["spend_key_id"] and found.merchant_id == wallet
    assert found.spend_limit == spend_key_store.SpendLimit(5_000_000_000, "daily")
    assert found.allowed_models == ["gpt-4o-mini"] and found.rate_limit.rpm == 60 and not found.expired()


def test_put_updates_the_fields_sent_and_null_lifts_a_limit(gateway, key):
    k = ok(api(gateway, "POST", "spend_keys", key, {"name": "a", "spend_limit": {"amount": "1", "cycle": "total"}}),
           201)
    k2 = ok(api(gateway, "PUT", f"spend_keys/{k['spend_key_id']}", key,
                {"status": "paused", "spend_limit": None, "allowed_providers": ["openai", "openai"]}))
    assert (k2["name"], k2["status"], k2["spend_limit"], k2["allowed_providers"]) == ("a", "paused", None,
                                                                                       ["openai"])


def test_rotate_replaces_the_key_and_the_old_one_stops_matching(gateway, key):
    k = ok(api(gateway, "POST", "spend_keys", key, {"name": "r"}), 201)
    r = ok(api(gateway, "POST", f"spend_keys/{k['spend_key_id']}/rotate", key))
    assert r["spend_key_id"] == k["spend_key_id"] and r["key"] != k["key"] and r["key_preview"] != k["key_preview"]
    assert run(lambda db: spend_key_store.find_by_hash(db, hash_secret(k["key"])), gateway) is None
    assert run(lambda db: spend_key_store.find_by_hash(db, hash_secret(r["key"])), gateway) is not None


def test_a_revoked_spend_key_is_gone(gateway, key):
    k = ok(api(gateway, "POST", "spend_keys", key, {"name": "gone"}), 201)
    assert ok(api(gateway, "DELETE", f"spend_keys/{k['spend_key_id']}", key)) == {"success": True}
    for method, path in [("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/rotate")]:
        assert api(gateway, method, f"spend_keys/{k['spend_key_id']}{path}", key, {}).status_code == 404
    assert ok(api(gateway, "GET", "spend_keys", key))["data"] == []
    assert run(lambda db: spend_key_store.find_by_hash(db, hash_secret(k["key"])), gateway) is None


# -- secret keys, webhooks, wallet -------------------------------------------------------------------------------
def test_a_new_secret_key_works_and_is_listed_by_its_hint(gateway, key):
    s = ok(api(gateway, "POST", "secret_keys", key, {"name": "second"}), 201)
    assert set(s) == {"secret_key_id", "name", "secret_key_hint", "created_at", "secret_key"}
    listed = ok(api(gateway, "GET", "secret_keys", s["secret_key"]))["data"]
    assert sorted(k["name"] for k in listed) == ["default", "second"]
    mine = next(k for k in listed if k["secret_key_id"] == s["secret_key_id"])
    assert mine == {n: v for n, v in s.items() if n != "secret_key"}


def test_a_merchant_cannot_delete_its_last_secret_key(gateway, key):
    first = ok(api(gateway, "GET", "secret_keys", key))["data"][0]["secret_key_id"]
    s = ok(api(gateway, "POST", "secret_keys", key, {"name": "second"}), 201)
    assert ok(api(gateway, "DELETE", f"secret_keys/{first}", s["secret_key"])) == {"id": first, "deleted": True}
    last = api(gateway, "DELETE", f"secret_keys/{s['secret_key_id']}", s["secret_key"])
    assert last.status_code == 400 and "last active" in last.json()["error"]["message"]
    assert api(gateway, "DELETE", f"secret_keys/{first}", s["secret_key"]).status_code == 404


def test_a_webhook_is_created_with_a_secret_read_updated_and_deleted(gateway, key):
    w = ok(api(gateway, "POST", "webhooks", key, {"name": "hook", "url": "https://hooks.example.com:8443/x?y=1"}),
           201)
    assert set(w) == {"webhook_id", "name", "url", "created_at", "webhook_secret"}
    assert w["webhook_secret"].startswith("whsec_")
    w2 = ok(api(gateway, "PATCH", f"webhooks/{w['webhook_id']}", key, {"url": "https://example.com/new"}))
    assert (w2["name"], w2["url"]) == ("hook", "https://example.com/new") and "webhook_secret" not in w2
    assert ok(api(gateway, "GET", f"webhooks/{w['webhook_id']}", key)) == w2
    assert ok(api(gateway, "DELETE", f"webhooks/{w['webhook_id']}", key)) == {"id": w["webhook_id"], "deleted": True}
    assert api(gateway, "GET", f"webhooks/{w['webhook_id']}", key).status_code == 404


def test_the_wallet_shows_its_balance_and_a_merchant_cannot_fund_it(gateway, key):
    wallet = ok(api(gateway, "GET", "wallet", key))
    assert wallet["balance"] == "10" and wallet["merchant_id"].startswith("mer_")
    r = api(gateway, "POST", "wallet/credit", key, {"amount": "1000000"})
    assert r.status_code == 403 and "operator" in r.json()["error"]["message"]
    assert ok(api(gateway, "GET", "wallet", key)) == wallet
    [opening] = ok(api(gateway, "GET", "wallet/transfers", key))["data"]
    assert (opening["from"], opening["to"], opening["amount"], opening["kind"]) == (
        "operator:funding", f"merchant:{wallet['merchant_id']}", "10", "funding")


# -- every resource: paging and isolation ------------------------------------------------------------------------
@pytest.mark.parametrize("resource", RESOURCES)
def test_a_list_pages_newest_first_with_a_cursor(gateway, key, resource):
    path, _, id_field = RESOURCES[resource]
    made = [create(gateway, key, resource) for _ in range(3)]
    first = ok(api(gateway, "GET", f"{path}?limit=2", key))
    assert first["has_more"] is True and len(first["data"]) == 2
    rest = ok(api(gateway, "GET", f"{path}?limit=2&cursor={first['next_cursor']}", key))
    assert rest["has_more"] is False and rest["next_cursor"] is None
    newest_first = sorted(made, key=lambda x: (x["created_at"], x[id_field]), reverse=True)
    assert [x[id_field] for x in first["data"] + rest["data"]] == [x[id_field] for x in newest_first]


@pytest.mark.parametrize("resource", RESOURCES)
def test_a_merchant_never_sees_or_touches_another_merchants_objects(gateway, key, resource):
    path, body, id_field = RESOURCES[resource]
    theirs = create(gateway, key, resource)[id_field]
    for method in ("GET", "PATCH" if resource != "spend keys" else "PUT", "DELETE"):
        r = api(gateway, method, f"{path}/{theirs}", None, {"name": "x"})
        assert r.status_code == 404, (method, r.text)
    assert theirs not in [x[id_field] for x in ok(api(gateway, "GET", f"{path}?limit=100"))["data"]]
    assert ok(api(gateway, "GET", f"{path}/{theirs}", key))[id_field] == theirs  # untouched


def test_another_merchants_customer_cannot_be_credited_and_its_secret_key_not_deleted(gateway, key):
    cid = ok(api(gateway, "POST", "customers", key, {}), 201)["customer_id"]
    assert api(gateway, "POST", f"customers/{cid}/credit", None, {"amount": "1"}).status_code == 404
    assert ok(api(gateway, "GET", f"customers/{cid}", key))["balance"] == "0"
    kid = ok(api(gateway, "GET", "secret_keys", key))["data"][0]["secret_key_id"]
    ok(api(gateway, "POST", "secret_keys", None, {"name": "spare"}), 201)
    assert api(gateway, "DELETE", f"secret_keys/{kid}").status_code == 404


# -- validation --------------------------------------------------------------------------------------------------
BAD = [
    ("customers", {"name": 5}, "name"), ("customers", {"name": "x" * 201}, "name"),
    ("customers", {"reference_id": ""}, "reference_id"), ("customers", {"email": "not-an-email"}, "email"),
    ("customers", {"phone": "call me"}, "phone"), ("customers", {"metadata": ["a"]}, "metadata"),
    ("customers", {"metadata": {"a": 1}}, "metadata"), ("customers", {"balance": "-1"}, "balance"),
    ("customers", {"balance": "abc"}, "balance"), ("customers", {"balance": True}, "balance"),
    ("customers", {"balance": "1e30"}, "balance"),
    ("customers", {"balance": "1e999999999"}, "balance"),  # was decimal.Overflow: a 500
    ("customers", {"balance": "1.0000000000000000000000000001"}, "balance"),  # was rounded to $1
    ("customers", {"balance": "1e-999999999"}, "balance"),  # was flushed to $0
    ("customers", {"balance": "\u0661\u0662"}, "balance"),  # Arabic-Indic digits: was $12
    ("customers", {"balance": "1_000"}, "balance"),  # was $1000
    ("customers", {"autopay": {"threshold": "1"}}, "autopay.amount"),
    ("customers", {"autopay": {"threshold": "x", "amount": "1"}}, "autopay.threshold"),
    ("customers", {"autopay": "yes"}, "autopay"),
    ("meters", {**METER, "name": None}, "name"), ("meters", {**METER, "rate_type": "flat"}, "rate_type"),
    ("meters", {**METER, "tier_type": "tokens"}, "tier_type"), ("meters", {**METER, "tiers": []}, "tiers"),
    ("meters", {**METER, "tiers": [{"start": "5", "rate": "1"}]}, "tiers"),
    ("meters", {**METER, "tiers": [{"start": "-1", "rate": "1"}]}, "tiers[0].start"),
    ("meters", {**METER, "tiers": [{"start": "0", "rate": "-1"}]}, "tiers[0].rate"),
    ("meters", {**METER, "tiers": [{"start": "0", "rate": "NaN"}]}, "tiers[0].rate"),
    ("meters", {**METER, "tiers": [{"start": 0, "rate": 1}, {"start": "0", "rate": 2}]}, "tiers"),
    ("meters", {**METER, "tiers": ["0:1"]}, "tiers[0]"), ("meters", {**METER, "meter_slug": "Bad Slug"}, "meter_slug"),
    ("meters", {**METER, "name": "!!!"}, "meter_slug"),
    ("spend_keys", {}, "name"), ("spend_keys", {"name": "k", "status": "revoked"}, "status"),
    ("spend_keys", {"name": "k", "request_shape": "gemini"}, "request_shape"),
    ("spend_keys", {"name": "k", "allowed_models": "gpt-4o"}, "allowed_models"),
    ("spend_keys", {"name": "k", "allowed_providers": [1]}, "allowed_providers"),
    ("spend_keys", {"name": "k", "spend_limit": {"amount": "x", "cycle": "daily"}}, "spend_limit.amount"),
    ("spend_keys", {"name": "k", "spend_limit": {"amount": "1", "cycle": "hourly"}}, "spend_limit.cycle"),
    ("spend_keys", {"name": "k", "spend_limit": "1"}, "spend_limit"),
    ("spend_keys", {"name": "k", "request_limit": {"count": 0, "cycle": "daily"}}, "request_limit.count"),
    ("spend_keys", {"name": "k", "rate_limit": {"rpm": "60"}}, "rate_limit.rpm"),
    ("spend_keys", {"name": "k", "rate_limit": {"rpm": 60, "burst": -1}}, "rate_limit.burst"),
    ("spend_keys", {"name": "k", "expires_at": "tomorrow"}, "expires_at"),
    ("spend_keys", {"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ("secret_keys", {}, "name"), ("secret_keys", {"name": ["x"]}, "name"),
    ("webhooks", {"name": "h"}, "url"), ("webhooks", {"url": "https://example.com"}, "name"),
    ("webhooks", {"name": "h", "url": "ftp://example.com/x"}, "url"),
    ("webhooks", {"name": "h", "url": "https://"}, "url"),
    ("webhooks", {"name": "h", "url": "https://user:pw@example.com/"}, "url"),
    ("webhooks", {"name": "h", "url": "https://example.com:99999/"}, "url"),
]


@pytest.mark.parametrize("path,body,field", BAD, ids=[f"{p} {json.dumps(b)[:60]} names {f}" for p, b, f in BAD])
def test_a_bad_body_is_a_400_that_names_the_field(gateway, path, body, field):
    r = api(gateway, "POST", path, None, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith(field + ":")


ODD_VALUES = [None, True, 0, -1, 1.5, 1e308, 2**70, "", "x" * 5000, "\x00", [], {}, [1], [{}], {"a": []},
              [{"start": [], "rate": {}}], {"amount": [], "cycle": {}, "threshold": {}, "count": 1e308,
                                             "rpm": -5, "burst": "x"}]
WRITES = [("POST", "customers"), ("PATCH", "customers/{customer_id}"), ("POST", "customers/{customer_id}/credit"),
          ("POST", "meters"), ("PATCH", "meters/{meter_id}"), ("POST", "spend_keys"),
          ("PUT", "spend_keys/{spend_key_id}"),
          ("POST", "secret_keys"), ("POST", "webhooks"), ("PATCH", "webhooks/{webhook_id}")]
FIELDS = ["name", "reference_id", "email", "phone", "metadata", "balance", "autopay", "amount", "meter_slug",
          "rate_type", "tier_type", "tiers", "status", "request_shape", "allowed_models", "allowed_providers",
          "spend_limit", "request_limit", "rate_limit", "expires_at", "url"]


@pytest.mark.parametrize("method,path", WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_no_value_of_any_field_makes_a_500(gateway, key, method, path):
    ids = {"customer_id": create(gateway, key, "customers")["customer_id"],
           "meter_id": create(gateway, key, "meters")["meter_id"],
           "spend_key_id": create(gateway, key, "spend keys")["spend_key_id"],
           "webhook_id": create(gateway, key, "webhooks")["webhook_id"]}
    base = {"name": "n", "url": "https://example.com", **{k: v for k, v in METER.items() if k != "name"}}
    with httpx.Client(base_url=f"{gateway.url}/v1/", headers={"Authorization": f"Bearer {key}"}) as client:
        for field in FIELDS:
            for value in ODD_VALUES:
                r = client.request(method, path.format(**ids), json={**base, field: value})
                assert r.status_code < 300 or (r.status_code < 500 and "error" in r.json()), (field, value, r.text)


@pytest.mark.parametrize("raw", [b"{", b"[]", b'"x"', b'{"name": "\\ud800"}'], ids=["truncated", "an array",
                                                                                 "a string", "a lone surrogate"])
def test_a_body_that_is_not_a_json_object_is_a_400(gateway, raw):
    r = httpx.post(f"{gateway.url}/v1/customers", content=raw,
                   headers={"Authorization": f"Bearer {gateway.secret_key}"})
    assert r.status_code == 400 and "error" in r.json()


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "cursor=%%%", "cursor=YQ"])
def test_bad_list_parameters_are_a_400(gateway, query):
    assert api(gateway, "GET", f"customers?{query}").status_code == 400


def test_every_billing_resource_needs_a_secret_key(gateway):
    for path in ["customers", "meters", "spend_keys", "secret_keys", "webhooks", "wallet"]:
        r = httpx.get(f"{gateway.url}/v1/{path}")
        assert r.status_code == 401, path


# -- admin -------------------------------------------------------------------------------------------------------
def test_the_admin_api_is_off_until_a_token_is_set(gateway):
    r = httpx.post(f"{gateway.url}/admin/merchants", json={"name": "x"}, headers={"Authorization": "Bearer x"})
    assert r.status_code == 403 and "EDGE_PROXY_ADMIN_TOKEN" in r.json()["error"]["message"]


def test_the_admin_token_creates_merchants_whose_key_works(fake, tmp_path):
    g = GatewayProcess(base_env(tmp_path / "g.db", fake.url, {"EDGE_PROXY_ADMIN_TOKEN": "t0ken"})).start(tmp_path)
    try:
        url = f"{g.url}/admin/merchants"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic t0ken"}):
            assert httpx.post(url, json={"name": "x"}, headers=headers).status_code == 401
        admin = {"Authorization": "Bearer t0ken"}
        for body, field in [({}, "name"), ({"name": "x", "balance": "-2"}, "balance")]:
            r = httpx.post(url, json=body, headers=admin)
            assert r.status_code == 400 and r.json()["error"]["message"].startswith(field)
        m = httpx.post(url, json={"name": "acme", "balance": "7.25"}, headers=admin)
        assert m.status_code == 201
        m = m.json()
        assert set(m) == {"merchant_id", "secret_key", "name", "balance"} and m["balance"] == "7.25"
        assert ok(api(g, "GET", "wallet", m["secret_key"])) == {"merchant_id": m["merchant_id"], "balance": "7.25"}
    finally:
        g.stop()


# -- the data access the balance engine reads -------------------------------------------------------------------
def run(fn, gateway):
    async def go():
        store = open_store(gateway.env["EDGE_PROXY_DATABASE_URL"])
        await store.open()
        try:
            return await fn(store.db)
        finally:
            await store.close()
    return asyncio.run(go())


def test_customer_and_meter_by_slug_return_typed_structs_scoped_to_the_merchant(gateway, key):
    from decimal import Decimal
    mid = ok(api(gateway, "GET", "wallet", key))["merchant_id"]
    c = ok(api(gateway, "POST", "customers", key, {"name": "A", "metadata": {"k": "v"}, "balance": "1",
                                                   "autopay": {"threshold": "0.5", "amount": "2"}}), 201)
    ok(api(gateway, "POST", "meters", key, {**METER, "meter_slug": "s1",
                                              "tiers": [{"start": "0", "rate": "1.5"}, {"start": "10", "rate": "1"}]}),
       201)
    got = run(lambda db: accounts.customer(db, mid, c["customer_id"]), gateway)
    assert (got.balance_nanos, got.autopay_threshold_nanos, got.autopay_amount_nanos) == (10**9, 5 * 10**8, 2 * 10**9)
    assert got.metadata == {"k": "v"} and got.merchant_id == mid
    m = run(lambda db: accounts.meter_by_slug(db, mid, "s1"), gateway)
    assert m.tiers == [accounts.Tier(0, Decimal("1.5")), accounts.Tier(10, Decimal("1"))]
    assert (m.rate_type, m.tier_type, m.merchant_id) == ("fixed", "tokens_1m", mid)
    assert run(lambda db: accounts.customer(db, "mer_other", c["customer_id"]), gateway) is None
    assert run(lambda db: accounts.meter_by_slug(db, "mer_other", "s1"), gateway) is None


# -- PostgreSQL ----------------------------------------------------------------------------------------------------
def _postgres_up() -> bool:
    from . import pg
    try:
        url = asyncio.run(pg.create_database())
    except Exception:
        return False
    asyncio.run(pg.drop_database(url))
    return True


def test_every_resource_works_the_same_on_postgresql(fake, tmp_path):
    from . import pg
    if not _postgres_up():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 (tests/run.sh starts one)")
    url = asyncio.run(pg.create_database())
    g = GatewayProcess(base_env(tmp_path / "unused.db", fake.url, {"EDGE_PROXY_DATABASE_URL": url})).start(tmp_path)
    try:
        for resource, (path, _, id_field) in RESOURCES.items():
            made = [create(g, None, resource)[id_field] for _ in range(3)]
            first = ok(api(g, "GET", f"{path}?limit=2"))
            rest = ok(api(g, "GET", f"{path}?limit=2&cursor={first['next_cursor']}"))
            assert sorted(x[id_field] for x in first["data"] + rest["data"]) == sorted(made), resource
            update = "PUT" if resource == "spend keys" else "PATCH"
            renamed = ok(api(g, update, f"{path}/{made[0]}", None, {"name": "renamed"}))
            assert renamed.get("contact", renamed)["name"] == "renamed"
            assert ok(api(g, "DELETE", f"{path}/{made[0]}"))
            assert api(g, "GET", f"{path}/{made[0]}").status_code == 404
        taken = api(g, "POST", "meters", None, {**METER, "meter_slug": "m-2"})
        assert taken.status_code == 400 and "already used" in taken.text
        cid = ok(api(g, "POST", "customers", None, {"balance": "1", "autopay": {"threshold": "1", "amount": "2"}}),
                 201)["customer_id"]
        assert ok(api(g, "POST", f"customers/{cid}/credit", None, {"amount": "0.5"}))["balance"] == "1.5"
        assert ok(api(g, "GET", "wallet"))["balance"] == "98.5"  # the customer's 1.5 came from the wallet
        k = ok(api(g, "POST", "spend_keys", None, {"name": "k", "spend_limit": {"amount": "2", "cycle": "total"}}), 201)
        r = ok(api(g, "POST", f"spend_keys/{k['spend_key_id']}/rotate"))
        found = run(lambda db: spend_key_store.find_by_hash(db, hash_secret(r["key"])), g)
        assert found.spend_limit.amount_nanos == 2 * 10**9
        s = ok(api(g, "POST", "secret_keys", None, {"name": "two"}), 201)
        assert ok(api(g, "DELETE", f"secret_keys/{s['secret_key_id']}"))["deleted"] is True
    finally:
        g.stop()
        asyncio.run(pg.drop_database(url))


def test_a_customer_deleted_as_it_is_created_never_makes_the_create_a_500(tmp_path, monkeypatch):
    """create_customer answers the row its own transaction wrote: a delete landing between the insert and a read
    outside it made the read None, and the handler failed on it."""
    from edge_proxy.store.db import SQLiteDB

    from .inprocess import InProcess

    async def scenario():
        async with InProcess(tmp_path, None) as gw:
            real_customer = accounts.customer

            async def deleted_first(db, merchant_id, customer_id):
                if isinstance(db, SQLiteDB):  # a read outside the create's transaction: the delete lands first
                    await accounts.delete_customer(db, merchant_id, customer_id)
                return await real_customer(db, merchant_id, customer_id)

            monkeypatch.setattr(accounts, "customer", deleted_first)
            return await gw.call("POST", "/v1/customers", body={"name": "Ada"}, key=gw.secret_key)

    answer = asyncio.run(scenario())
    assert answer.status == 201, answer.body
