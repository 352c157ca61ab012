"""Every request counted, priced and logged exactly once, and the query APIs that read the log."""
from __future__ import annotations

import json
import time
from urllib.parse import quote

import httpx2 as httpx
import pytest

from .fake_provider import expected_usage

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count these five words please"}]}
ANTH = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hello there"}]}
GEM = {"contents": [{"parts": [{"text": "hello gemini friend"}]}]}


def auth(gateway, key=None):
    return {"Authorization": f"Bearer {key or gateway.secret_key}"}


def wait_record(gateway, request_id, key=None, timeout=5.0) -> dict:
    """The log is written off the request path (flushed every 0.2 s by default): poll for the record."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{gateway.url}/v1/requests/{request_id}", headers=auth(gateway, key), timeout=5)
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 404, r.text
        assert time.monotonic() < deadline, f"record {request_id} never appeared"
        time.sleep(0.05)


def call(gateway, path, body, headers=None, stream=False):
    h = {**auth(gateway), **(headers or {})}
    if stream:
        with httpx.stream("POST", gateway.url + path, json=body, headers=h, timeout=10) as r:
            data = b"".join(r.iter_raw())
            return r.status_code, r.headers["x-lava-request-id"], data
    r = httpx.post(gateway.url + path, json=body, headers=h, timeout=10)
    return r.status_code, r.headers["x-lava-request-id"], r.content


CASES = [
    ("an OpenAI chat is counted from its usage", "/providers/openai/v1/chat/completions", CHAT, False,
     "openai.chat", {"input_tokens": "prompt_tokens", "output_tokens": "completion_tokens"}),
    ("an OpenAI stream with include_usage is counted from its final chunk", "/providers/openai/v1/chat/completions",
     {**CHAT, "stream": True, "stream_options": {"include_usage": True}}, True, "openai.chat",
     {"input_tokens": "prompt_tokens", "output_tokens": "completion_tokens"}),
    ("an Anthropic message is counted", "/providers/anthropic/v1/messages", ANTH, False, "anthropic",
     {"input_tokens": "input_tokens", "output_tokens": "output_tokens"}),
    ("an Anthropic stream is counted from message_start and message_delta", "/providers/anthropic/v1/messages",
     {**ANTH, "stream": True}, True, "anthropic", {"input_tokens": "input_tokens", "output_tokens": "output_tokens"}),
    ("a Gemini call is counted from usageMetadata", "/providers/google/v1beta/models/gemini-2.0-flash:generateContent",
     GEM, False, "gemini", {"input_tokens": "promptTokenCount", "output_tokens": "candidatesTokenCount"}),
    ("a Gemini SSE stream is counted from its last usageMetadata",
     "/providers/google/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", GEM, True, "gemini",
     {"input_tokens": "promptTokenCount", "output_tokens": "candidatesTokenCount"}),
]


@pytest.mark.parametrize("path,body,stream,api,fields", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_usage_is_read_from_the_providers_response(gateway, path, body, stream, api, fields):
    status, rid, _ = call(gateway, path, body, stream=stream)
    assert status == 200
    rec = wait_record(gateway, rid)
    want = expected_usage(api, body, model="gemini-2.0-flash" if api == "gemini" else None)
    for ours, theirs in fields.items():
        assert rec["model_usage"][ours] == want[theirs], ours
    assert rec["usage_source"] == "provider"
    assert rec["status"] == "completed" and rec["stream"] is stream
    assert rec["priced"] is True and float(rec["cost"]) > 0
    assert rec["overhead_ms"] > 0 and rec["latency_ms"] >= rec["overhead_ms"]


def test_cached_and_reasoning_tokens_are_priced_at_their_own_rates(gateway):
    body = {**CHAT, "model": "gpt-4o-mini+fake-cached"}
    status, rid, raw = call(gateway, "/providers/openai/v1/chat/completions", body)
    assert status == 200, raw
    usage = json.loads(raw)["usage"]
    rec = wait_record(gateway, rid)
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    assert rec["cached_tokens"] == cached > 0
    assert rec["reasoning_tokens"] == usage["completion_tokens_details"]["reasoning_tokens"] > 0
    # gpt-4o-mini: input $0.15, cached $0.075, output $0.60 per 1M tokens
    want = ((usage["prompt_tokens"] - cached) * 150 + cached * 75 + usage["completion_tokens"] * 600)
    assert rec["cost"] == f"0.{want:09d}".rstrip("0")


def test_an_openai_stream_without_usage_is_estimated_not_free(gateway):
    status, rid, _ = call(gateway, "/providers/openai/v1/chat/completions", {**CHAT, "stream": True}, stream=True)
    rec = wait_record(gateway, rid)
    assert rec["usage_source"] == "estimated"
    assert rec["model_usage"]["output_tokens"] > 0 and float(rec["cost"]) > 0


def test_a_provider_cut_stream_is_one_error_record_with_the_usage_that_passed(gateway):
    body = {**ANTH, "model": "claude-haiku-4-5+fake-die-midstream", "stream": True}
    status, rid, _ = call(gateway, "/providers/anthropic/v1/messages", body, stream=True)
    rec = wait_record(gateway, rid)
    assert rec["status"] == "error" and rec["outcome"] == "error"
    assert rec["error_reason"] == "upstream_interrupted"
    assert rec["model_usage"]["input_tokens"] > 0  # message_start had passed


def test_a_client_that_leaves_mid_stream_is_one_partial_record(gateway, fake):
    fake.slow_seconds = 0.5
    body = {**CHAT, "model": "gpt-4o-mini+fake-slow-stream", "stream": True}
    with httpx.stream("POST", gateway.url + "/providers/openai/v1/chat/completions", json=body,
                      headers=auth(gateway), timeout=10) as r:
        rid = r.headers["x-lava-request-id"]
        next(r.iter_raw())
    rec = wait_record(gateway, rid)
    assert rec["outcome"] == "partial" and rec["error_reason"] == "client_disconnected"
    assert rec["status"] == "error"
    fake.slow_seconds = 5


def test_gateway_errors_after_authentication_are_logged_too(gateway):
    r = httpx.post(gateway.url + "/v1/forward?u=https://evil.example.com/x", json=CHAT, headers=auth(gateway))
    rec = wait_record(gateway, r.headers["x-lava-request-id"])
    assert rec["status_code"] == 403 and rec["status"] == "error" and rec["cost"] is None


def test_each_request_is_logged_exactly_once(gateway):
    ids = [call(gateway, "/providers/openai/v1/chat/completions", CHAT)[1] for _ in range(5)]
    for rid in ids:
        wait_record(gateway, rid)
    listed = httpx.get(gateway.url + "/v1/requests?limit=100", headers=auth(gateway)).json()["data"]
    seen = [r["request_id"] for r in listed if r["request_id"] in ids]
    assert sorted(seen) == sorted(ids)


# -- metadata -----------------------------------------------------------------------------------------------

def test_metadata_from_the_header_and_from_the_query(gateway):
    _, rid, _ = call(gateway, "/providers/openai/v1/chat/completions", CHAT,
                     headers={"x-lava-metadata": json.dumps({"user": "u-1", "n": 3})})
    assert wait_record(gateway, rid)["metadata"] == {"user": "u-1", "n": "3"}
    meta = quote(json.dumps({"feature": "search"}))
    _, rid, _ = call(gateway, f"/v1/forward?u={quote('https://api.openai.com/v1/chat/completions', safe='')}"
                              f"&metadata={meta}", CHAT)
    assert wait_record(gateway, rid)["metadata"] == {"feature": "search"}


BAD_METADATA = [("not JSON", "{nope"), ("an array", "[1]"), ("a nested object", '{"a": {"b": 1}}'),
                ("too many keys", json.dumps({f"k{i}": "v" for i in range(51)})),
                ("a long value", json.dumps({"k": "x" * 501})), ("an empty key", '{"": "v"}')]


@pytest.mark.parametrize("value", [b[1] for b in BAD_METADATA], ids=[b[0] for b in BAD_METADATA])
def test_bad_metadata_is_400_and_nothing_is_sent(gateway, fake, value):
    fake.clear()
    r = httpx.post(gateway.url + "/providers/openai/v1/chat/completions", json=CHAT,
                   headers={**auth(gateway), "x-lava-metadata": value})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert fake.received == []


# -- the query APIs -----------------------------------------------------------------------------------------

def test_requests_list_pages_newest_first_and_filters(gateway, token):
    tag = f"t{time.time_ns()}"
    cus = httpx.post(f"{gateway.url}/v1/customers", json={}, headers=auth(gateway)).json()["customer_id"]
    ids = []
    for i in range(5):
        _, rid, _ = call(gateway, "/providers/openai/v1/chat/completions", CHAT,
                         headers={"Authorization": f"Bearer {token(customer_id=cus if i % 2 else None)}",
                                  "x-lava-metadata": json.dumps({"tag": tag, "i": str(i)})})
        ids.append(rid)
    for rid in ids:
        wait_record(gateway, rid)
    filters = quote(json.dumps([["tag", tag]]))
    page1 = httpx.get(f"{gateway.url}/v1/requests?limit=3&metadata_filters={filters}", headers=auth(gateway)).json()
    assert [r["request_id"] for r in page1["data"]] == ids[::-1][:3]
    assert page1["has_more"] is True
    page2 = httpx.get(f"{gateway.url}/v1/requests?limit=3&metadata_filters={filters}&cursor={page1['next_cursor']}",
                      headers=auth(gateway)).json()
    assert [r["request_id"] for r in page2["data"]] == ids[::-1][3:]
    assert page2["has_more"] is False and page2["next_cursor"] is None
    by_customer = httpx.get(f"{gateway.url}/v1/requests?limit=10&customer_id={cus}", headers=auth(gateway)).json()
    assert [r["request_id"] for r in by_customer["data"]] == [ids[3], ids[1]]


def test_a_merchant_sees_only_its_own_requests(gateway):
    other = gateway.create_merchant("other")
    _, rid, _ = call(gateway, "/providers/openai/v1/chat/completions", CHAT)
    wait_record(gateway, rid)
    r = httpx.get(f"{gateway.url}/v1/requests/{rid}", headers=auth(gateway, other["secret_key"]))
    assert r.status_code == 404
    listed = httpx.get(f"{gateway.url}/v1/requests?limit=100", headers=auth(gateway, other["secret_key"])).json()
    assert rid not in [x["request_id"] for x in listed["data"]]


def test_usage_totals_add_up_per_day(gateway):
    today = time.strftime("%Y-%m-%d", time.gmtime())
    before = httpx.get(f"{gateway.url}/v1/usage?start={today}", headers=auth(gateway)).json()
    _, rid, _ = call(gateway, "/providers/openai/v1/chat/completions", CHAT)
    rec = wait_record(gateway, rid)
    after = httpx.get(f"{gateway.url}/v1/usage?start={today}", headers=auth(gateway)).json()
    assert after["totals"]["total_requests"] == before["totals"]["total_requests"] + 1
    assert after["items"][-1]["date"] == today
    from decimal import Decimal
    assert Decimal(after["totals"]["total_cost"]) - Decimal(before["totals"]["total_cost"]) == Decimal(rec["cost"])


def test_post_request_reporting_is_priced_and_idempotent(gateway):
    body = {"request_id": f"ext-{time.time_ns()}", "customer_id": None, "meter_slug": None, "provider": "openai",
            "model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 500, "metadata": {"source": "batch"}}
    first = httpx.post(f"{gateway.url}/v1/requests", json=body, headers=auth(gateway))
    assert first.status_code == 201
    assert first.json()["cost"] == "0.00045"  # 1000 x $0.15/1M + 500 x $0.60/1M
    again = httpx.post(f"{gateway.url}/v1/requests", json=body, headers=auth(gateway))
    assert again.status_code == 200 and again.json()["request_id"] == body["request_id"]
    listed = httpx.get(f"{gateway.url}/v1/requests?limit=100", headers=auth(gateway)).json()["data"]
    assert [r["request_id"] for r in listed].count(body["request_id"]) == 1


API_ERRORS = [
    ("usage without start", "GET", "/v1/usage", 400), ("usage with a bad date", "GET", "/v1/usage?start=yesterday", 400),
    ("a bad limit", "GET", "/v1/requests?limit=0", 400), ("a bad cursor", "GET", "/v1/requests?cursor=%%%", 400),
    ("a limit in superscript digits, which int() refuses", "GET", "/v1/requests?limit=%C2%B2", 400),
    ("usage ending on the last day a date can hold", "GET", "/v1/usage?start=9999-12-31&end=9999-12-31", 400),
    ("bad metadata filters", "GET", "/v1/requests?metadata_filters=%7B%7D", 400),
    ("an unknown request", "GET", "/v1/requests/req_nope", 404),
    ("a report without request_id", "POST", "/v1/requests", 400),
    ("DELETE on requests", "DELETE", "/v1/requests", 405), ("an unknown resource", "GET", "/v1/nothing", 404),
]


@pytest.mark.parametrize("method,path,status", [e[1:] for e in API_ERRORS], ids=[e[0] for e in API_ERRORS])
def test_query_api_errors(gateway, method, path, status):
    r = httpx.request(method, gateway.url + path, headers=auth(gateway), json={} if method == "POST" else None)
    assert r.status_code == status and r.json()["error"]["message"]


def test_query_apis_need_a_secret_key(gateway):
    assert httpx.get(f"{gateway.url}/v1/requests").status_code == 401
    assert httpx.get(f"{gateway.url}/v1/usage?start=2026-01-01", headers=auth(gateway, "ep_sk_bad")).status_code == 401
