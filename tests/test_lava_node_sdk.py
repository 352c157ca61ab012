"""The official Lava Node SDK (@lavapayments/nodejs, pinned in tests/node) works against the gateway unchanged."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_proxy.forward_token import ForwardToken, decode_forward_token

NODE_DIR = Path(__file__).parent / "node"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "@lavapayments").is_dir(),
    reason="node or the Lava SDK is not installed (tests/run.sh installs both)")


def sdk(gateway, scenario: str, **env: str) -> dict:
    run_env = {**os.environ, "BASE_URL": gateway.url + "/v1/", "LAVA_SECRET_KEY": gateway.secret_key, **env}
    out = subprocess.run(["node", str(NODE_DIR / "sdk_check.mjs"), scenario], env=run_env, capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tokens_the_sdk_generates_decode_to_the_same_fields(gateway):
    out = sdk(gateway, "token", CUSTOMER_ID="cus_1", METER_SLUG="meter-a", PROVIDER_KEY="sk-own")
    sk = gateway.secret_key
    want = {
        "secret_only": ForwardToken(sk),
        "customer_meter": ForwardToken(sk, "cus_1", "meter-a"),
        "meter_only": ForwardToken(sk, None, "meter-a"),
        "null_customer_meter": ForwardToken(sk, None, "meter-a"),
        "provider_key": ForwardToken(sk, provider_key="sk-own"),
        "disable_billing": ForwardToken(sk, disable_billing=True),
    }
    assert {name: decode_forward_token(t) for name, t in out["tokens"].items()} == want


def test_every_sdk_provider_url_is_routable(gateway):
    from urllib.parse import urlsplit

    from edge_proxy.providers import Catalogue
    providers = sdk(gateway, "token")["providers"]
    assert len(providers) == 28
    catalogue = Catalogue.load()
    for name, url in providers.items():
        parts = urlsplit(url)
        assert parts.path == "/v1/forward"
        u = parts.query.removeprefix("u=")
        assert catalogue.resolve_url(u + "/chat/completions").provider is catalogue.by_name(name)


def test_gateway_call_with_a_forward_token(gateway, fake):
    out = sdk(gateway, "forward")
    assert out["object"] == "chat.completion"
    assert fake.last().path == "/v1/chat/completions"


def test_gateway_call_with_customer_billing_fields(gateway, fake):
    out = sdk(gateway, "forward", CUSTOMER_ID="cus_1", METER_SLUG="meter-a")
    assert out["choices"][0]["message"]["content"]


def test_the_docs_fetch_pattern_with_a_raw_secret_key(gateway):
    out = sdk(gateway, "fetch_provider")
    assert out["status"] == 200
    assert out["request_id"].startswith("req_")
    assert out["body"]["choices"][0]["message"]["content"]


def test_sdk_errors_carry_our_error_message(gateway):
    out = sdk(gateway, "forward", UPSTREAM_URL="https://evil.example.com/v1/chat/completions")
    assert out["status"] == 403
    assert "catalogue" in out["error"]
