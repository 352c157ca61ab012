"""The money rules (billing/charging.py, ledger.py, bounds.py), one input at a time: what a payer can be made to
pay, what is refused before anything is sent, and who may create money. In-process (tests/inprocess.py), with the
shipped price table and no operator default, so an unknown model is unpriced, as in production.

Each row below is an input that got past the old rules: a body with a space or a byte-order mark before it was
admitted at $0, as were odd `max_tokens` values, unknown models and unpriced providers; a merchant could fund its
own wallet and credit its customers from nowhere; a request-log outage released reservations.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from edge_proxy.billing import ledger
from edge_proxy.billing.reconcile import verify
from edge_proxy.forward_token import encode_forward_token
from edge_proxy.money import parse_usd, usd

from .fake_provider import COUNTED, FakeProvider
from .inprocess import Answer, InProcess, Proto, Scope

CHAT = "/providers/openai/v1/chat/completions"
PROMPT = [{"role": "user", "content": "Say hello"}]
BODY = {"model": "gpt-4o", "max_tokens": 100, "messages": PROMPT}
NO_DEFAULTS = {"EDGE_PROXY_PRICES_FILE": "", "EDGE_PROXY_ADMIN_TOKEN": "admin-t0ken", "EDGE_PROXY_BYOK_FEE": "0.01",
               "EDGE_PROXY_UPSTREAM_DEEPINFRA": "", "EDGE_PROXY_PROVIDER_KEY_DEEPINFRA": "sk-managed-deepinfra"}


class Case:
    def __init__(self, gw: InProcess, fake: FakeProvider) -> None:
        self.gw, self.fake = gw, fake

    async def send(self, body: bytes | dict[str, Any], path: str = CHAT, key: str | None = None) -> Answer:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.gw.call("POST", path, body=data, key=key or self.gw.secret_key)

    async def rest(self, method: str, path: str, body: Any = None, key: str | None = None,
                   headers: dict[str, str] | None = None) -> Answer:
        return await self.gw.call(method, path, body=body, key=key or self.gw.secret_key, headers=headers)

    async def empty_wallet(self) -> None:
        await self.gw.svc.store.db.execute("UPDATE merchants SET balance_nanos = 0")
        await self.gw.svc.store.db.execute("UPDATE ledger_accounts SET balance_nanos = 0")  # as if never funded
        await self.gw.svc.store.db.execute("DELETE FROM transfers")

    def sent(self) -> int:
        return len(self.fake.received)


def refused(answer: Answer, status: int, kind: str, needle: str = "") -> None:
    assert answer.status == status, answer.body
    error = answer.json()["error"]
    assert error["type"] == kind and needle in error["message"], error


# --- a payer who cannot pay is refused, whatever the body looks like -----------------------------------------

async def a_body_with_leading_whitespace_is_priced_like_any_other(c: Case) -> None:
    await c.empty_wallet()
    before = c.sent()
    refused(await c.send(b"  \n " + json.dumps(BODY).encode()), 402, "insufficient_balance")
    assert c.sent() == before


async def a_body_with_a_byte_order_mark_is_priced_like_any_other(c: Case) -> None:
    await c.empty_wallet()
    before = c.sent()
    refused(await c.send(b"\xef\xbb\xbf" + json.dumps(BODY).encode()), 402, "insufficient_balance")
    assert c.sent() == before


@pytest.mark.parametrize("value", [-1, 0, 1.5, 100.0, "100", True, 10**30], ids=repr)
def test_an_output_limit_that_is_not_a_whole_number_in_range_is_a_400(value, tmp_path):
    async def rule(c: Case) -> None:
        before = c.sent()
        refused(await c.send({**BODY, "max_tokens": value}), 400, "invalid_request_error", "max_tokens")
        assert c.sent() == before
    run(rule, tmp_path)


async def an_output_limit_above_the_models_is_a_400(c: Case) -> None:
    refused(await c.send({**BODY, "max_tokens": 16385}), 400, "invalid_request_error", "16384")


async def an_unknown_model_is_refused_on_the_managed_key(c: Case) -> None:
    before = c.sent()
    refused(await c.send({**BODY, "model": "brand-new-model-x"}), 403, "model_not_priced", "provider_key")
    assert c.sent() == before


async def an_unknown_model_passes_with_the_callers_own_key_logged_unpriced(c: Case) -> None:
    token = encode_forward_token(c.gw.secret_key, provider_key="sk-callers-own")
    answer = await c.send({**BODY, "model": "brand-new-model-x"}, key=token)
    assert answer.status == 200, answer.body
    await c.gw.drain()
    [record] = (await c.rest("GET", "/v1/requests")).json()["data"]
    assert record["priced"] is False and record["cost"] is None


async def a_provider_without_prices_is_refused_on_the_managed_key(c: Case) -> None:
    before = c.sent()
    refused(await c.send({"model": "meta-llama/Meta-Llama-3.1-8B-Instruct", "max_tokens": 10, "messages": PROMPT},
                         path="/providers/deepinfra/v1/openai/chat/completions"), 403, "model_not_priced")
    assert c.sent() == before


async def an_endpoint_the_gateway_cannot_meter_is_refused_on_the_managed_key(c: Case) -> None:
    before = c.sent()
    refused(await c.gw.call("GET", "/providers/openai/v1/files", key=c.gw.secret_key), 403, "endpoint_not_metered")
    refused(await c.send({"purpose": "batch"}, path="/providers/openai/v1/batches"), 403, "endpoint_not_metered")
    assert c.sent() == before


async def content_by_reference_is_refused_on_the_managed_key(c: Case) -> None:
    # by URL: a file by id is refused before this as a stored object (test_stored_objects.py)
    body = {**BODY, "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_url": "https://example.com/a.pdf"}}, {"type": "text", "text": "summarise"}]}]}
    refused(await c.send(body), 400, "input_not_bounded", "file")


async def a_background_response_is_refused_on_the_managed_key(c: Case) -> None:
    """OpenAI answers `background: true` at once (`queued`, usage null) and generates afterwards, beyond what the
    gateway reads: on the operator's key nobody would pay for that output."""
    body = {"model": "gpt-4o-mini", "input": "Say hello", "max_output_tokens": 20, "background": True}
    before = c.sent()
    for path in ("/providers/openai/v1/responses", "/v1/responses"):
        refused(await c.send(body, path=path), 400, "invalid_request_error", "background")
    assert c.sent() == before
    byok = encode_forward_token(c.gw.secret_key, provider_key="sk-their-own")
    answer = await c.send(body, path="/providers/openai/v1/responses", key=byok)
    assert answer.status == 200 and c.sent() == before + 1, answer.body
    answer = await c.send({**body, "background": False}, path="/providers/openai/v1/responses")
    assert answer.status == 200, answer.body


