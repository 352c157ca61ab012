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
    from .billing_helpers import customer, meter
    meter(gateway, gateway.secret_key, "sdk-meter", "fixed", "tokens_1m", [(0, "1.00")])
    cus = customer(gateway, gateway.secret_key, "1.00")
    out = sdk(gateway, "forward", CUSTOMER_ID=cus, METER_SLUG="sdk-meter")
    assert out["choices"][0]["message"]["content"]
    assert sdk(gateway, "forward", CUSTOMER_ID="cus_unknown", METER_SLUG="sdk-meter")["status"] == 400


def test_the_docs_fetch_pattern_with_a_raw_secret_key(gateway):
    out = sdk(gateway, "fetch_provider")
    assert out["status"] == 200
    assert out["request_id"].startswith("req_")
    assert out["body"]["choices"][0]["message"]["content"]


def test_sdk_errors_carry_our_error_message(gateway):
    out = sdk(gateway, "forward", UPSTREAM_URL="https://evil.example.com/v1/chat/completions")
    assert out["status"] == 403
    assert "catalogue" in out["error"]


def test_usage_and_requests_through_the_sdk(gateway):
    import time

    sent = sdk(gateway, "fetch_provider")
    rid = sent["request_id"]
    deadline = time.monotonic() + 5
    while True:
        got = sdk(gateway, "request_get", REQUEST_ID=rid)
        if "error" not in got or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert got["request_id"] == rid and got["status"] == "completed"
    assert got["model_usage"]["total_tokens"] > 0 and float(got["cost"]) > 0
    listed = sdk(gateway, "requests_list", ARGS=json.dumps({"limit": 5}))
    assert rid in [r["request_id"] for r in listed["data"]] and "has_more" in listed
    usage = sdk(gateway, "usage", START=time.strftime("%Y-%m-%d", time.gmtime()))
    assert usage["totals"]["total_requests"] >= 1
    assert {"date", "start", "end", "total_requests", "total_usage_tokens", "total_cost",
            "total_charge"} <= set(usage["items"][-1])


def test_post_request_reporting_through_the_sdk(gateway):
    import time
    args = {"request_id": f"sdk-{time.time_ns()}", "customer_id": None, "meter_slug": None,
            "input_tokens": 10, "output_tokens": 20, "metadata": {"via": "sdk"}}
    created = sdk(gateway, "request_create", ARGS=json.dumps(args))
    assert created["request_id"] == args["request_id"] and created["metadata"] == {"via": "sdk"}
    assert sdk(gateway, "request_get", REQUEST_ID=args["request_id"])["model_usage"]["total_tokens"] == 30
