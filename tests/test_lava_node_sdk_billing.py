"""A user of the official Lava Node SDK (@lavapayments/nodejs, pinned in tests/node) manages customers, meters,
spend keys, secret keys and webhooks against the gateway unchanged."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "@lavapayments").is_dir(),
    reason="node or the Lava SDK is not installed (tests/run.sh installs both)")


def sdk(gateway, scenario: str, key: str | None = None, **args) -> dict:
    """Run one scenario of tests/node/sdk_check.mjs with ARGS; returns the SDK's value (or {"error", "status"})."""
    run_env = {**os.environ, "BASE_URL": gateway.url + "/v1/", "LAVA_SECRET_KEY": key or gateway.secret_key,
               "ARGS": json.dumps(args)}
    out = subprocess.run(["node", str(NODE_DIR / "sdk_check.mjs"), scenario], env=run_env, capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def key(gateway) -> str:
    """A merchant of this module's own, so its lists hold only what these tests made."""
    return gateway.create_merchant("sdk-billing", "10")["secret_key"]


def test_a_customer_is_created_and_listed_through_the_sdk(gateway, key):
    c = sdk(gateway, "customers_create", key, reference_id="user-42", email="ada@example.com", name="Ada Lovelace",
            metadata={"plan": "pro"})
    assert c["customer_id"].startswith("cus_") and c["reference_id"] == "user-42"
    assert c["contact"]["email"] == "ada@example.com" and c["contact"]["first_name"] == "Ada"
    assert c["subscription"] is None and c["metadata"] == {"plan": "pro"}
    listed = sdk(gateway, "customers_list", key, limit=50)
    assert c["customer_id"] in [x["customer_id"] for x in listed["data"]] and listed["has_more"] is False
    assert sdk(gateway, "customers_get", key, customer_id=c["customer_id"]) == c
    assert sdk(gateway, "customers_subscription", key, customer_id=c["customer_id"]) == {"subscription": None}
    updated = sdk(gateway, "customers_update", key, customer_id=c["customer_id"], params={"phone": "+1 555 0100"})
    assert updated["contact"]["phone"] == "+1 555 0100"
    assert sdk(gateway, "customers_delete", key, customer_id=c["customer_id"]) == {"success": True}


def test_a_meter_is_created_and_listed_through_the_sdk(gateway, key):
    m = sdk(gateway, "meters_create", key, name="Chat tokens", rate_type="fixed", tier_type="tokens_1m",
            tiers=[{"start": "0", "rate": "2.5"}, {"start": "1000000", "rate": "2"}])
    assert m["meter_slug"] == "chat-tokens" and m["rate_type"] == "fixed"
    assert m["tiers"] == [{"start": 0, "rate": "2.5", "type": "tokens_1m"},
                          {"start": 1000000, "rate": "2", "type": "tokens_1m"}]
    assert m["meter_id"] in [x["meter_id"] for x in sdk(gateway, "meters_list", key)["data"]]
    renamed = sdk(gateway, "meters_update", key, meter_id=m["meter_id"], params={"name": "Tokens"})
    assert renamed["name"] == "Tokens" and sdk(gateway, "meters_get", key, meter_id=m["meter_id"]) == renamed
    assert sdk(gateway, "meters_delete", key, meter_id=m["meter_id"]) == {"id": m["meter_id"], "deleted": True}


def test_a_spend_key_is_created_listed_rotated_and_revoked_through_the_sdk(gateway, key):
    k = sdk(gateway, "spend_keys_create", key, name="ci", allowed_models=["gpt-4o-mini"],
            spend_limit={"amount": "5", "cycle": "monthly"}, rate_limit={"rpm": 30, "burst": 5})
    assert k["key"].startswith("ep_spk_") and k["status"] == "active"
    assert k["spend_limit"] == {"amount": "5", "cycle": "monthly"} and k["rate_limit"] == {"rpm": 30, "burst": 5}
    listed = sdk(gateway, "spend_keys_list", key, limit=10)["data"]
    assert [x["spend_key_id"] for x in listed] == [k["spend_key_id"]] and "key" not in listed[0]
    rotated = sdk(gateway, "spend_keys_rotate", key, spend_key_id=k["spend_key_id"])
    assert rotated["spend_key_id"] == k["spend_key_id"] and rotated["key"] != k["key"]
    paused = sdk(gateway, "spend_keys_update", key, spend_key_id=k["spend_key_id"], params={"status": "paused"})
    assert paused["status"] == "paused"
    assert sdk(gateway, "spend_keys_get", key, spend_key_id=k["spend_key_id"]) == paused
    assert sdk(gateway, "spend_keys_revoke", key, spend_key_id=k["spend_key_id"]) == {"success": True}


def test_a_secret_key_is_created_listed_and_deleted_through_the_sdk(gateway, key):
    s = sdk(gateway, "secret_keys_create", key, name="deploy")
    assert s["secret_key"].startswith("ep_sk_") and s["name"] == "deploy"
    listed = sdk(gateway, "secret_keys_list", s["secret_key"])["data"]
    assert s["secret_key_id"] in [x["secret_key_id"] for x in listed]
    assert sdk(gateway, "secret_keys_delete", key, secret_key_id=s["secret_key_id"]) == {
        "id": s["secret_key_id"], "deleted": True}


def test_a_webhook_is_created_and_managed_through_the_sdk(gateway, key):
    w = sdk(gateway, "webhooks_create", key, name="events", url="https://example.com/lava")
    assert w["webhook_secret"].startswith("whsec_") and w["url"] == "https://example.com/lava"
    assert w["webhook_id"] in [x["webhook_id"] for x in sdk(gateway, "webhooks_list", key)["data"]]
    moved = sdk(gateway, "webhooks_update", key, webhook_id=w["webhook_id"], params={"url": "https://example.com/2"})
    assert moved["url"] == "https://example.com/2"
    assert sdk(gateway, "webhooks_get", key, webhook_id=w["webhook_id"]) == moved
    assert sdk(gateway, "webhooks_delete", key, webhook_id=w["webhook_id"]) == {"id": w["webhook_id"], "deleted": True}


def test_sdk_errors_carry_our_field_message(gateway, key):
    out = sdk(gateway, "meters_create", key, name="x", rate_type="flat", tier_type="tokens_1m",
              tiers=[{"start": "0", "rate": "1"}])
    assert out["status"] == 400 and "rate_type" in out["error"]
    assert sdk(gateway, "customers_get", key, customer_id="cus_missing")["status"] == 404