async def an_image_by_url_is_reserved_for_its_pixels_not_its_bytes(c: Case) -> None:
    body = {**BODY, "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}
    q = c.gw.svc.billing.quote
    plain = {**BODY, "max_tokens": 1}
    from edge_proxy.request_path.plan import providers_plan
    from .inprocess import Scope
    scope = Scope("POST", CHAT, "", {})
    principal = await c.gw.svc.auth.authenticate(c.gw.secret_key)
    with_image = q(principal, providers_plan(c.gw.svc, scope, scope.headers, "", json.dumps(body).encode()).attempts[0])
    without = q(principal, providers_plan(c.gw.svc, scope, scope.headers, "", json.dumps(plain).encode()).attempts[0])
    assert with_image.payer - without.payer >= 6_000 * 2_500  # gpt-4o input: $2.50 per 1M tokens = 2,500 nanos


async def a_characters_meter_cannot_price_a_proxied_request(c: Case) -> None:
    await c.rest("POST", "/v1/meters", {"name": "tts", "meter_slug": "tts", "rate_type": "fixed",
                                        "tier_type": "characters_1m", "tiers": [{"start": "0", "rate": "5"}]})
    customer = (await c.rest("POST", "/v1/customers", {"name": "Ada", "balance": "1"})).json()
    token = encode_forward_token(c.gw.secret_key, customer_id=customer["customer_id"], meter_slug="tts")
    refused(await c.send(BODY, key=token), 400, "invalid_request_error", "characters_1m")


async def a_token_count_costs_nothing_on_any_key(c: Case) -> None:
    """A count_tokens call is free: no BYOK fee, no per-request meter charge, no meter volume, no reservation."""
    await c.rest("POST", "/v1/meters", {"name": "req", "meter_slug": "req", "rate_type": "fixed",
                                        "tier_type": "requests", "tiers": [{"start": "0", "rate": "0.5"}]})
    customer = (await c.rest("POST", "/v1/customers", {"name": "Ada", "balance": "2"})).json()["customer_id"]
    count = {"model": "claude-haiku-4-5", "messages": PROMPT}
    keys = {"byok": encode_forward_token(c.gw.secret_key, provider_key="sk-callers-own"),
            "customer": encode_forward_token(c.gw.secret_key, customer_id=customer, meter_slug="req")}
    for key in keys.values():
        for path in ("/providers/anthropic/v1/messages/count_tokens", "/v1/messages/count_tokens"):
            answer = await c.send(count, path=path, key=key)
            assert answer.status == 200 and "input_tokens" in answer.json(), answer.body
    await c.gw.drain()
    records = (await c.rest("GET", "/v1/requests")).json()["data"]
    assert len(records) == 4 and all(r["charge"]["amount"] == "0" for r in records), records
    assert (await c.rest("GET", "/v1/wallet")).json()["balance"] == "98"  # $2 went to Ada; no BYOK fee
    assert (await c.rest("GET", f"/v1/customers/{customer}")).json()["balance"] == "2"
    # and the same meter does charge a chat request: the count was free because it is a count
    assert (await c.send(BODY, key=keys["customer"])).status == 200
    await c.gw.drain()
    assert (await c.rest("GET", f"/v1/customers/{customer}")).json()["balance"] == "1.5"


# --- a provider's count that cannot be a count is never taken as one, nor as free -------------------------------

ABSURD_USAGE = [  # (id, the `usage` a provider answers a plain chat request with)
    ("a count past any real one", {"prompt_tokens": 10**20, "completion_tokens": 5, "total_tokens": 10**20 + 5}),
    ("a count at the 64-bit limit", {"prompt_tokens": 2**63 - 1, "completion_tokens": 2**63 - 1}),
    ("a fractional count", {"prompt_tokens": 1.5, "completion_tokens": 5, "total_tokens": 6.5}),
    ("a count as text", {"prompt_tokens": "many", "completion_tokens": 5}),
    ("no usage at all", None),
]


@pytest.mark.parametrize("usage", [c[1] for c in ABSURD_USAGE], ids=[c[0] for c in ABSURD_USAGE])
def test_an_answer_whose_usage_cannot_be_read_is_billed_an_estimate_and_holds_up_nothing(usage, tmp_path):
    """Before: a count of 1e20 or 2**63 - 1 went to the request log's 64-bit columns, the store refused the batch
    and the log writer retried it for ever (nothing after it was billed, and once a lease had passed every request
    was a 503); a count that was not a whole number, or no usage, billed the request as free."""
    async def rule(c: Case) -> None:
        c.fake.chat_usage = usage
        assert (await c.send(BODY)).status == 200
        c.fake.chat_usage = COUNTED
        assert (await c.send(BODY)).status == 200  # an ordinary request after it
        await c.gw.drain()
        absurd, plain = reversed((await c.rest("GET", "/v1/requests")).json()["data"])
        assert absurd["usage_source"] == "estimated" and plain["usage_source"] == "provider", (absurd, plain)
        assert absurd["model_usage"]["input_tokens"] == len(json.dumps(BODY)) // 4
        assert float(absurd["cost"]) > 0 and float(plain["cost"]) > 0
        wallet = (await c.rest("GET", "/v1/wallet")).json()["balance"]
        assert round((100 - float(wallet)) * 10**9) == round((float(absurd["cost"]) + float(plain["cost"])) * 10**9)
        report = await verify(c.gw.svc.store.db)
        assert report["ok"] is True, report
    run(rule, tmp_path)


async def a_reported_request_priced_past_any_amount_takes_what_its_customer_holds(c: Case) -> None:
    """A meter may charge up to 1e9 USD per 1M characters and a report may count 1e12 of them: uncapped, 1e24
    nanos overflowed the request log's 64-bit columns (a 500). One charge is at most 1e9 USD, like any amount."""
    await c.rest("POST", "/v1/meters", {"name": "tts", "meter_slug": "tts", "rate_type": "fixed",
                                        "tier_type": "characters_1m", "tiers": [{"start": "0", "rate": "999999999"}]})
    customer = (await c.rest("POST", "/v1/customers", {"name": "Ada", "balance": "1"})).json()["customer_id"]
    answer = await c.rest("POST", "/v1/requests", {"request_id": "tts-1", "customer_id": customer,
                                                   "meter_slug": "tts", "input_characters": 10**12})
    assert answer.status == 201, answer.body
    record = answer.json()
    assert record["charge"]["amount"] == "1" and record["uncollected"] == "999999999", record
    assert (await c.rest("GET", f"/v1/customers/{customer}")).json()["balance"] == "0"
    assert (await c.rest("GET", "/v1/wallet")).json()["balance"] == "100"  # 1 went to Ada, and came back
    assert (await verify(c.gw.svc.store.db))["ok"] is True


async def a_reported_request_owes_the_operator_nothing(c: Case) -> None:
    """A post-request report is usage that did not pass through the gateway: the merchant called the provider with
    its own key and paid it. Before, naming the model made the merchant pay the operator its list cost as well."""
    report = {"request_id": "ext-1", "provider": "openai", "model": "gpt-4o", "input_tokens": 1_000_000}
    answer = await c.rest("POST", "/v1/requests", report)
    assert answer.status == 201 and answer.json()["cost"] == "2.5", answer.body  # priced, for the usage reports
    assert answer.json()["charge"]["amount"] == "0"
    assert (await c.rest("GET", "/v1/wallet")).json()["balance"] == "100"
    assert await c.gw.svc.balances.balance(ledger.REVENUE) == 0
    assert (await verify(c.gw.svc.store.db))["ok"] is True


ANSWER_MODELS = [  # (id, the model the provider's answer names, stream, the model logged and priced)
    ("a name the table does not know keeps the model asked for", "gpt-4o-unannounced-snapshot", False, "gpt-4o"),
    ("the same in a stream's usage chunk", "gpt-4o-unannounced-snapshot", True, "gpt-4o"),
    ("a snapshot the table knows is priced as itself", "gpt-4o-2024-05-13", False, "gpt-4o-2024-05-13"),
]


@pytest.mark.parametrize("named,stream,logged", [r[1:] for r in ANSWER_MODELS], ids=[r[0] for r in ANSWER_MODELS])
def test_the_model_an_answer_names_never_makes_a_priced_request_free(named, stream, logged, tmp_path):
    """Before, the answer's model replaced the one asked for: one the table could not price (a provider's new
    snapshot or alias) logged the managed-key request `priced: false`, `cost: null`, and nobody paid for it."""
    async def rule(c: Case) -> None:
        c.fake.chat_model = named
        body = {**BODY, "stream": True, "stream_options": {"include_usage": True}} if stream else BODY
        assert (await c.send(body)).status == 200
        await c.gw.drain()
        [record] = (await c.rest("GET", "/v1/requests")).json()["data"]
        assert record["model"] == logged and record["priced"] is True and float(record["cost"]) > 0, record
        assert (await c.rest("GET", "/v1/wallet")).json()["balance"] == usd(100 * 10**9 - round(float(record["cost"])
                                                                                           * 10**9))
    run(rule, tmp_path)


# --- only the operator creates money ---------------------------------------------------------------------------

async def a_merchant_cannot_fund_its_own_wallet(c: Case) -> None:
    refused(await c.rest("POST", "/v1/wallet/credit", {"amount": "1000000"}), 403, "forbidden", "operator")
    assert (await c.rest("GET", "/v1/wallet")).json()["balance"] == "100"


async def a_customer_credit_comes_from_the_wallet_and_no_further(c: Case) -> None:
    customer = (await c.rest("POST", "/v1/customers", {"name": "Ada"})).json()["customer_id"]
    refused(await c.rest("POST", f"/v1/customers/{customer}/credit", {"amount": "100.01"}), 402,
            "insufficient_balance")
    answer = await c.rest("POST", f"/v1/customers/{customer}/credit", {"amount": "40"},
                          headers={"idempotency-key": "topup-1"})
    assert answer.status == 200 and answer.json()["balance"] == "40", answer.body
    again = await c.rest("POST", f"/v1/customers/{customer}/credit", {"amount": "40"},
                         headers={"idempotency-key": "topup-1"})
    assert again.json()["balance"] == "40"  # the same key again moves nothing
    assert (await c.rest("GET", "/v1/wallet")).json()["balance"] == "60"
    refused(await c.rest("POST", "/v1/customers", {"name": "Bob", "balance": "61"}), 402, "insufficient_balance")
    names = [x["contact"]["name"] for x in (await c.rest("GET", "/v1/customers")).json()["data"]]
    assert names == ["Ada"]  # the customer whose opening balance was refused was not kept


async def the_operator_funds_a_wallet_once_per_key_and_never_past_the_range(c: Case) -> None:
    admin = {"authorization": "Bearer admin-t0ken", "idempotency-key": "wire-42"}
    mid = c.gw.merchant_id
    for _ in range(2):
        answer = await c.gw.call("POST", f"/admin/merchants/{mid}/credit", body={"amount": "5"}, headers=admin)
        assert answer.status == 200 and answer.json()["balance"] == "105", answer.body
    big = {"authorization": "Bearer admin-t0ken"}
    statuses = [(await c.gw.call("POST", f"/admin/merchants/{mid}/credit", body={"amount": "1000000000"},
                                 headers=big)).status for _ in range(5)]
    assert statuses == [200, 200, 200, 402, 402]  # a balance stays under 4e18 nanos, an integer
    [(balance, kind)] = await c.gw.svc.store.db.fetchall(
        "SELECT balance_nanos, typeof(balance_nanos) FROM merchants WHERE merchant_id = ?", mid)
    assert kind == "integer" and balance == 3_000_000_105 * 10**9
    refused(await c.gw.call("POST", f"/admin/merchants/{mid}/credit", body={"amount": "1000000000.01"},
                            headers=big), 400, "invalid_request_error", "amount")


async def an_idempotency_key_is_one_credit_and_never_stands_in_for_another(c: Case) -> None:
    """The same key again is a replay, answered as before; the same key for another customer, amount or account is
    a 409 that moves nothing. Before, it was a 200 that moved nothing too, so the caller believed it was done."""
    ada = (await c.rest("POST", "/v1/customers", {"name": "Ada"})).json()["customer_id"]
    bob = (await c.rest("POST", "/v1/customers", {"name": "Bob"})).json()["customer_id"]
    key = {"idempotency-key": "topup-7"}
    answer = await c.rest("POST", f"/v1/customers/{ada}/credit", {"amount": "5"}, headers=key)
    assert answer.status == 200 and answer.json()["balance"] == "5", answer.body
    refused(await c.rest("POST", f"/v1/customers/{bob}/credit", {"amount": "5"}, headers=key), 409, "conflict",
            "Idempotency-Key")
    refused(await c.rest("POST", f"/v1/customers/{ada}/credit", {"amount": "6"}, headers=key), 409, "conflict")
    again = await c.rest("POST", f"/v1/customers/{ada}/credit", {"amount": "5"}, headers=key)
    assert again.status == 200 and again.json()["balance"] == "5", again.body
    assert (await c.rest("GET", f"/v1/customers/{bob}")).json()["balance"] == "0"
    assert (await c.rest("GET", "/v1/wallet")).json()["balance"] == "95"
    admin = {"authorization": "Bearer admin-t0ken", "idempotency-key": "wire-9"}
    mid = c.gw.merchant_id
    funded = await c.gw.call("POST", f"/admin/merchants/{mid}/credit", body={"amount": "5"}, headers=admin)
    assert funded.status == 200 and funded.json()["balance"] == "100", funded.body
    refused(await c.gw.call("POST", f"/admin/merchants/{mid}/credit", body={"amount": "50"}, headers=admin), 409,
            "conflict")
    fix = {"transfer_id": "fix-1", "from": f"merchant:{mid}", "to": f"customer:{bob}", "amount": "1",
           "kind": "correction"}
    bearer = {"authorization": "Bearer admin-t0ken"}
    assert (await c.gw.call("POST", "/admin/transfers", body=fix, headers=bearer)).status == 201
    assert (await c.gw.call("POST", "/admin/transfers", body=fix, headers=bearer)).status == 200
    refused(await c.gw.call("POST", "/admin/transfers", body={**fix, "amount": "2"}, headers=bearer), 409, "conflict")
    assert (await c.rest("GET", "/v1/wallet")).json()["balance"] == "99"
    assert (await verify(c.gw.svc.store.db))["ok"] is True


NOT_AN_ACCOUNT = ["operator:foo", "operator:Revenue", "operator:FUNDING", "operator:funding ", "operator:funding"]


@pytest.mark.parametrize("account", NOT_AN_ACCOUNT, ids=repr)
@pytest.mark.parametrize("side", ["from", "to"])
def test_an_operator_transfer_names_only_real_accounts(account, side, tmp_path):
    """Before, any `operator:<name>` but operator:funding passed: a refund from "operator:foo" (or "operator:FUNDING",
    "operator:Revenue") made money from nowhere into a wallet, and one to it made money vanish; the ledger check then
    failed. Only operator:revenue is the operator's here (funding goes through /admin/merchants/{id}/credit)."""
    async def rule(c: Case) -> None:
        wallet = f"merchant:{c.gw.merchant_id}"
        body = {"transfer_id": "t-1", "from": account, "to": wallet, "amount": "1", "kind": "refund"}
        if side == "to":
            body.update({"from": wallet, "to": account})
        refused(await c.gw.call("POST", "/admin/transfers", body=body, headers={"authorization": "Bearer admin-t0ken"}),
                400, "invalid_request_error", "from/to")
        assert (await c.rest("GET", "/v1/wallet")).json()["balance"] == "100"
        assert (await verify(c.gw.svc.store.db))["ok"] is True
    run(rule, tmp_path)


# --- an outage never frees money that may have been spent ------------------------------------------------------

async def a_log_store_outage_keeps_reservations_and_then_refuses_new_ones(c: Case) -> None:
    svc = c.gw.svc
    held_before = len(svc.billing.inflight)

    async def down(records: list[Any]) -> None:
        raise ConnectionError("the request log is down")
    svc.log_queue.commit = down
    answers = [await c.send(BODY) for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 200]
    await asyncio.sleep(0.2)  # the writer tries, fails, and (spill_after 0) sends them to disk
    assert len(svc.billing.inflight) == held_before + 3  # spilled, so still held: the lease cannot reuse them
    await asyncio.sleep(1.1)  # longer than a lease lasts (EDGE_PROXY_LEASE_TTL=1)
    refused(await c.send(BODY), 503, "service_unavailable", "request log")


# --- a meter changed between admission and billing ------------------------------------------------------------
METER_CHANGES = [  # (id, what happens to the meter after admission, the charge: its price when the writer bills)
    ("a meter deleted before billing still prices what it admitted", "delete", "0.3"),
    ("a meter re-priced before billing prices at its new price", "reprice", "0.5"),
    ("a deleted meter whose slug is made again prices what it admitted, not the new one", "replace", "0.3"),
]


@pytest.mark.parametrize("change,charged", [r[1:] for r in METER_CHANGES], ids=[r[0] for r in METER_CHANGES])
def test_a_meter_changed_between_admission_and_billing(change, charged, tmp_path):
    """The charge is the admitted meter's price when the log writer bills the request (billing/settle.py): one
    rule, whatever the caches hold; the reservation is given back once, and the ledger still sums."""
    async def rule(c: Case) -> None:
        svc = c.gw.svc
        meter = {"name": "calls", "meter_slug": "calls", "rate_type": "fixed", "tier_type": "requests",
                 "tiers": [{"start": "0", "rate": "0.3"}]}
        meter_id = (await c.rest("POST", "/v1/meters", meter)).json()["meter_id"]
        customer = (await c.rest("POST", "/v1/customers", {"name": "Ada", "balance": "2"})).json()["customer_id"]
        token = encode_forward_token(c.gw.secret_key, customer_id=customer, meter_slug="calls")
        assert (await c.send(BODY, key=token)).status == 200  # the writer has seen the meter (its cache, if any)
        await c.gw.drain()
        held, put = [], svc.log_queue.put
        svc.log_queue.put = held.append  # type: ignore[method-assign]  # admitted and answered, not billed yet
        answer = await c.send(BODY, key=token)
        assert answer.status == 200 and len(held) == 1 and len(svc.billing.inflight) == 1
        if change == "reprice":
            await c.rest("PATCH", f"/v1/meters/{meter_id}", {"tiers": [{"start": "0", "rate": "0.5"}]})
            assert svc.auth.cache.get(token) is None  # a key event: the next request reserves at the new price
        else:
            assert (await c.rest("DELETE", f"/v1/meters/{meter_id}")).status == 200
        if change == "replace":
            assert (await c.rest("POST", "/v1/meters", {**meter, "tiers": [{"start": "0", "rate": "0.9"}]})).status \
                == 201
        svc.log_queue.put = put  # type: ignore[method-assign]
        put(held[0])
        await c.gw.drain()
        assert svc.billing.inflight == {}  # the reservation is given back, once
        rid = answer.header("x-lava-request-id")
        record = (await c.rest("GET", f"/v1/requests/{rid}")).json()
        assert record["charge"]["amount"] == charged and record["meter_id"] == meter_id, record
        balance = (await c.rest("GET", f"/v1/customers/{customer}")).json()["balance"]
        assert parse_usd(balance) == parse_usd("2") - parse_usd("0.3") - parse_usd(charged)
        assert (await verify(svc.store.db))["ok"] is True
    run(rule, tmp_path)


# --- the ledger proves itself -----------------------------------------------------------------------------------

async def after_requests_and_credits_the_ledger_verifies(c: Case) -> None:
    customer = (await c.rest("POST", "/v1/customers", {"name": "Ada", "balance": "2"})).json()["customer_id"]
    await c.rest("POST", "/v1/meters", {"name": "m", "meter_slug": "m", "rate_type": "percentage",
                                        "tier_type": "tokens_1m", "tiers": [{"start": "0", "rate": "25"}]})
    token = encode_forward_token(c.gw.secret_key, customer_id=customer, meter_slug="m")
    for key in (c.gw.secret_key, token, token):
        assert (await c.send(BODY, key=key)).status == 200
    await c.gw.drain()
    report = await verify(c.gw.svc.store.db)
    assert report["ok"] is True and report["problems"] == [], report
    assert report["sum_nanos"] == 100 * 10**9  # what the operator funded, and not a nano more
    revenue = await c.gw.svc.balances.balance(ledger.REVENUE)
    records = (await c.rest("GET", "/v1/requests")).json()["data"]
    assert revenue == sum(round(float(r["cost"]) * 10**9) for r in records) > 0
    await c.gw.svc.store.db.execute("UPDATE customers SET balance_nanos = balance_nanos + 1")  # money from nowhere
    tampered = await verify(c.gw.svc.store.db)
    assert tampered["ok"] is False and any("sum to 1 nanos" in p for p in tampered["problems"])


async def a_stream_whose_handler_is_cancelled_midway_is_logged_once_and_relays_no_more(c: Case) -> None:
    # The chunks of a stream are relayed by a task of their own (request_path/relay.py): cancelling the handler,
    # as a server stopping does, must stop that task too, and the request is still logged, once, with what passed.
    c.fake.slow_seconds = 0.2
    body = json.dumps({**BODY, "model": "gpt-4o+fake-slow-stream", "stream": True}).encode()
    proto = Proto(body)
    token = encode_forward_token(c.gw.secret_key, provider_key="sk-callers-own")  # the fake's model is unpriced
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json",
               "content-length": str(len(body))}
    handler = asyncio.ensure_future(c.gw.app.__rsgi__(Scope("POST", CHAT, "", headers), proto))
    async with asyncio.timeout(5):
        while not proto.answer.body:  # the first event has passed (the head was sent before it)
            await asyncio.sleep(0.01)
    handler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await handler
    relayed = proto.answer.body
    await asyncio.sleep(0.5)  # the provider would have sent two more events by now
    assert proto.answer.body == relayed
    await c.gw.drain()
    [record] = (await c.rest("GET", "/v1/requests")).json()["data"]
    assert record["stream"] is True and record["model_usage"]["input_tokens"] > 0, record


