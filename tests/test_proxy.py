"""The gateway core end to end: a real gateway process in front of the fake provider."""
from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote

import httpx2 as httpx
import pytest

from .fake_provider import FakeProvider
from .gateway_process import GatewayProcess, base_env, free_port
from .inprocess import InProcess

OPENAI_CHAT = "https://api.openai.com/v1/chat/completions"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello from my agent!"}]}


def post(gateway, path, body=None, headers=None, **kw):
    return httpx.post(gateway.url + path, json=body if body is not None else CHAT, headers=headers or {},
                      timeout=10, **kw)


def bearer(t):
    return {"Authorization": f"Bearer {t}"}


# -- what reaches the provider -------------------------------------------------------------------------------

def test_forward_with_encoded_u_reaches_openai_with_the_managed_key(gateway, fake, token):
    fake.clear()
    r = post(gateway, "/v1/forward?u=" + quote(OPENAI_CHAT, safe=""), headers=bearer(token()))
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"]
    assert r.headers["x-lava-request-id"].startswith("req_")
    got = fake.last()
    assert got.path == "/v1/chat/completions"
    h = dict(got.headers)
    assert h["authorization"] == "Bearer sk-managed-openai"
    assert json.loads(got.body) == CHAT


def test_raw_u_with_an_appended_path_works_as_the_sdk_provider_urls_need(gateway, fake, token):
    r = post(gateway, "/v1/forward?u=https://api.openai.com/v1" + "/chat/completions", headers=bearer(token()))
    assert r.status_code == 200
    assert fake.last().path == "/v1/chat/completions"


def test_other_query_parameters_are_forwarded(gateway, fake, token):
    r = httpx.get(gateway.url + "/v1/forward?u=" + quote("https://api.openai.com/v1/models", safe="") + "&limit=2&x=a%20b",
                  headers=bearer(token()), timeout=10)
    assert r.status_code == 200
    assert fake.last().query == "limit=2&x=a%20b"


def test_provider_route_reaches_the_provider_path(gateway, fake, token):
    r = post(gateway, "/providers/openai/v1/chat/completions", headers=bearer(token()))
    assert r.status_code == 200
    assert fake.last().path == "/v1/chat/completions"


def test_raw_secret_key_is_accepted_as_bearer(gateway):
    r = post(gateway, "/providers/openai/v1/chat/completions", headers=bearer(gateway.secret_key))
    assert r.status_code == 200


def test_anthropic_via_x_api_key_gets_its_own_header_and_keeps_anthropic_version(gateway, fake, token):
    body = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
    r = post(gateway, "/v1/forward?u=" + quote("https://api.anthropic.com/v1/messages", safe=""), body,
             headers={"x-api-key": token(), "anthropic-version": "2023-06-01"})
    assert r.status_code == 200
    assert r.json()["type"] == "message"
    h = dict(fake.last().headers)
    assert h["x-api-key"] == "sk-managed-anthropic"
    assert h["anthropic-version"] == "2023-06-01"
    assert "authorization" not in h


def test_google_via_x_goog_api_key(gateway, fake, token):
    body = {"contents": [{"parts": [{"text": "Hi"}]}]}
    r = post(gateway, "/providers/google/v1beta/models/gemini-2.0-flash:generateContent", body,
             headers={"x-goog-api-key": token()})
    assert r.status_code == 200
    assert "usageMetadata" in r.json()
    assert dict(fake.last().headers)["x-goog-api-key"] == "managed-google-key"


def test_unmanaged_token_sends_the_callers_provider_key(gateway, fake, token):
    r = post(gateway, "/providers/openai/v1/chat/completions", headers=bearer(token(provider_key="sk-users-own")))
    assert r.status_code == 200
    assert dict(fake.last().headers)["authorization"] == "Bearer sk-users-own"


