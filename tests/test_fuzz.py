"""Fuzzing what a client controls (Hypothesis): forward tokens, `u` values for /v1/forward, header sets, REST
bodies for every merchant and operator route, and paths with dot segments and encodings.

Whatever is sent, the gateway answers: never a 500 (a bug), never a hang (each call is bounded), and never a
credential in the answer, neither the caller's nor another's nor the operator's managed provider keys. In-process
(tests/trust_world.py), with a bounded number of examples per property so the suite keeps its time budget.
"""
from __future__ import annotations

import asyncio
import base64
import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_proxy.access import Access
from edge_proxy.routes import ROUTES, Route

from .inprocess import Answer, Proto, Scope
from .trust_world import CHAT, MERCHANT, OPERATOR, World, route_name

EXAMPLES = 120
CALL_SECONDS = 10  # a call past this is a hang
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MANAGED_KEYS = ("sk-managed-openai", "sk-managed-anthropic", "managed-google-key")  # tests/gateway_process.py


# -- the call and what its answer must never be ---------------------------------------------------------------
class MultiHeaders:
    """Request headers as Granian hands them over: repeated names kept, `get` the first value."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = [(k.lower(), v) for k, v in pairs]

    def get(self, key: str, default: Any = None) -> Any:
        return next((v for k, v in self.pairs if k == key), default)

    def __contains__(self, key: str) -> bool:
        return any(k == key for k, _ in self.pairs)

    def keys(self) -> list[str]:
        return [k for k, _ in self.pairs]

    def values(self) -> list[str]:
        return [v for _, v in self.pairs]

    def items(self) -> list[tuple[str, str]]:
        return list(self.pairs)


def secrets_of(world: World) -> list[str]:
    sent = [h["authorization"].split(" ", 1)[1] for h in world.credentials.values() if "authorization" in h]
    return [s for s in sent if s.startswith(("ep_", "operator-"))] + list(MANAGED_KEYS)


def call(world: World, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
    scope = Scope(method, path, query, {})
    scope.headers = MultiHeaders(headers)  # type: ignore[assignment]
    proto = Proto(body)

    async def bounded() -> None:
        async with asyncio.timeout(CALL_SECONDS):
            await world.gw.app.__rsgi__(scope, proto)  # type: ignore[arg-type]
    world.loop.run_until_complete(bounded())
    return proto.answer


def assert_sound(world: World, answer: Answer, what: str) -> None:
    text = answer.body.decode(errors="replace") + repr(answer.headers)
    assert answer.status and answer.status != 500, (what, answer.status, text[:2000])
    assert "Traceback" not in text, what
    leaked = [s for s in secrets_of(world) if s in text]
    assert leaked == [], (what, "a credential in the answer", leaked)


def bearer(world: World, kind: str) -> str:
    return world.credentials[kind]["authorization"]


def with_body(headers: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
    return headers + [("content-type", "application/json"), ("content-length", str(len(body)))]


# -- strategies -----------------------------------------------------------------------------------------------
odd_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=64) | st.sampled_from([
    "", " ", "\r\n", "\x00", "\x7f", "a" * 5000, "../../etc/passwd", "%00", "\ud7ff", "null", "🙂" * 10])
json_leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
             | st.floats(allow_nan=False) | odd_text)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(odd_text, inner, max_size=4), max_leaves=12)
TOKEN_FIELDS = ("secret_key", "customer_id", "meter_slug", "provider_key", "disable_billing")


@st.composite
def forward_tokens(draw, world: World) -> str:
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["secret_key"] = draw(st.sampled_from([world.gw.secret_key, world.other_key]) | json_value)
    for name in draw(st.lists(st.sampled_from(TOKEN_FIELDS[1:]) | odd_text, max_size=4)):
        fields[name] = draw(json_value)
    raw = draw(st.sampled_from(["json", "json-list", "bytes"]))
    data = (json.dumps(fields).encode() if raw == "json" else json.dumps([fields]).encode() if raw == "json-list"
            else draw(st.binary(max_size=200)))
    encoded = draw(st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]))(data).decode()
    return encoded.rstrip("=") if draw(st.booleans()) else encoded


SCHEMES = ["https://", "http://", "HTTPS://", "ftp://", "file://", "javascript:", "//", ""]
HOSTS = ["api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com", "api.openai.com.evil.test",
         "127.0.0.1", "[::1]", "0x7f000001", "2130706433", "localhost", "169.254.169.254", "user@api.openai.com",
         "api.openai.com#@evil.test", "api.openai.com\\@evil.test", "api.openai.com:443", "api.openai.com:6379",
         "API.OPENAI.COM", "api.openai.com.", "xn--80ak6aa92e.com", ""]
PATH_PARTS = ["v1", "chat", "completions", "..", ".", "%2e%2e", "%2E", "%2f", "//", "files", "models", "messages",
              "", "%00", "\\", "?key=x", "#frag", ";x", "%252e%252e"]


@st.composite
def u_values(draw) -> str:
    path = "/".join(draw(st.lists(st.sampled_from(PATH_PARTS) | odd_text, max_size=6)))
    url = draw(st.sampled_from(SCHEMES)) + draw(st.sampled_from(HOSTS) | odd_text) + "/" + path
    how = draw(st.sampled_from(["raw", "quoted", "twice"]))
    return url if how == "raw" else quote(url, safe="") if how == "quoted" else quote(quote(url, safe=""), safe="")


@st.composite
def header_sets(draw, world: World) -> list[tuple[str, str]]:
    keys = [world.gw.secret_key, world.other_key, bearer(world, "a spend key").split(" ", 1)[1], "", "x" * 9000]
    auth = st.sampled_from(keys).map(lambda k: f"Bearer {k}") | st.sampled_from(keys).map(
        lambda k: f"bearer  {k} ") | st.sampled_from(keys).map(lambda k: f"Basic {k}") | odd_text
    pair = st.one_of(
        st.tuples(st.just("authorization"), auth),
        st.tuples(st.just("x-api-key"), st.sampled_from(keys) | odd_text),
        st.tuples(st.just("x-goog-api-key"), st.sampled_from(keys) | odd_text),
        st.tuples(st.just("x-lava-metadata"), json_value.map(json.dumps) | odd_text),
        st.tuples(st.just("content-length"), st.sampled_from(["", "-1", "abc", "1e3", "0x10", "99999999999999999999",
                                                               " 12", "12, 12"]) | odd_text),
        st.tuples(st.sampled_from(["content-type", "accept-encoding", "transfer-encoding", "host", "origin",
                                   "openai-organization", "x-edge-proxy-test"]), odd_text),
    )
    return draw(st.lists(pair, max_size=8))


SEGMENTS = ["v1", "customers", "admin", "merchants", "dashboard", "static", "providers", "openai", "forward",
            "spend_keys", "wallet", "credit", "..", ".", "%2e%2e", "%2E%2e", "%2f", "%5c", "", "%00", "\\", "..;",
            "healthz", "metrics", "login", "requests", "dashboard.css"]


# -- the properties -------------------------------------------------------------------------------------------
PROXY_PATHS = ["/v1/chat/completions", "/v1/forward?u=https%3A%2F%2Fapi.openai.com%2Fv1%2Fchat%2Fcompletions",
               "/providers/openai/v1/chat/completions", "/v1/models", "/v1/customers"]


def test_forward_tokens_of_any_shape(trust_world):
    world = trust_world

    @FUZZ
    @given(token=forward_tokens(world), target=st.sampled_from(PROXY_PATHS))
    def check(token: str, target: str) -> None:
        path, _, query = target.partition("?")
        body = json.dumps(CHAT).encode() if path != "/v1/models" and path != "/v1/customers" else b""
        method = "POST" if body else "GET"
        answer = call(world, method, path, query, with_body([("authorization", f"Bearer {token}")], body), body)
        assert_sound(world, answer, f"{method} {target} with token {token[:200]!r}")
    check()


def test_u_values_for_the_forward_proxy(trust_world):
    world = trust_world

    @FUZZ
    @given(u=u_values(), extra=st.sampled_from(["", "&u=https%3A%2F%2Fevil.test%2F", "&key=abc", "&u="]))
    def check(u: str, extra: str) -> None:
        body = json.dumps(CHAT).encode()
        answer = call(world, "POST", "/v1/forward", f"u={u}{extra}",
                      with_body([("authorization", bearer(world, MERCHANT))], body), body)
        assert_sound(world, answer, f"u={u!r}{extra}")
    check()


def test_header_sets(trust_world):
    world = trust_world

    @FUZZ
    @given(headers=header_sets(world), target=st.sampled_from(PROXY_PATHS + ["/admin/ledger", "/v1/wallet/credit"]),
           body=st.sampled_from([b"", json.dumps(CHAT).encode(), b"{", b"\xff\xfe"]))
    def check(headers: list[tuple[str, str]], target: str, body: bytes) -> None:
        path, _, query = target.partition("?")
        answer = call(world, "POST" if body else "GET", path, query, headers, body)
        assert_sound(world, answer, f"{target} with headers {headers!r}"[:3000])
    check()


MANAGEMENT = [r for r in ROUTES if r.access in (Access.MERCHANT, Access.OPERATOR)]


@pytest.mark.parametrize("route", MANAGEMENT, ids=route_name)
def test_rest_bodies_of_any_shape(trust_world, route: Route):
    world = trust_world
    credential = bearer(world, OPERATOR if route.access is Access.OPERATOR else MERCHANT)
    method, path, _, _ = world.run(world.request_for(route))

    @settings(FUZZ, max_examples=max(10, EXAMPLES // 6))
    @given(body=json_value.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=300)
           | st.dictionaries(st.sampled_from(["name", "amount", "url", "status", "expires_at", "tiers", "rate_type",
                                              "tier_type", "allowed_models", "spend_limit", "rate_limit", "autopay",
                                              "balance", "request_id", "from", "to", "kind", "transfer_id",
                                              "metadata", "email"]), json_value, max_size=6)
           .map(lambda v: json.dumps(v).encode()))
    def check(body: bytes) -> None:
        target, _, query = path.partition("?")
        answer = call(world, method, target, query, with_body([("authorization", credential)], body), body)
        assert_sound(world, answer, f"{method} {path} with body {body[:300]!r}")
    check()


def test_paths_with_dot_segments_and_encodings(trust_world):
    world = trust_world

    @FUZZ
    @given(segments=st.lists(st.sampled_from(SEGMENTS) | odd_text, min_size=1, max_size=7),
           method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
           kind=st.sampled_from(sorted(world.credentials)))
    def check(segments: list[str], method: str, kind: str) -> None:
        path = "/" + "/".join(segments)
        headers = [("authorization", v) for v in world.credentials[kind].values()]
        answer = call(world, method, path, "", headers, b"")
        assert_sound(world, answer, f"{kind}: {method} {path!r}")
    check()
