"""One table of header-filtering cases, run against the compiled filters and their pure-Python twin."""
from __future__ import annotations

import importlib
import os

import pytest

from edge_proxy import _headers_py
from edge_proxy.upstream import HeaderBlock

PURE_PYTHON = os.environ.get("EDGE_PROXY_PURE_PYTHON", "") not in ("", "0")


def compiled():
    """The compiled filters, which must be built (tests/test_fastpath_loaded.py says so when they are not)."""
    if PURE_PYTHON:
        pytest.skip("EDGE_PROXY_PURE_PYTHON is set: only the pure-Python twin is under test")
    return importlib.import_module("edge_proxy._headers_c")


@pytest.fixture(params=["py", "c"])
def build(request):
    """The header-filter module under test: the twin, or the compiled module."""
    return _headers_py if request.param == "py" else compiled()


CLIENT = [("host", "gw:8080"), ("authorization", "Bearer lava_sk"), ("content-type", "application/json"),
          ("content-length", "12"), ("accept-encoding", "gzip"), ("user-agent", "OpenAI/Python 1.0"),
          ("x-lava-metadata", "{}"), ("openai-organization", "org-1"), ("x-stainless-os", "Linux")]

UP = [  # id, client headers, key header, key, managed, the block's lines after accept-encoding
    ("the gateway's credential, Host, length and encoding go; the rest passes", CLIENT, b"authorization", None,
     False, ["content-type: application/json", "user-agent: OpenAI/Python 1.0", "openai-organization: org-1",
             "x-stainless-os: Linux"]),
    ("a managed key drops the client's account-selecting headers and goes as Bearer", CLIENT, b"authorization",
     "sk-op", True, ["content-type: application/json", "user-agent: OpenAI/Python 1.0", "x-stainless-os: Linux",
                     "authorization: Bearer sk-op"]),
    ("a key in the provider's own header is sent as it is", [("anthropic-version", "2023-06-01")], b"x-api-key",
     "sk-ant", False, ["anthropic-version: 2023-06-01", "x-api-key: sk-ant"]),
    ("headers a Connection header names are hop-by-hop too",
     [("connection", "keep-alive, X-Trace"), ("x-trace", "1"), ("x-keep", "2")], b"authorization", None, False,
     ["x-keep: 2"]),
    ("a Connection header can even name accept-encoding; never the key's header",
     [("connection", "Accept-Encoding, authorization"), ("x-keep", "2")], b"authorization", "sk", False,
     ["x-keep: 2", "authorization: Bearer sk"]),
    ("a value that is not ASCII goes up as UTF-8", [("x-name", "caf\u00e9")], b"authorization", "", False,
     ["x-name: caf\u00e9"]),
    ("no headers at all", [], b"x-goog-api-key", "g", True, ["x-goog-api-key: g"]),
    ("a client's own key in the provider's key header never goes beside the one the gateway sends",
     [("xi-api-key", "client-own"), ("x-keep", "1")], b"xi-api-key", "sk-byok", False,
     ["x-keep: 1", "xi-api-key: sk-byok"]),
]


@pytest.mark.parametrize("items,key_header,key,managed,expected", [row[1:] for row in UP],
                         ids=[row[0] for row in UP])
def test_request_headers(build, items, key_header, key, managed, expected):
    block = build.request_headers(items, key_header, key, managed=managed)
    assert type(block) is HeaderBlock  # what the upstream client sends as it is (pool._encode_request)
    lines = bytes(block).decode("utf-8").split("\r\n")
    assert lines[-1] == ""
    identity = [] if "accept-encoding" in dict(items).get("connection", "").lower() else ["accept-encoding: identity"]
    assert lines[:-1] == [*identity, *expected]
    assert block.lines == len(lines) - 1


PROVIDER = [(b"content-type", b"application/json"), (b"content-length", b"99"), (b"transfer-encoding", b"chunked"),
            (b"openai-organization", b"org-op"), (b"x-request-id", b"req_1"), (b"anthropic-organization-id", b"a1")]

DOWN = [  # id, provider headers, managed, expected
    ("framing and hop-by-hop headers go; the rest passes", PROVIDER, False,
     [("content-type", "application/json"), ("openai-organization", "org-op"), ("x-request-id", "req_1"),
      ("anthropic-organization-id", "a1")]),
    ("a managed answer drops the operator's account headers", PROVIDER, True,
     [("content-type", "application/json"), ("x-request-id", "req_1")]),
    ("headers a Connection header names go", [(b"connection", b"close, X-Debug"), (b"x-debug", b"1"),
                                              (b"x-ok", b"2")], False, [("x-ok", "2")]),
    ("bytes that are not UTF-8 come through as Latin-1", [(b"x-raw", b"\xe9t\xe9")], False, [("x-raw", "\u00e9t\u00e9")]),
    ("no headers at all", [], True, []),
]


@pytest.mark.parametrize("raw,managed,expected", [row[1:] for row in DOWN], ids=[row[0] for row in DOWN])
def test_response_headers(build, raw, managed, expected):
    assert build.response_headers(raw, managed=managed) == expected


def test_both_builds_give_the_same_block():
    headers_c = compiled()
    for _, items, key_header, key, managed, _ in UP:
        py = _headers_py.request_headers(items, key_header, key, managed=managed)
        c = headers_c.request_headers(items, key_header, key, managed=managed)
        assert (bytes(py), py.lines, type(py)) == (bytes(c), c.lines, type(c))


def test_every_header_a_provider_takes_its_key_in_is_dropped_on_the_way_up():
    """A new `auth` kind in the catalogue must not let a client's own key go up beside the gateway's."""
    from edge_proxy.header_rules import DROP_UP
    from edge_proxy.providers.catalogue import _KEY_HEADERS
    assert {name.decode() for name in _KEY_HEADERS.values()} <= DROP_UP