def test_gateway_credentials_and_hop_by_hop_headers_are_stripped(gateway, fake, token):
    t = token()
    r = httpx.post(gateway.url + "/providers/openai/v1/chat/completions?q=1", content=json.dumps(CHAT).encode(),
                   headers={**bearer(t), "x-api-key": t, "x-goog-api-key": t, "Connection": "keep-alive, x-private",
                            "x-private": "hop", "Keep-Alive": "timeout=5", "TE": "trailers", "Proxy-Authorization": "p",
                            "x-lava-metadata": "{}", "X-Custom": "kept", "User-Agent": "ua/1"}, timeout=10)
    assert r.status_code == 200
    got = dict(fake.last().headers)
    for gone in ("x-api-key", "x-goog-api-key", "x-private", "keep-alive", "te", "proxy-authorization",
                 "x-lava-metadata"):
        assert gone not in got, gone
    assert got["authorization"] == "Bearer sk-managed-openai"
    assert got["x-custom"] == "kept" and got["user-agent"] == "ua/1"
    assert got["host"].startswith("127.0.0.1:")
    assert t not in json.dumps(fake.last().headers)


# -- what comes back ---------------------------------------------------------------------------------------

def test_provider_errors_pass_through_unchanged(gateway, token):
    r = post(gateway, "/providers/openai/v1/chat/completions", {**CHAT, "model": "fake-error-429"},
             headers=bearer(token()))
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limit_exceeded" and "param" in r.json()["error"]
    assert "retry-after" in r.headers
    r = post(gateway, "/providers/anthropic/v1/messages", {"model": "fake-error-500", "max_tokens": 5,
                                                          "messages": [{"role": "user", "content": "x"}]},
             headers={"x-api-key": token()})
    assert r.status_code == 500
    assert r.json()["type"] == "error"


