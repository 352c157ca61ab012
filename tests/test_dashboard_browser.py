"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright (the system browser through
`executable_path`; Playwright's own browser downloads are never used).

A merchant signs in, creates a customer, credits it, sends requests through the gateway with a forward token for
that customer on a meter, and sees them on the usage chart and in the request list, then opens one. Along the way:
a spend key cannot sign in, a POST without the CSRF token is refused, another merchant's customer is not found,
and signing out ends the session. Every page is screenshotted into the test's tmp dir; with
EDGE_PROXY_UPDATE_SCREENSHOTS=1 they are also copied to docs/screenshots/ (the README shows those).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx2 as httpx
import pytest
from playwright.sync_api import sync_playwright  # a missing browser is a failure, never a skip

from edge_proxy.log_sinks import open_log_sink
from edge_proxy.metering.record import RequestRecord
from edge_proxy.money import usd

from .billing_helpers import customer, h, meter, settled, token
from .gateway_process import ROOT, GatewayProcess, base_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHAT_PATH = "/providers/openai/v1/chat/completions"
SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard-browser")
    g = GatewayProcess(base_env(tmp / "edge-proxy.db", fake.url)).start(tmp)
    g.database_url = f"sqlite:///{tmp / 'edge-proxy.db'}"
    yield g
    g.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Shots:
    """Screenshots of each page, in the test's tmp dir (and docs/screenshots/ when asked)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken: list[Path] = []

    def __call__(self, page, name: str) -> None:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        if os.environ.get("EDGE_PROXY_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, SCREENSHOTS / path.name)


def new_page(browser, gw):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=gw.url)
    page = context.new_page()
    problems: list[str] = []  # script errors and CSP violations; failed loads are checked by status and URL
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and not m.text.startswith(
        "Failed to load resource") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("dialog", lambda d: d.accept())
    return context, page, problems


HISTORY_MODELS = [("openai", "gpt-4o-mini", 150, 600), ("openai", "gpt-4o", 2500, 10000),
                  ("anthropic", "claude-haiku-4-5", 1000, 5000)]


def seed_history(gw, merchant_id: str, customer_id: str, days: int = 20) -> tuple[int, int, set[str]]:
    """Requests on the days before today, written to the gateway's log as its writer writes them (the usage
    rollup included), so the chart has a month to draw: (cost, charge, the days) in nano-dollars."""
    today = dt.datetime.now(dt.UTC).date()
    records = []
    for back in range(1, days + 1):
        day = (today - dt.timedelta(days=back)).isoformat()
        for i, (provider, model, in_rate, out_rate) in enumerate(HISTORY_MODELS[:1 + back % 3]):
            tokens_in, tokens_out = 400 * (1 + (back * 7 + i) % 5), 150 * (1 + (back + i) % 4)
            records.append(RequestRecord(
                request_id=f"hist-{back}-{i}", created_at=f"{day}T1{i}:00:00.000Z", merchant_id=merchant_id,
                customer_id=customer_id, provider=provider, model=model, status_code=200, input_tokens=tokens_in,
                output_tokens=tokens_out, cost_nanos=tokens_in * in_rate + tokens_out * out_rate, priced=True,
                charge_nanos=(tokens_in + tokens_out) * 3000, payer="customer"))

    async def write():
        sink = open_log_sink(gw.database_url)
        await sink.open()
        try:
            await sink.write(records)
        finally:
            await sink.close()
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
        pool.submit(asyncio.run, write()).result()
    return (sum(r.cost_nanos for r in records), sum(r.charge_nanos for r in records),
            {r.created_at[:10] for r in records})


def sign_in(page, key: str) -> None:
    page.goto("/dashboard")
    assert page.url.endswith("/dashboard/login?next=%2F")
    page.fill("input[name=secret_key]", key)
    page.click("form[action='/dashboard/login'] button[type=submit]")
    page.wait_for_url("**/dashboard/usage")


def test_a_merchant_sees_its_traffic_in_the_dashboard(gw, browser, tmp_path):
    shot = Shots(tmp_path)
    m = gw.create_merchant("Acme Robotics", "25")
    key = m["secret_key"]
    chat_meter = meter(gw, key, "chat-tokens", "fixed", "tokens_1m", [(0, "3.00"), (1_000_000, "2.50")])
    context, page, problems = new_page(browser, gw)

    # sign in
    page.goto("/dashboard/login")
    shot(page, "login")
    sign_in(page, key)
    assert page.inner_text("header .who") == "Acme Robotics"

    # create a customer, then credit it
    page.goto("/dashboard/customers")
    page.fill("#new-customer input[name=name]", "Ada Lovelace")
    page.fill("#new-customer input[name=email]", "ada@example.com")
    page.fill("#new-customer input[name=autopay_threshold]", "2")
    page.fill("#new-customer input[name=autopay_amount]", "10")
    page.click("#new-customer button[type=submit]")
    page.wait_for_url(re.compile(r".*/dashboard/customers/cus_[0-9a-f]+$"))
    cid = page.url.rsplit("/", 1)[1]
    assert "$0.00" in page.inner_text("#balance") and "low" in page.inner_text("#balance")
    page.fill("#credit input[name=amount]", "5")
    page.click("#credit button[type=submit]")
    page.wait_for_url("**?credited=1")
    assert page.inner_text("#notice") == "Credit added."
    assert page.inner_text("#balance").startswith("$5.00")
    shot(page, "customer")

    # requests through the gateway: a forward token for that customer on the meter, to the fake provider
    fwd = token(key, customer_id=cid, meter_slug=chat_meter["meter_slug"])
    rids = []
    for i, model in enumerate(["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]):
        r = httpx.post(gw.url + CHAT_PATH, timeout=10, headers={**h(fwd), "x-lava-metadata": '{"feature": "chat"}'},
                       json={"model": model, "max_tokens": 40, "messages": [{"role": "user", "content": f"hi {i}"}]})
        assert r.status_code == 200, r.text
        rids.append(r.headers["x-lava-request-id"])
    other_customer = customer(gw, key, "0.8")  # under $1: marked low
    r = httpx.post(gw.url + CHAT_PATH, timeout=10, headers=h(token(key, customer_id=other_customer,
                                                                   meter_slug=chat_meter["meter_slug"])),
                   json={"model": "gpt-4o", "max_tokens": 40, "messages": [{"role": "user", "content": "yo"}]})
    rids.append(r.headers["x-lava-request-id"])
    records = settled(gw, key, rids)
    history_cost, history_charge, history_days = seed_history(gw, m["merchant_id"], cid)
    cost = sum(Decimal(r["cost"]) for r in records) + Decimal(usd(history_cost))
    charge = sum(Decimal(r["charge"]["amount"]) for r in records) + Decimal(usd(history_charge))

    # the usage chart: split by customer, then (through the page's script) by model
    page.goto("/dashboard/usage?split=customer")
    drawn = page.locator(f"#cost-chart rect.bar[data-series='{cid}']")
    live_days = {r["created_at"][:10] for r in records if r["customer_id"] == cid}
    assert {drawn.nth(i).get_attribute("data-day") for i in range(drawn.count())} == history_days | live_days
    assert page.locator(f"#charge-chart rect.bar[data-series='{other_customer}']").count() == 1
    assert Decimal(page.inner_text("#total-cost").lstrip("$")) == cost
    assert Decimal(page.inner_text("#total-charge").lstrip("$")) == charge
    page.select_option("select[name=split]", "model")
    page.wait_for_url("**split=model**")
    assert page.locator("#cost-chart rect.bar[data-series='gpt-4o-mini']").count() == 21  # 20 days + today
    assert page.locator("#cost-chart rect.bar[data-series='claude-haiku-4-5']").count() == 7  # every third day
    assert page.inner_text("#series").count("gpt-4o") == 2
    shot(page, "usage")

    # the request list, filtered, and one request in detail
    page.goto("/dashboard/requests")
    listed = page.inner_text("#requests")
    assert all(rid in listed for rid in rids)
    page.fill("input[name=customer_id]", cid)
    page.fill("input[name=metadata]", "feature=chat")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**customer_id=**")
    assert page.locator("#requests tbody tr").count() == 4
    shot(page, "requests")
    page.click(f"#requests a[href='/dashboard/requests/{rids[0]}']")
    page.wait_for_url(f"**/dashboard/requests/{rids[0]}")
    first = next(r for r in records if r["request_id"] == rids[0])
    tokens = page.inner_text("#tokens")
    assert str(first["model_usage"]["input_tokens"]) in tokens and str(first["model_usage"]["output_tokens"]) in tokens
    assert first["cost"] in page.inner_text("#money") and first["charge"]["amount"] in page.inner_text("#money")
    assert page.locator("#charge-breakdown").count() == 1
    shot(page, "request")

    # the other pages
    page.goto("/dashboard/customers")
    assert page.locator("#customers tbody tr").count() == 2
    shot(page, "customers")
    page.goto("/dashboard/spend-keys")
    page.fill("#new-spend-key input[name=name]", "support bot")
    page.fill("#new-spend-key input[name=allowed_models]", "gpt-4o-mini")
    page.fill("#new-spend-key input[name=spend_limit]", "20")
    page.click("#new-spend-key button[type=submit]")
    spend_key = page.input_value("#new-key-value")
    assert spend_key.startswith("ep_spk_")
    shot(page, "spend_keys")
    page.goto("/dashboard/spend-keys")
    assert spend_key not in page.content()  # shown once
    httpx.post(gw.url + "/v1/webhooks", json={"name": "billing events", "url": "https://hooks.example.com/edge"},
               headers=h(key), timeout=10)
    for name in ("wallet", "meters", "secret_keys", "webhooks"):
        page.goto("/dashboard/" + name.replace("_", "-"))
        shot(page, name)
    assert "+$25.00" in page.goto("/dashboard/wallet").text()

    # a POST without the session's CSRF token is refused (the context's cookies go with it)
    refused = page.request.post(gw.url + "/dashboard/customers", form={"name": "Mallory"})
    assert refused.status == 403
    page.goto("/dashboard/customers")
    assert "Mallory" not in page.content()

    # another merchant's customer is not reachable by id
    other = gw.create_merchant("Other Co", "5")
    theirs = customer(gw, other["secret_key"], "1")
    assert page.goto(f"/dashboard/customers/{theirs}").status == 404
    assert page.goto(f"/dashboard/requests/{rids[0]}").status == 200  # ours still is

    # a spend key cannot sign in
    context2, page2, problems2 = new_page(browser, gw)
    page2.goto("/dashboard/login")
    page2.fill("input[name=secret_key]", spend_key)
    page2.click("form[action='/dashboard/login'] button[type=submit]")
    assert "spend keys cannot sign in" in page2.inner_text("#error-message")
    assert page2.goto("/dashboard/usage").url.endswith("/dashboard/login?next=%2Fusage")
    context2.close()

    # signing out ends the session
    page.goto("/dashboard/usage")
    page.click("form.signout button")
    page.wait_for_url("**/dashboard/login")
    assert page.goto("/dashboard/customers").url.endswith("/dashboard/login?next=%2Fcustomers")
    assert problems == [f"404 {gw.url}/dashboard/customers/{theirs}"]  # no other failed load, script error or CSP
    assert problems2 == [f"403 {gw.url}/dashboard/login"]             # violation: only the refusals asked for
    context.close()
    assert len(shot.taken) == 11 and all(p.stat().st_size > 5_000 for p in shot.taken)