RULES: list[Callable[[Case], Awaitable[None]]] = [
    a_stream_whose_handler_is_cancelled_midway_is_logged_once_and_relays_no_more,
    a_body_with_leading_whitespace_is_priced_like_any_other,
    a_body_with_a_byte_order_mark_is_priced_like_any_other,
    an_output_limit_above_the_models_is_a_400,
    an_unknown_model_is_refused_on_the_managed_key,
    an_unknown_model_passes_with_the_callers_own_key_logged_unpriced,
    a_provider_without_prices_is_refused_on_the_managed_key,
    an_endpoint_the_gateway_cannot_meter_is_refused_on_the_managed_key,
    content_by_reference_is_refused_on_the_managed_key,
    a_background_response_is_refused_on_the_managed_key,
    an_image_by_url_is_reserved_for_its_pixels_not_its_bytes,
    a_characters_meter_cannot_price_a_proxied_request,
    a_token_count_costs_nothing_on_any_key,
    a_reported_request_priced_past_any_amount_takes_what_its_customer_holds,
    a_reported_request_owes_the_operator_nothing,
    a_merchant_cannot_fund_its_own_wallet,
    a_customer_credit_comes_from_the_wallet_and_no_further,
    an_idempotency_key_is_one_credit_and_never_stands_in_for_another,
    the_operator_funds_a_wallet_once_per_key_and_never_past_the_range,
    a_log_store_outage_keeps_reservations_and_then_refuses_new_ones,
    after_requests_and_credits_the_ledger_verifies,
]


def run(rule: Callable[[Case], Awaitable[None]], tmp_path: Any) -> None:
    async def scenario() -> None:
        async with FakeProvider() as fake:
            env = {**NO_DEFAULTS, "EDGE_PROXY_UPSTREAM_DEEPINFRA": fake.url + "/v1/openai",
                   "EDGE_PROXY_LEASE_TTL": "1", "EDGE_PROXY_LOG_SPILL_AFTER": "0"}
            async with InProcess(tmp_path, fake.url, env) as gw:
                await rule(Case(gw, fake))
    asyncio.run(scenario())


@pytest.mark.parametrize("rule", RULES, ids=[r.__name__ for r in RULES])
def test_money_rule(rule, tmp_path):
    run(rule, tmp_path)


def test_a_forward_token_cannot_smuggle_a_negative_or_odd_amount():
    """Amounts come only from the operator's and merchant's calls, never from a token: the fields are strings."""
    token = base64.b64encode(json.dumps({"secret_key": "ep_sk_x", "disable_billing": "yes"}).encode()).decode()
    from edge_proxy.errors import InvalidToken
    from edge_proxy.forward_token import decode_forward_token
    with pytest.raises(InvalidToken):
        decode_forward_token(token)