def test_sse_streams_pass_through_chunk_by_chunk(gateway, fake, token):
    body = {**CHAT, "model": "fake-slow-stream", "stream": True}
    fake.slow_seconds = 1.0
    started = time.monotonic()
    with httpx.stream("POST", gateway.url + "/providers/openai/v1/chat/completions", json=body,
                      headers=bearer(token()), timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = r.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - started
        rest = b"".join(chunks)
        done_at = time.monotonic() - started
    assert first.startswith(b"data: ")
    assert rest.rstrip().endswith(b"data: [DONE]")
    # the first event was relayed while the provider was still sleeping before the next one
    assert done_at - first_at >= 0.8


def test_upstream_death_mid_stream_ends_with_an_explicit_error_event_never_done(gateway, token):
    body = {**CHAT, "model": "fake-die-midstream", "stream": True}
    with httpx.stream("POST", gateway.url + "/providers/openai/v1/chat/completions", json=body,
                      headers=bearer(token()), timeout=10) as r:
        assert r.status_code == 200
        received = b"".join(r.iter_raw())
    events = [e for e in received.split(b"\n\n") if e.strip()]
    assert len(events) == 3
    assert json.loads(events[-1][len(b"data: "):])["error"]["code"] == "stream_interrupted"
    assert b"[DONE]" not in received


def test_the_openai_sdk_raises_when_the_upstream_dies_mid_stream(gateway, token):
    import openai
    client = openai.OpenAI(base_url=gateway.url + "/providers/openai/v1", api_key=token(), max_retries=0)
    stream = client.chat.completions.create(model="fake-die-midstream", messages=CHAT["messages"], stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_the_anthropic_sdk_raises_when_the_upstream_dies_mid_stream(gateway, token):
    import anthropic
    client = anthropic.Anthropic(base_url=gateway.url + "/providers/anthropic", api_key=token(), max_retries=0)
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(model="fake-die-midstream", max_tokens=10,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            for _ in stream:
                pass


def test_a_length_delimited_body_cut_short_is_a_broken_body_for_the_client(gateway, token):
    body = {**CHAT, "model": "fake-big+fake-die-midstream"}
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", gateway.url + "/providers/openai/v1/chat/completions", json=body,
                          headers=bearer(token()), timeout=10) as r:
            assert r.status_code == 200
            for _ in r.iter_raw():
                pass


def test_a_big_body_passes_through_whole(gateway, token):
    r = post(gateway, "/providers/openai/v1/chat/completions", {**CHAT, "model": "fake-big"}, headers=bearer(token()))
    assert r.status_code == 200
    assert len(r.json()["choices"][0]["message"]["content"]) > 1_000_000


def test_no_cors_headers_ever(gateway, token):
    r = post(gateway, "/providers/openai/v1/chat/completions", headers=bearer(token()))
    assert not [h for h in r.headers if h.lower().startswith("access-control-")]


def test_healthz(gateway):
    r = httpx.get(gateway.url + "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


# -- errors ------------------------------------------------------------------------------------------------

FWD = "/v1/forward?u=" + quote(OPENAI_CHAT, safe="")
# (id, method, path, headers, status, error type); "__auth" adds a valid token, "__model" sets the body's model.
# In-process (tests/inprocess.py): these need no socket.
ERRORS = [
    ("no credential is 401", "POST", FWD, {}, 401, "authentication_error"),
    ("a malformed token is 401", "POST", FWD, bearer("not-a-token!!"), 401, "authentication_error"),
    ("an unknown secret key is 401", "POST", FWD, bearer("ep_sk_unknown"), 401, "authentication_error"),
    ("a token with an unknown secret is 401", "POST", FWD,
     bearer("eyJzZWNyZXRfa2V5IjoiZXBfc2tfbm9wZSJ9"), 401, "authentication_error"),
    ("a Basic scheme is 401", "POST", FWD, {"Authorization": "Basic abc"}, 401, "authentication_error"),
    ("a browser request with Origin is 403", "POST", FWD, {"Origin": "https://app.example.com", "__auth": "1"},
     403, "forbidden"),
    ("an OPTIONS preflight is 403", "OPTIONS", FWD, {"Origin": "https://x", "Access-Control-Request-Method": "POST"},
     403, "forbidden"),
    ("a target outside the catalogue is 403", "POST", "/v1/forward?u=" + quote("https://evil.com/v1", safe=""),
     {"__auth": "1"}, 403, "forbidden"),
    ("a loopback target is 403", "POST", "/v1/forward?u=http://127.0.0.1:22/", {"__auth": "1"}, 403, "forbidden"),
    ("the metadata address is 403", "GET", "/v1/forward?u=http://169.254.169.254/latest/meta-data",
     {"__auth": "1"}, 403, "forbidden"),
    ("a userinfo trick is 403", "POST", "/v1/forward?u=" + quote("https://api.openai.com@evil.com/v1", safe=""),
     {"__auth": "1"}, 403, "forbidden"),
    ("a missing u is 400", "POST", "/v1/forward", {"__auth": "1"}, 400, "invalid_request_error"),
    ("an unknown provider name is 404", "POST", "/providers/nope/v1/x", {"__auth": "1"}, 404, "not_found"),
    ("an unknown route is 404", "GET", "/nothing/here", {}, 404, "not_found"),
    ("the provider resetting before headers is 502", "POST", "/providers/openai/v1/chat/completions",
     {"__auth": "1", "__model": "fake-reset"}, 502, "upstream_error"),
    ("the provider timing out is 504", "POST", "/providers/openai/v1/chat/completions",
     {"__auth": "1", "__model": "fake-slow-head"}, 504, "upstream_timeout"),
]


@pytest.mark.parametrize("method,path,headers,status,kind", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_are_json_with_the_right_status(tmp_path, method, path, headers, status, kind):
    headers = dict(headers)
    body = dict(CHAT)
    if "__model" in headers:
        body["model"] = headers.pop("__model")

    async def scenario():
        async with FakeProvider() as fake, InProcess(tmp_path, fake.url,
                                                     {"EDGE_PROXY_READ_TIMEOUT": "0.3"}) as gw:
            fake.slow_seconds = 5
            if headers.pop("__auth", None):
                headers.update(bearer(gw.secret_key))
            answer = await gw.call(method, path, body=body, headers=headers)
            return answer, list(fake.received)

    answer, received = asyncio.run(scenario())
    assert answer.status == status
    assert answer.header("content-type") == "application/json"
    assert answer.json()["error"]["type"] == kind
    assert answer.json()["error"]["message"]
    if status in (400, 401, 403, 404):
        assert received == [], "nothing may be sent upstream"


def test_every_bad_token_gets_the_same_body(gateway):
    bodies = {post(gateway, FWD, headers=bearer(t)).content for t in
              ["x", "eyJ9", "ep_sk_nope", "e30=", "W10=", "eyJzZWNyZXRfa2V5IjoxfQ=="]}
    assert len(bodies) == 1


def test_a_body_over_the_limit_is_413(fake, tmp_path):
    gw = GatewayProcess(base_env(tmp_path / "g.db", fake.url, {"EDGE_PROXY_MAX_BODY_BYTES": "1000"})).start(tmp_path)
    try:
        r = httpx.post(gw.url + "/providers/openai/v1/chat/completions", content=b"x" * 5000,
                       headers=bearer(gw.secret_key), timeout=10)
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"

        def chunked():
            for _ in range(10):
                yield b"y" * 500
        r = httpx.post(gw.url + "/providers/openai/v1/chat/completions", content=chunked(),
                       headers=bearer(gw.secret_key), timeout=10)
        assert r.status_code == 413
    finally:
        gw.stop()


def test_an_unreachable_provider_is_502(fake, tmp_path):
    closed = free_port()
    gw = GatewayProcess(base_env(tmp_path / "g.db", fake.url, {
        "EDGE_PROXY_UPSTREAM_MISTRAL": f"http://127.0.0.1:{closed}/v1", "EDGE_PROXY_PROVIDER_KEY_MISTRAL": "k"})
    ).start(tmp_path)
    try:
        r = httpx.post(gw.url + "/v1/forward?u=https://api.mistral.ai/v1/chat/completions", json=CHAT,
                       headers=bearer(gw.secret_key), timeout=10)
        assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"
        # a provider without a managed key and no provider_key in the token gets a clear 503
        r = httpx.post(gw.url + "/providers/groq/openai/v1/chat/completions", json=CHAT,
                       headers=bearer(gw.secret_key), timeout=10)
        assert r.status_code == 503 and "EDGE_PROXY_PROVIDER_KEY_GROQ" in r.json()["error"]["message"]
    finally:
        gw.stop()


def test_the_token_never_appears_in_a_response_or_the_log(gateway, token):
    customer = httpx.post(gateway.url + "/v1/customers", json={}, headers=bearer(gateway.secret_key), timeout=10)
    t = token(customer_id=customer.json()["customer_id"])  # a customer that exists: the requests are forwarded
    responses = [post(gateway, FWD, headers=bearer(t)),
                 post(gateway, "/v1/forward?u=https://evil.com/", headers=bearer(t)),
                 post(gateway, "/providers/openai/v1/chat/completions", {**CHAT, "model": "fake-error-500"},
                      headers=bearer(t))]
    for r in responses:
        assert t not in r.text and t not in str(r.headers)
    assert t not in gateway.log()
    assert gateway.secret_key not in gateway.log()


def test_metrics_in_prometheus_format(gateway, token):
    post(gateway, "/providers/openai/v1/chat/completions", headers=bearer(token()))
    text = httpx.get(gateway.url + "/metrics").text
    for name in ("edge_proxy_requests_total", "edge_proxy_errors_total", "edge_proxy_upstream_seconds_bucket",
                 "edge_proxy_overhead_seconds_count", "edge_proxy_log_queue_depth",
                 "edge_proxy_log_records_spilled_total", "edge_proxy_log_records_dropped_total",
                 "edge_proxy_principal_cache_hits_total", "edge_proxy_balance_lease_hits_total"):
        assert f"\n{name}{{" in "\n" + text, name
    dropped = [line for line in text.splitlines() if line.startswith("edge_proxy_log_records_dropped_total")]
    assert dropped and float(dropped[0].rsplit(" ", 1)[1]) == 0
    assert 'edge_proxy_requests_total{model="gpt-4o",provider="openai",region="default",status="2xx"}' in text
