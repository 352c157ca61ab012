"""`edge-proxy customers ...` and `edge-proxy meters ...` as operators' scripts run them: JSON on stdout, and on
bad input one line on stderr with a non-zero exit, never a traceback."""
from __future__ import annotations

import json

import pytest

from .gateway_process import base_env, cli


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return base_env(tmp_path_factory.mktemp("cli") / "cli.db", None)


@pytest.fixture(scope="module")
def key(env) -> str:
    # the operator funds the wallet the customers' balances come from
    return json.loads(cli(env, "merchants", "create", "--name", "cli-merchant", "--balance", "100").stdout)[
        "secret_key"]


def run(env, *args: str) -> dict:
    return json.loads(cli(env, *args).stdout)


def test_customers_create_prints_the_new_customer_and_its_balance(env, key):
    c = run(env, "customers", "create", "--secret-key", key, "--balance", "12.5")
    assert c["customer_id"].startswith("cus_") and c["balance"] == "12.5" and c["autopay"] is None


def test_customers_create_without_a_balance_starts_at_zero(env, key):
    assert run(env, "customers", "create", "--secret-key", key)["balance"] == "0"


def test_customers_create_with_autopay(env, key):
    c = run(env, "customers", "create", "--secret-key", key, "--autopay-threshold", "1", "--autopay-amount", "20")
    assert c["autopay"] == {"threshold": "1", "amount": "20"}


def test_customers_show_prints_the_customer_with_its_balance(env, key):
    cid = run(env, "customers", "create", "--secret-key", key, "--balance", "3")["customer_id"]
    shown = run(env, "customers", "show", "--secret-key", key, "--customer-id", cid)
    assert shown["customer_id"] == cid and shown["balance"] == "3" and shown["subscription"] is None


def test_customers_credit_prints_the_customer_with_the_new_balance(env, key):
    cid = run(env, "customers", "create", "--secret-key", key, "--balance", "0.1")["customer_id"]
    credited = run(env, "customers", "credit", "--secret-key", key, "--customer-id", cid, "--amount", "0.2")
    assert credited["customer_id"] == cid and credited["balance"] == "0.3"
    assert run(env, "customers", "show", "--secret-key", key, "--customer-id", cid)["balance"] == "0.3"


def test_meters_create_prints_a_meter_with_one_tier_from_zero(env, key):
    m = run(env, "meters", "create", "--secret-key", key, "--slug", "chat", "--rate-type", "fixed",
            "--tier-type", "tokens_1m", "--rate", "2.50")
    assert m["meter_id"].startswith("mtr_") and (m["meter_slug"], m["name"], m["rate_type"]) == ("chat", "chat",
                                                                                                  "fixed")
    assert m["tiers"] == [{"start": 0, "rate": "2.50", "type": "tokens_1m"}]


BAD = [
    ("an unknown secret key", ["customers", "create", "--secret-key", "ep_sk_nope"], "secret key"),
    ("a negative balance", ["customers", "create", "--secret-key", "{key}", "--balance", "-1"], "--balance"),
    ("a balance that is not a number", ["customers", "create", "--secret-key", "{key}", "--balance", "ten"],
     "--balance"),
    ("autopay without an amount", ["customers", "create", "--secret-key", "{key}", "--autopay-threshold", "1"],
     "--autopay"),
    ("an autopay amount of zero", ["customers", "create", "--secret-key", "{key}", "--autopay-threshold", "1",
                                   "--autopay-amount", "0"], "--autopay-amount"),
    ("an unknown customer", ["customers", "show", "--secret-key", "{key}", "--customer-id", "cus_nope"],
     "--customer-id"),
    ("a credit to an unknown customer", ["customers", "credit", "--secret-key", "{key}", "--customer-id", "cus_x",
                                         "--amount", "1"], "--customer-id"),
    ("a credit of zero", ["customers", "credit", "--secret-key", "{key}", "--customer-id", "{cid}", "--amount", "0"],
     "--amount"),
    ("a credit with ten decimals", ["customers", "credit", "--secret-key", "{key}", "--customer-id", "{cid}",
                                    "--amount", "0.0000000001"], "--amount"),
    ("a bad slug", ["meters", "create", "--secret-key", "{key}", "--slug", "Bad Slug", "--rate-type", "fixed",
                    "--tier-type", "requests", "--rate", "1"], "--slug"),
    ("a negative rate", ["meters", "create", "--secret-key", "{key}", "--slug", "neg", "--rate-type", "fixed",
                         "--tier-type", "requests", "--rate", "-1"], "--rate"),
    ("a taken slug", ["meters", "create", "--secret-key", "{key}", "--slug", "taken", "--rate-type", "percentage",
                      "--tier-type", "requests", "--rate", "10"], "--slug: 'taken' is already used"),
    ("an unknown rate type", ["meters", "create", "--secret-key", "{key}", "--slug", "s", "--rate-type", "flat",
                              "--tier-type", "requests", "--rate", "1"], "--rate-type"),
    ("an unknown tier type", ["meters", "create", "--secret-key", "{key}", "--slug", "s", "--rate-type", "fixed",
                              "--tier-type", "tokens", "--rate", "1"], "--tier-type"),
    ("a missing flag", ["customers", "credit", "--secret-key", "{key}", "--amount", "1"], "--customer-id"),
    ("a credit the wallet cannot cover", ["customers", "credit", "--secret-key", "{key}", "--customer-id", "{cid}",
                                          "--amount", "1000000"], "insufficient balance"),
    ("an opening balance the wallet cannot cover", ["customers", "create", "--secret-key", "{key}", "--balance",
                                                    "1000000"], "insufficient balance"),
    ("a merchant funding over a billion USD", ["merchants", "credit", "--secret-key", "{key}", "--amount",
                                               "1000000001"], "--amount"),
]


@pytest.fixture(scope="module")
def cid(env, key) -> str:
    """A customer, and a meter with the slug "taken", for the bad-input cases."""
    run(env, "meters", "create", "--secret-key", key, "--slug", "taken", "--rate-type", "fixed", "--tier-type",
        "requests", "--rate", "1")
    return run(env, "customers", "create", "--secret-key", key)["customer_id"]


@pytest.mark.parametrize("args,needle", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_on_stderr_and_a_non_zero_exit(env, key, cid, args, needle):
    out = cli(env, *[a.format(key=key, cid=cid) for a in args], check=False)
    assert out.returncode != 0 and out.stdout == ""
    assert needle in out.stderr and "Traceback" not in out.stderr
