"""edge_proxy.client (Gateway, AsyncGateway) against a real gateway with the fake provider behind it: provider URLs,
forward tokens, every management resource, gateway() plain and with format, the request log, typed errors."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import inspect
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from edge_proxy.client import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncGateway,
    AuthenticationError,
    Gateway,
    GatewayError,
    InsufficientBalanceError,
    InvalidSecretKeyError,
    MissingSecretKeyError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    generate_forward_token,
)
from edge_proxy.forward_token import ForwardToken, decode_forward_token
from edge_proxy.providers import Catalogue

from .gateway_process import free_port

OPENAI_CHAT = "https://api.openai.com/v1/chat/completions"
CHAT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}
METER = {"name": "Client tokens", "rate_type": "fixed", "tier_type": "tokens_1m",
         "tiers": [{"start": "0", "rate": "2"}]}
NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture
def merchant(gateway) -> str:
    """A fresh merchant's secret key, so its lists start empty."""
    return gateway.create_merchant("client-test", "10")["secret_key"]


@pytest.fixture
def gw(gateway, merchant):
    with Gateway(merchant, gateway.url) as client:
        yield client


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def wait_for(fn, timeout: float = 5.0):
    """fn()'s first truthy answer; NotFoundError counts as "not yet" (the log is written within ~0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = fn()
            if got:
                return got
        except NotFoundError:
            pass
        assert time.monotonic() < deadline, "timed out waiting for the request log"
        time.sleep(0.05)


# -- construction and the environment ---------------------------------------------------------------------------
def test_the_secret_key_and_base_url_come_from_the_environment_at_construction(gateway, monkeypatch):
    monkeypatch.delenv("EDGE_PROXY_SECRET_KEY", raising=False)
    monkeypatch.setenv("LAVA_SECRET_KEY", gateway.secret_key)
    monkeypatch.setenv("EDGE_PROXY_BASE_URL", gateway.url + "/v1/")
    with Gateway() as gw:
        assert (gw.secret_key, gw.base_url) == (gateway.secret_key, gateway.url)
        assert gw.wallet.retrieve()["balance"]
    monkeypatch.setenv("EDGE_PROXY_SECRET_KEY", "ep_sk_wins")
    with Gateway() as gw:
        assert gw.secret_key == "ep_sk_wins"
    monkeypatch.delenv("EDGE_PROXY_BASE_URL")
    with Gateway("k") as gw:
        assert gw.base_url == "http://127.0.0.1:8080"


def test_a_missing_secret_key_is_a_typed_error_naming_the_variables(monkeypatch):
    monkeypatch.delenv("EDGE_PROXY_SECRET_KEY", raising=False)
    monkeypatch.delenv("LAVA_SECRET_KEY", raising=False)
    for cls in (Gateway, AsyncGateway):
        with pytest.raises(MissingSecretKeyError, match="EDGE_PROXY_SECRET_KEY") as info:
            cls()
        assert isinstance(info.value, GatewayError) and "LAVA_SECRET_KEY" in str(info.value)


def test_a_key_read_from_a_file_with_its_newline_works(gateway, monkeypatch):
    monkeypatch.setenv("EDGE_PROXY_SECRET_KEY", gateway.secret_key + "\n")  # a mounted secret file, read whole
    with Gateway(base_url=gateway.url) as gw:
        assert gw.secret_key == gateway.secret_key and gw.wallet.retrieve()["balance"]


@pytest.mark.parametrize("key", ["ep_sk_SECRET\r\nX-Injected: 1", "ep_sk_SEC RET", "ep_sk_SECRÉT", "ep_sk_\x00SECRET"],
                         ids=["a header injection", "a space inside", "a non-ascii letter", "a control character"])
def test_a_key_that_cannot_be_a_header_is_refused_without_printing_it(key):
    # httpx's h11 error for such a header quoted the whole value, key included, into APIConnectionError's message
    for cls in (Gateway, AsyncGateway):
        with pytest.raises(InvalidSecretKeyError) as info:
            cls(key, "http://127.0.0.1:1")
        assert "SECRET" not in str(info.value) and "SECRET" not in repr(info.value)
        assert isinstance(info.value, GatewayError) and isinstance(info.value, ValueError)


# -- providers ---------------------------------------------------------------------------------------------------
def test_provider_urls_cover_the_catalogue_with_underscore_and_sdk_alias_spellings(gateway):
    with Gateway("k", gateway.url) as gw:
        catalogue = Catalogue.load()
        assert set(gw.providers) == set(catalogue.providers) and len(gw.providers) == 28
        for name, p in catalogue.providers.items():
            assert gw.providers[name] == f"{gateway.url}/v1/forward?u={p.base_url}"
            assert getattr(gw.providers, name.replace("-", "_")) == gw.providers[name]
        assert gw.providers.googleOpenaiCompatible == gw.providers.google_openai_compatible == (
            f"{gateway.url}/v1/forward?u=https://generativelanguage.googleapis.com/v1beta/openai")
        with pytest.raises(AttributeError, match="no provider"):
            gw.providers.nope  # noqa: B018 - the attribute access is what raises


def test_a_provider_url_plus_a_path_works_with_httpx(gateway, fake):
    with Gateway(gateway.secret_key, gateway.url) as gw:
        r = httpx.post(gw.providers.openai + "/chat/completions", json=CHAT_BODY, timeout=10,
                       headers={"Authorization": f"Bearer {gw.generate_forward_token()}"})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == fake.reply_text
        assert fake.last().path == "/v1/chat/completions"
        r = httpx.post(gw.providers.anthropic + "/messages", timeout=10,
                       json={"model": "claude-haiku-4-5", "max_tokens": 16, "messages": CHAT_BODY["messages"]},
                       headers={"x-api-key": gateway.secret_key, "anthropic-version": "2023-06-01"})
        assert r.status_code == 200, r.text
        assert r.json()["content"][0]["text"] == fake.reply_text


# -- forward tokens ------------------------------------------------------------------------------------------------
TOKENS = [
    ("secret only", {}, {"secret_key": "SK"}),
    ("customer and meter", {"customer_id": "cus_1", "meter_slug": "m"},
     {"secret_key": "SK", "customer_id": "cus_1", "meter_slug": "m"}),
    ("meter with a null customer", {"customer_id": None, "meter_slug": "m"},
     {"secret_key": "SK", "customer_id": None, "meter_slug": "m"}),
    ("every field", {"customer_id": "c", "meter_slug": "m", "provider_key": "sk-own", "disable_billing": True},
     {"secret_key": "SK", "customer_id": "c", "meter_slug": "m", "provider_key": "sk-own", "disable_billing": True}),
    ("a provider key alone", {"provider_key": "sk-own"}, {"secret_key": "SK", "provider_key": "sk-own"}),
]


@pytest.mark.parametrize("options,fields", [row[1:] for row in TOKENS], ids=[row[0] for row in TOKENS])
def test_a_forward_token_is_padded_base64_of_compact_json_in_the_node_sdks_key_order(options, fields):
    with Gateway("SK", "http://127.0.0.1:1") as gw:
        token = gw.generate_forward_token(**options)
    assert token == generate_forward_token("SK", **options)
    assert len(token) % 4 == 0 and set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    text = base64.b64decode(token, validate=True).decode()
    assert text == json.dumps(fields, separators=(",", ":"))  # key order and spacing, as JSON.stringify
    want = ForwardToken(**{k: v for k, v in fields.items() if v is not None})
    assert decode_forward_token(token) == want


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_DIR / "node_modules" / "@lavapayments").is_dir(),
                    reason="node or the Lava SDK is not installed (tests/run.sh installs both)")
def test_tokens_and_provider_urls_are_byte_for_byte_the_node_sdks(gateway):
    env = {"BASE_URL": gateway.url + "/v1/", "LAVA_SECRET_KEY": gateway.secret_key, "PATH": "/usr/bin:/bin",
           "CUSTOMER_ID": "cus_1", "METER_SLUG": "meter-a", "PROVIDER_KEY": "sk-own"}
    out = subprocess.run(["node", str(NODE_DIR / "sdk_check.mjs"), "token"], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    node = json.loads(out.stdout.strip().splitlines()[-1])
    with Gateway(gateway.secret_key, gateway.url) as gw:
        ours = {
            "secret_only": gw.generate_forward_token(),
            "customer_meter": gw.generate_forward_token(customer_id="cus_1", meter_slug="meter-a"),
            "meter_only": gw.generate_forward_token(meter_slug="meter-a"),
            "null_customer_meter": gw.generate_forward_token(customer_id=None, meter_slug="meter-a"),
            "provider_key": gw.generate_forward_token(provider_key="sk-own"),
            "disable_billing": gw.generate_forward_token(disable_billing=True),
        }
        assert ours == node["tokens"]
        assert {name: gw.providers[name] for name in node["providers"]} == node["providers"]


# -- management resources -------------------------------------------------------------------------------------------
async def resource_round_trip(gw) -> None:
    """Create, list, retrieve, update and delete every resource; `gw` is a Gateway or an AsyncGateway."""
    # customers (+ ours: balance on create, credit)
    c = await resolve(gw.customers.create(name="Ada Lovelace", email="ada@example.com", reference_id="u-1",
                                          metadata={"plan": "pro"}, balance="1.5"))
    cid = c["customer_id"]
    assert cid.startswith("cus_") and c["contact"]["email"] == "ada@example.com" and c["balance"] == "1.5"
    assert await resolve(gw.customers.retrieve(cid)) == c
    assert [x["customer_id"] for x in (await resolve(gw.customers.list(limit=10)))["data"]] == [cid]
    c2 = await resolve(gw.customers.update(cid, email=None, reference_id="u-2"))
    assert (c2["contact"]["email"], c2["reference_id"], c2["contact"]["name"]) == (None, "u-2", "Ada Lovelace")
    assert (await resolve(gw.customers.credit(cid, "2.25")))["balance"] == "3.75"
    assert "subscription" in await resolve(gw.customers.get_subscription(cid))
    assert await resolve(gw.customers.delete(cid)) == {"success": True}
    with pytest.raises(NotFoundError):
        await resolve(gw.customers.retrieve(cid))
    # meters
    m = await resolve(gw.meters.create(**METER, meter_slug="client-tokens"))
    assert (m["meter_slug"], m["rate_type"], m["tiers"][0]["rate"]) == ("client-tokens", "fixed", "2")
    assert await resolve(gw.meters.retrieve(m["meter_id"])) == m
    assert [x["meter_id"] for x in (await resolve(gw.meters.list()))["data"]] == [m["meter_id"]]
    assert (await resolve(gw.meters.update(m["meter_id"], name="Renamed")))["name"] == "Renamed"
    assert await resolve(gw.meters.delete(m["meter_id"])) == {"id": m["meter_id"], "deleted": True}
    # spend keys
    k = await resolve(gw.spend_keys.create(name="ci", spend_limit={"amount": "1", "cycle": "total"}))
    assert k["key"] and k["spend_limit"] == {"amount": "1", "cycle": "total"}
    kid = k["spend_key_id"]
    assert "key" not in await resolve(gw.spend_keys.retrieve(kid))
    assert [x["spend_key_id"] for x in (await resolve(gw.spend_keys.list(limit=5)))["data"]] == [kid]
    k2 = await resolve(gw.spend_keys.update(kid, name="ci-2", spend_limit=None))
    assert (k2["name"], k2["spend_limit"]) == ("ci-2", None)
    rotated = await resolve(gw.spend_keys.rotate(kid))
    assert rotated["key"] != k["key"]
    assert await resolve(gw.spend_keys.revoke(kid)) == {"success": True}
    # secret keys
    s = await resolve(gw.secret_keys.create(name="second"))
    assert s["secret_key"] and s["secret_key_id"]
    assert s["secret_key_id"] in [x["secret_key_id"] for x in (await resolve(gw.secret_keys.list()))["data"]]
    assert await resolve(gw.secret_keys.delete(s["secret_key_id"])) == {"id": s["secret_key_id"], "deleted": True}
    # webhooks
    w = await resolve(gw.webhooks.create(name="hook", url="https://example.com/h"))
    assert w["webhook_secret"]
    wid = w["webhook_id"]
    assert (await resolve(gw.webhooks.retrieve(wid)))["url"] == "https://example.com/h"
    assert [x["webhook_id"] for x in (await resolve(gw.webhooks.list()))["data"]] == [wid]
    assert (await resolve(gw.webhooks.update(wid, url="https://example.com/new")))["url"] == "https://example.com/new"
    assert (await resolve(gw.webhooks.delete(wid)))["deleted"] is True
    with pytest.raises(NotFoundError):
        await resolve(gw.webhooks.retrieve(wid))


def test_every_resource_round_trips_with_the_sync_client(gw):
    asyncio.run(resource_round_trip(gw))


def test_every_resource_round_trips_with_the_async_client(gateway, merchant):
    async def go():
        async with AsyncGateway(merchant, gateway.url) as agw:
            await resource_round_trip(agw)
            # what the round trip credited its customer came from the wallet (a transfer, not new money)
            assert (await agw.wallet.retrieve())["balance"] == "6.25"
    asyncio.run(go())


def test_lists_page_with_limit_and_cursor(gw):
    ids = [gw.customers.create(name=f"c{i}")["customer_id"] for i in range(3)]
    first = gw.customers.list(limit=2)
    assert first["has_more"] and len(first["data"]) == 2
    second = gw.customers.list(limit=2, cursor=first["next_cursor"])
    assert {c["customer_id"] for c in first["data"] + second["data"]} == set(ids)


# -- the request log ---------------------------------------------------------------------------------------------------
def test_requests_and_usage_after_a_forwarded_call(gw):
    run = uuid.uuid4().hex[:12]
    response = gw.gateway_raw(OPENAI_CHAT, body=CHAT_BODY, headers={"x-lava-metadata": json.dumps({"run": run})})
    assert response.status_code == 200
    rid = response.headers["x-lava-request-id"]
    record = wait_for(lambda: gw.requests.retrieve(rid))
    assert (record["request_id"], record["status"], record["model"]) == (rid, "completed", "gpt-4o-mini")
    assert record["model_usage"]["total_tokens"] > 0 and record["metadata"] == {"run": run}
    listed = wait_for(lambda: gw.requests.list(limit=5, metadata_filters={"run": run})["data"])
    assert [r["request_id"] for r in listed] == [rid]
    assert gw.requests.list(metadata_filters={"run": "other"})["data"] == []
    usage = gw.usage.retrieve(start=dt.date.today() - dt.timedelta(days=1), metadata_filters={"run": run})
    assert usage["totals"]["total_requests"] == 1 and usage["totals"]["total_usage_tokens"] > 0


def test_post_request_reporting_is_idempotent_by_request_id(gw):
    rid = f"client-{uuid.uuid4().hex}"
    created = gw.requests.create(request_id=rid, input_tokens=10, output_tokens=20, metadata={"via": "client"})
    assert created["request_id"] == rid and created["model_usage"]["total_tokens"] == 30
    assert gw.requests.create(request_id=rid, input_tokens=10, output_tokens=20)["request_id"] == rid
    assert gw.requests.retrieve(rid)["metadata"] == {"via": "client"}


def test_a_credit_sent_again_with_its_idempotency_key_moves_the_money_once(gw):
    # a credit that timed out may have happened: sending it again is safe only with the same Idempotency-Key
    cid = gw.customers.create(name="Ada")["customer_id"]
    for _ in range(2):
        assert gw.customers.credit(cid, "1.25", idempotency_key="credit-ada-1")["balance"] == "1.25"
    assert gw.wallet.retrieve()["balance"] == "8.75"
    with pytest.raises(APIError) as info:  # the same key for another amount moves nothing
        gw.customers.credit(cid, "2", idempotency_key="credit-ada-1")
    assert info.value.status == 409
    funded = gw.customers.create(name="Bob", balance="0.5", idempotency_key="open-bob")
    assert funded["balance"] == "0.5" and gw.wallet.retrieve()["balance"] == "8.25"


def test_the_async_client_sends_the_idempotency_key_too(gateway, merchant):
    async def go():
        async with AsyncGateway(merchant, gateway.url) as agw:
            cid = (await agw.customers.create(name="Ada"))["customer_id"]
            for _ in range(2):
                await agw.customers.credit(cid, "1", idempotency_key="credit-async")
            return (await agw.customers.retrieve(cid))["balance"]
    assert asyncio.run(go()) == "1"


# -- gateway() ---------------------------------------------------------------------------------------------------------
def test_gateway_forwards_a_json_body_with_a_forward_token_and_answers_the_providers_json(gw, fake):
    out = gw.gateway(OPENAI_CHAT, body=CHAT_BODY, headers={"Authorization": "Bearer ignored", "X-Extra": "1"})
    assert out["choices"][0]["message"]["content"] == fake.reply_text
    seen = fake.last()
    assert seen.path == "/v1/chat/completions" and seen.json() == CHAT_BODY
    assert seen.header("authorization") == "Bearer sk-managed-openai" and seen.header("x-extra") == "1"
    assert seen.header("content-type") == "application/json"


def test_gateway_bills_the_customer_or_tracks_on_the_meter_as_the_node_sdk_does(gw, fake):
    gw.meters.create(**METER, meter_slug="gw-meter")
    cid = gw.customers.create(name="Ada", balance="1")["customer_id"]
    sent = gw.gateway_raw(OPENAI_CHAT, body=CHAT_BODY, customer_id=cid, meter_slug="gw-meter")
    assert sent.status_code == 200, sent.text
    record = wait_for(lambda: gw.requests.retrieve(sent.headers["x-lava-request-id"]))
    assert record["customer_id"] == cid and record["payer"] == "customer"
    meter_only = gw.gateway_raw(OPENAI_CHAT, body=CHAT_BODY, meter_slug="gw-meter")
    assert meter_only.status_code == 200
    record = wait_for(lambda: gw.requests.retrieve(meter_only.headers["x-lava-request-id"]))
    assert record["customer_id"] is None and record["payer"] == "merchant"
    with pytest.raises(ValueError, match="customer_id requires meter_slug"):
        gw.gateway(OPENAI_CHAT, body=CHAT_BODY, customer_id=cid)


def test_gateway_sends_what_the_node_sdk_sends(gateway):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    with Gateway("SK", gateway.url, http_client=httpx.Client(transport=httpx.MockTransport(handler))) as gw:
        assert gw.gateway("https://api.openai.com/v1/chat/completions?x=1&y=2", body={"a": 1}) == {"ok": True}
        gw.gateway("https://api.anthropic.com/v1/messages", body={"a": 1}, format="anthropic", meter_slug="m")
        gw.gateway("https://api.openai.com/v1/models", body=None, method="GET")
        gw.gateway("https://api.openai.com/v1/x", body="raw text", headers={"Content-Type": "text/plain"})
    forward, rewrite, get, raw = seen
    assert str(forward.url) == (f"{gateway.url}/v1/forward?u=https%3A%2F%2Fapi.openai.com%2Fv1%2Fchat%2Fcompletions"
                                "%3Fx%3D1%26y%3D2")
    assert forward.method == "POST" and forward.content == b'{"a":1}'
    assert forward.headers["content-type"] == "application/json"
    assert decode_forward_token(forward.headers["authorization"].removeprefix("Bearer ")) == ForwardToken("SK")
    assert str(rewrite.url) == f"{gateway.url}/v1/rewrite/anthropic/https://api.anthropic.com/v1/messages"
    assert base64.b64decode(rewrite.headers["authorization"].removeprefix("Bearer ")) == (
        b'{"secret_key":"SK","customer_id":null,"meter_slug":"m"}')
    assert get.method == "GET" and get.content == b"" and "content-type" not in get.headers
    assert raw.content == b"raw text" and raw.headers["content-type"] == "text/plain"
    with pytest.raises(ValueError, match="format"):
        Gateway("SK", gateway.url).gateway("https://api.openai.com/v1/x", format="cobol")


def test_gateway_raw_can_send_the_key_itself_as_a_spend_key_is_sent(gateway):
    seen = []
    transport = httpx.MockTransport(lambda request: seen.append(request) or httpx.Response(200, json={}))
    with Gateway("ep_spk_x", gateway.url, http_client=httpx.Client(transport=transport)) as gw:
        gw.gateway_raw("https://api.openai.com/v1/chat/completions", body={"a": 1}, forward_token=False)
        with pytest.raises(ValueError, match="forward token"):
            gw.gateway_raw("https://api.openai.com/v1/chat/completions", meter_slug="m", forward_token=False)
    [sent] = seen
    assert sent.headers["authorization"] == "Bearer ep_spk_x" and sent.content == b'{"a":1}'


def test_gateway_with_a_format_goes_through_the_rewrite_route(gw, fake):
    out = gw.gateway("https://api.anthropic.com/v1/messages", format="openai",
                     body={"model": "claude-haiku-4-5", "max_tokens": 32, "messages": CHAT_BODY["messages"]})
    assert out["choices"][0]["message"]["content"] == fake.reply_text  # an OpenAI answer
    assert fake.last().path == "/v1/messages"  # from Anthropic


def test_models_list_is_openais_list_shape(gw):
    models = gw.models.list()
    assert models["object"] == "list" and models["data"]
    assert {"id", "object", "created", "owned_by"} <= set(models["data"][0])


def test_request_reaches_the_unified_chat_completions_route(gw, fake):
    out = gw.request("POST", "chat/completions", CHAT_BODY)
    assert out["choices"][0]["message"]["content"] == fake.reply_text


def test_async_gateway_with_a_format(gateway, merchant, fake):
    async def go():
        async with AsyncGateway(merchant, gateway.url) as agw:
            return await agw.gateway("https://api.openai.com/v1/chat/completions", format="anthropic",
                                     body={"model": "gpt-4o-mini", "max_tokens": 16,
                                           "messages": CHAT_BODY["messages"]})
    out = asyncio.run(go())
    assert out["content"][0]["text"] == fake.reply_text  # an Anthropic answer from OpenAI


def test_the_async_gateway_call_answers_the_providers_json(gateway, merchant, fake):
    async def go():
        async with AsyncGateway(merchant, gateway.url) as agw:
            return await agw.gateway(OPENAI_CHAT, body=CHAT_BODY)
    assert asyncio.run(go())["choices"][0]["message"]["content"] == fake.reply_text


# -- errors ----------------------------------------------------------------------------------------------------------
def test_a_bad_key_is_an_authentication_error_with_the_gateways_message(gateway):
    with Gateway("ep_sk_not-a-key", gateway.url) as gw:
        with pytest.raises(AuthenticationError) as info:
            gw.customers.list()
        with pytest.raises(AuthenticationError):
            gw.gateway(OPENAI_CHAT, body=CHAT_BODY)
    err = info.value
    assert (err.status, err.type) == (401, "authentication_error") and "Bearer" in err.message
    assert isinstance(err, APIError) and isinstance(err, GatewayError)


def test_an_empty_wallet_is_an_insufficient_balance_error(gateway):
    broke = gateway.create_merchant("broke", "0")["secret_key"]
    with Gateway(broke, gateway.url) as gw:
        with pytest.raises(InsufficientBalanceError) as info:
            gw.gateway(OPENAI_CHAT, body=CHAT_BODY)
    assert info.value.status == 402 and info.value.message and info.value.request_id


def test_a_url_outside_the_catalogue_is_permission_denied(gw):
    for url in ("https://evil.example.com/v1/chat/completions", "http://127.0.0.1:1/x"):
        with pytest.raises(PermissionDeniedError, match="catalogue") as info:
            gw.gateway(url, body=CHAT_BODY)
        assert (info.value.status, info.value.type) == (403, "forbidden")


def test_an_unknown_id_is_not_found_in_both_clients(gateway, gw):
    with pytest.raises(NotFoundError, match="cus_nope") as info:
        gw.customers.retrieve("cus_nope")
    assert (info.value.status, info.value.type) == (404, "not_found")

    async def go():
        async with AsyncGateway(gw.secret_key, gateway.url) as agw:
            await agw.customers.retrieve("cus_nope")
    with pytest.raises(NotFoundError):
        asyncio.run(go())


def test_an_id_cannot_escape_its_path_segment(gw):
    with pytest.raises(NotFoundError):
        gw.customers.retrieve("../wallet")


@pytest.mark.parametrize("status,headers,body,cls,message,kind", [
    (429, {"Retry-After": "7"}, {"error": {"type": "rate_limit_exceeded", "message": "slow down"}},
     RateLimitError, "slow down", "rate_limit_exceeded"),
    (402, {}, {"error": "insufficient balance"}, InsufficientBalanceError, "insufficient balance", None),
    (400, {}, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}, APIError, "bad",
     "invalid_request_error"),
    (503, {}, {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}, APIError, "overloaded",
     "UNAVAILABLE"),
    (502, {}, "Bad Gateway", APIError, "Bad Gateway", None),
], ids=["a 429 carries retry_after", "a string error is the message", "anthropic's shape",
        "gemini's shape names its status", "a text body is the message"])
def test_error_bodies_in_every_shape_become_typed_errors(status, headers, body, cls, message, kind):
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    transport = httpx.MockTransport(lambda request: httpx.Response(status, headers=headers, content=content))
    with Gateway("SK", "http://127.0.0.1:1", http_client=httpx.Client(transport=transport)) as gw:
        with pytest.raises(cls) as info:
            gw.models.list()
    assert type(info.value) is cls and (info.value.status, info.value.message, info.value.type) == (
        status, message, kind)
    if cls is RateLimitError:
        assert info.value.retry_after == 7.0


def test_an_unreachable_gateway_is_a_connection_error():
    with Gateway("SK", f"http://127.0.0.1:{free_port()}") as gw:
        with pytest.raises(APIConnectionError) as info:
            gw.wallet.retrieve()
    assert isinstance(info.value, ConnectionError) and info.value.status is None


def _raises(exc: type[httpx.RequestError], message: str = "boom"):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc(message, request=request)
    return handler


@pytest.mark.parametrize("handler,cls,says", [
    (_raises(httpx.ConnectError), APIConnectionError, "was not sent"),
    (_raises(httpx.ConnectTimeout), APITimeoutError, "was not sent"),
    (_raises(httpx.LocalProtocolError, "Illegal header value b'Bearer SECRET\\n'"), APIConnectionError,
     "was not sent"),
    (_raises(httpx.ReadTimeout), APITimeoutError, "may have been acted on"),
    (_raises(httpx.RemoteProtocolError), APIConnectionError, "may have been acted on"),
    (lambda request: httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"not gzip"),
     APIConnectionError, "may have been acted on"),
], ids=["a refused connection was not sent", "a connect timeout was not sent",
        "a header h11 refuses was not sent, and its value is not repeated",
        "a read timeout may have been acted on", "a broken answer may have been acted on",
        "a body that does not decode is a connection error, not httpx's DecodingError"])
def test_a_failed_call_says_whether_the_gateway_may_have_acted_on_it(handler, cls, says):
    # a credit whose answer was lost may have moved money: the error must not say "could not reach the gateway"
    with Gateway("SK", "http://127.0.0.1:1", http_client=httpx.Client(transport=httpx.MockTransport(handler))) as gw:
        with pytest.raises(cls) as info:
            gw.customers.credit("cus_1", "1")
    assert type(info.value) is cls and says in str(info.value) and info.value.status is None
    assert "SECRET" not in str(info.value) and "SECRET" not in str(info.value.__cause__ or "")


def test_a_merchant_cannot_fund_its_own_wallet_through_the_client(gw):
    with pytest.raises(PermissionDeniedError, match="operator"):
        gw.wallet.credit("1000")
    assert gw.wallet.retrieve()["balance"] == "10"


def test_money_is_never_a_float(gw):
    with pytest.raises(TypeError, match="float"):
        gw.wallet.credit(1.5)
