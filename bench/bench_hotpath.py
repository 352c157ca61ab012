"""Micro-benchmarks of the per-request hot path (everything but the SSE scanner, which bench_usage_scan.py covers).

    .venv/bin/python -m pytest bench/bench_hotpath.py --benchmark-enable --benchmark-json=bench/out/micro.json
    .venv/bin/python -m pytest bench/ --benchmark-enable      # with bench_usage_scan.py too

* forward-token decode: compiled (edge_proxy._forward_token_c) vs the pure twin (edge_proxy._forward_token_py) on
  a realistic token (a 49-character secret key, a customer id and a meter slug: 172 base64 characters);
* header filtering: headers.request_headers on the 13 headers the OpenAI Python SDK sends (as Granian hands them
  over: lowercase str pairs), and headers.response_headers on the 22 headers OpenAI answers with;
* the credential lookup: headers.credential;
* the principal cache: TTLCache.get on a hit, and Authenticator.authenticate on a cached credential (its
  coroutine driven by hand: a cache hit never suspends, so no event loop is involved).
bench/check.py reads the compiled/pure ratio of the decoder from the JSON.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_proxy import headers as hdr  # noqa: E402
from edge_proxy._forward_token_py import decode_forward_token as decode_py  # noqa: E402
from edge_proxy.auth import Authenticator, Principal  # noqa: E402
from edge_proxy.forward_token import encode_forward_token  # noqa: E402
from edge_proxy.lru import TTLCache  # noqa: E402

SECRET = "ep_sk_TYqqUNYOlVLBtWHCeX3rcntnF3-1U4Vh5ebnBGnM_Q4"
TOKEN = encode_forward_token(SECRET, customer_id="cus_01HZX4Q9M2V7K8T3B6N1R5W0YD", meter_slug="chat-gpt-4o-mini")

# What Granian hands the app for a request from the OpenAI Python SDK (scope.headers.items()).
REQUEST_HEADERS: list[tuple[str, str]] = [
    ("host", "127.0.0.1:8080"),
    ("accept-encoding", "gzip, deflate"),
    ("connection", "keep-alive"),
    ("accept", "application/json"),
    ("content-type", "application/json"),
    ("user-agent", "OpenAI/Python 1.54.3"),
    ("x-stainless-lang", "python"),
    ("x-stainless-package-version", "1.54.3"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-runtime", "CPython"),
    ("authorization", "Bearer " + TOKEN),
    ("content-length", "134"),
]

# What api.openai.com answers a non-streamed chat completion with.
RESPONSE_HEADERS: list[tuple[bytes, bytes]] = [(k.encode(), v.encode()) for k, v in [
    ("date", "Sat, 22 Nov 2025 08:31:55 GMT"),
    ("content-type", "application/json"),
    ("content-length", "605"),
    ("connection", "keep-alive"),
    ("access-control-expose-headers", "X-Request-ID"),
    ("openai-organization", "user-abc123"),
    ("openai-processing-ms", "412"),
    ("openai-project", "proj_abc123"),
    ("openai-version", "2020-10-01"),
    ("x-envoy-upstream-service-time", "415"),
    ("x-ratelimit-limit-requests", "10000"),
    ("x-ratelimit-limit-tokens", "30000000"),
    ("x-ratelimit-remaining-requests", "9999"),
    ("x-ratelimit-remaining-tokens", "29999980"),
    ("x-ratelimit-reset-requests", "6ms"),
    ("x-ratelimit-reset-tokens", "0s"),
    ("x-request-id", "req_4f9a3c1d2b7e8f60a1b2c3d4e5f60718"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
    ("cf-cache-status", "DYNAMIC"),
    ("x-content-type-options", "nosniff"),
    ("server", "cloudflare"),
    ("cf-ray", "8e5b1c2d3f4a5b6c-FRA"),
]]


def _decoder(impl: str):
    if impl == "py":
        return decode_py
    return importlib.import_module("edge_proxy._forward_token_c").decode_forward_token


@pytest.mark.parametrize("impl", ["c", "py"])
def test_forward_token_decode(benchmark, impl):
    decode = _decoder(impl)
    benchmark.group = f"forward token decode ({len(TOKEN)} chars)"
    tok = benchmark(decode, TOKEN)
    assert tok.secret_key == SECRET and tok.meter_slug == "chat-gpt-4o-mini"


def test_request_headers(benchmark):
    benchmark.group = "headers"
    out = benchmark(hdr.request_headers, REQUEST_HEADERS, b"authorization", "sk-x")
    lines = bytes(out).split(b"\r\n")[:-1]  # one encoded block of "name: value" lines
    assert len(lines) == out.lines
    assert not any(line.startswith(b"host:") for line in lines)
    assert b"authorization: Bearer sk-x" in lines and b"accept-encoding: identity" in lines


def test_response_headers(benchmark):
    benchmark.group = "headers"
    out = benchmark(hdr.response_headers, RESPONSE_HEADERS)
    assert ("content-length", "605") not in out and ("server", "cloudflare") in out


def test_credential(benchmark):
    benchmark.group = "headers"
    headers = dict(REQUEST_HEADERS)
    assert benchmark(hdr.credential, headers) == TOKEN


PRINCIPAL = Principal("mer_595642c65a7b185337cc", "sk_0123456789abcdef0123", "cus_01HZX4Q9M2V7K8T3B6N1R5W0YD",
                      "chat-gpt-4o-mini")


def test_ttl_cache_hit(benchmark):
    benchmark.group = "principal cache"
    cache: TTLCache[str, Principal] = TTLCache(10_000, 30.0)
    for i in range(1000):   # a realistically populated cache
        cache.put(f"token-{i}", PRINCIPAL)
    cache.put(TOKEN, PRINCIPAL)
    assert benchmark(cache.get, TOKEN) is PRINCIPAL


class _NoStore:
    """The authenticator must not reach the store on a cache hit."""

    async def find_secret_key(self, key_hash: str):
        raise AssertionError("cache miss: the store was asked")


def _run(coro):
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("authenticate suspended on a cached credential")


def test_authenticate_cached(benchmark):
    benchmark.group = "principal cache"
    auth = Authenticator(_NoStore(), 10_000, 30.0)
    for i in range(1000):
        auth.cache.put(f"token-{i}", PRINCIPAL)
    auth.cache.put(TOKEN, PRINCIPAL)
    authenticate = auth.authenticate
    assert benchmark(lambda: _run(authenticate(TOKEN))) is PRINCIPAL


_PRICES = None


def _prices():
    global _PRICES  # loaded once per run (genai-prices' data is converted in ~0.2 s)
    if _PRICES is None:
        from edge_proxy.metering.pricing import PriceTable
        _PRICES = PriceTable.load()
    return _PRICES


PRICED = [
    # (provider, model, token counts): the record the request path prices once the answer is out
    ("openai", "gpt-4o-mini-2024-07-18", {"input_tokens": 1200, "output_tokens": 300, "cached_tokens": 1024}),
    ("anthropic", "claude-sonnet-4-5-20250929", {"input_tokens": 2098, "output_tokens": 120, "cached_tokens": 1800,
                                                 "cache_write_tokens": 248, "cache_write_1h_tokens": 100}),
]


@pytest.mark.parametrize("provider,model,counts", PRICED, ids=["openai cached", "anthropic tiered 1h writes"])
def test_price_a_record(benchmark, provider, model, counts):
    """PriceTable.cost on a record, as Gateway.price runs it on the request path (the lookup memoised)."""
    from edge_proxy.metering.record import RequestRecord
    benchmark.group = "pricing"
    prices = _prices()
    record = RequestRecord(request_id="req_1", created_at="2025-10-01T12:00:00.000Z", merchant_id="mer_1",
                           provider=provider, model=model, **counts)
    cost = benchmark(prices.cost, provider, model, record)
    assert cost.priced and cost.nanos > 0
