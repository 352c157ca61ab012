"""One table of forward-token cases, run against the compiled decoder and its pure-Python twin."""
from __future__ import annotations

import base64
import json
import os

import pytest

from edge_proxy import forward_token
from edge_proxy._forward_token_py import decode_forward_token as decode_py
from edge_proxy.errors import InvalidToken
from edge_proxy.forward_token import ForwardToken

try:
    from edge_proxy._forward_token_c import decode_forward_token as decode_c
except ImportError:  # pragma: no cover - reported by test_fastpath_compiled_loaded
    decode_c = None


@pytest.fixture(params=["py", "c"])
def decode(request):
    if request.param == "c":
        if decode_c is None:
            pytest.skip("compiled decoder not built")
        return decode_c
    return decode_py


def b64(obj, *, urlsafe=False, pad=True) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return text if pad else text.rstrip("=")


SK = "ep_sk_abc"
# A secret whose token needs '+' or '/' in standard base64 (and '-' or '_' url-safe), and padding.
ODD = "ep_sk_?>?~~~>"

VALID = [
    ("a token with only a secret key decodes", b64({"secret_key": SK}), ForwardToken(SK)),
    ("all fields decode", b64({"secret_key": SK, "customer_id": "cus_1", "meter_slug": "m", "provider_key": "sk-p",
                               "disable_billing": True}), ForwardToken(SK, "cus_1", "m", "sk-p", True)),
    ("the Node SDK's nulls mean absent", b64({"secret_key": SK, "customer_id": None, "meter_slug": "m",
                                              "provider_key": None, "disable_billing": None}),
     ForwardToken(SK, None, "m")),
    ("empty optional strings mean absent", b64({"secret_key": SK, "customer_id": "", "meter_slug": ""}),
     ForwardToken(SK)),
    ("disable_billing false is kept as false", b64({"secret_key": SK, "disable_billing": False}), ForwardToken(SK)),
    ("the standard alphabet decodes", b64({"secret_key": ODD}), ForwardToken(ODD)),
    ("the url-safe alphabet decodes", b64({"secret_key": ODD}, urlsafe=True), ForwardToken(ODD)),
    ("missing padding decodes", b64({"secret_key": ODD}, pad=False), ForwardToken(ODD)),
    ("whitespace and newlines anywhere are ignored", "  " + "\n".join(b64({"secret_key": SK})[i:i + 8]
                                                      for i in range(0, 40, 8)) + b64({"secret_key": SK})[40:] + "\t",
     ForwardToken(SK)),
    ("unknown fields are ignored", b64({"secret_key": SK, "future": {"x": [1, 2]}, "n": 10**40}), ForwardToken(SK)),
    ("unicode values decode", b64({"secret_key": SK, "customer_id": "cus_ü"}), ForwardToken(SK, "cus_ü")),
]

INVALID = [
    ("an empty token", ""),
    ("whitespace only", "   \n"),
    ("non-base64 bytes", "eyJz!!ZWNyZXRfa2V5IjoiYSJ9"),
    ("a non-ASCII character", b64({"secret_key": SK})[:-2] + "é="),
    ("padding in the middle", "eyJz=ZWNyZXRfa2V5IjoiYSJ9"),
    ("three padding characters", b64({"secret_key": SK}, pad=False) + "==="),
    ("a length of 1 mod 4", b64({"secret_key": SK}, pad=False) + "A" * (1 if len(b64({"secret_key": SK}, pad=False)) % 4 == 0 else 5 - len(b64({"secret_key": SK}, pad=False)) % 4)),
    ("base64 of non-JSON", b64(b"hello, world")),
    ("base64 of truncated JSON", b64(b'{"secret_key": "ep_sk_a"')),
    ("JSON that is an array", b64(["secret_key", SK])),
    ("JSON that is a string", b64(SK)),
    ("JSON null", b64(None)),
    ("an object without secret_key", b64({"customer_id": "c"})),
    ("an empty secret key", b64({"secret_key": ""})),
    ("a numeric secret key", b64({"secret_key": 12345})),
    ("a huge number as secret key", b64({"secret_key": 10**400})),
    ("a boolean customer id", b64({"secret_key": SK, "customer_id": True})),
    ("an object meter slug", b64({"secret_key": SK, "meter_slug": {"a": 1}})),
    ("a string disable_billing", b64({"secret_key": SK, "disable_billing": "yes"})),
    ("deep nesting in an unknown field", b64(b'{"secret_key":"ep_sk_a","x":' + b"[" * 5000 + b"]" * 5000 + b"}")),
    ("deep nesting as the document", b64(b"[" * 3000 + b"]" * 3000)),
    ("a token over the size limit", b64({"secret_key": SK, "pad": "x" * 7000})),
    ("a field over the size limit", b64({"secret_key": "s" * 5000})),
    ("invalid UTF-8 inside the JSON", b64(b'{"secret_key":"\xff\xfe"}')),
    ("a bearer scheme left in the token", "Bearer " + b64({"secret_key": SK})),
]


@pytest.mark.parametrize("token,expected", [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_tokens_decode(decode, token, expected):
    assert decode(token) == expected


@pytest.mark.parametrize("token", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_tokens_raise_the_same_error(decode, token):
    with pytest.raises(InvalidToken) as info:
        decode(token)
    assert info.value.status == 401
    assert info.value.body() == InvalidToken().body()


@pytest.mark.parametrize("token", [c[1] for c in VALID] + [c[1] for c in INVALID],
                         ids=[c[0] for c in VALID] + [c[0] for c in INVALID])
def test_both_decoders_agree(token):
    if decode_c is None:
        pytest.skip("compiled decoder not built")

    def outcome(fn):
        try:
            return fn(token)
        except InvalidToken:
            return "invalid"
    assert outcome(decode_c) == outcome(decode_py)


def test_encode_round_trips_through_both_decoders():
    token = forward_token.encode_forward_token(SK, "cus_1", "meter", "sk-p", True)
    assert decode_py(token) == ForwardToken(SK, "cus_1", "meter", "sk-p", True)
    if decode_c is not None:
        assert decode_c(token) == decode_py(token)


def test_fastpath_compiled_loaded():
    """Fails when a build that should be compiled silently fell back to Python."""
    if os.environ.get("EDGE_PROXY_PURE_PYTHON"):
        pytest.skip("EDGE_PROXY_PURE_PYTHON forces the twin")
    assert forward_token.IMPLEMENTATION == "c"
