"""The dashboard's security rules and data, over plain HTTP against a real gateway (no browser): cookie flags,
sign-in refusals and their rate limit, CSRF, session expiry and logout, merchant isolation, escaping, and that
the pages show what the REST API serves."""
from __future__ import annotations

import asyncio
import hashlib
import json
from decimal import Decimal

import httpx2 as httpx
import pytest

from edge_proxy.store.db import open_database

from . import pg
from .billing_helpers import customer, h, meter, settled, token
from .dashboard_client import Dashboard, next_address
from .gateway_process import GatewayProcess, base_env

CHAT_PATH = "/providers/openai/v1/chat/completions"
CHAT = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hello there"}]}
PAGES = ["/usage", "/requests", "/customers", "/wallet", "/meters", "/spend-keys", "/secret-keys", "/webhooks"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gw(request, fake, tmp_path_factory):
    """A gateway on SQLite or PostgreSQL that trusts X-Forwarded-* (so each test signs in from an address of its
    own), 3 failed sign-ins allowed per address."""
    tmp = tmp_path_factory.mktemp("dashboard")
    extra = {"EDGE_PROXY_BEHIND_PROXY": "1", "EDGE_PROXY_DASHBOARD_SIGN_IN_ATTEMPTS": "3"}
    if request.param == "postgres":
        extra["EDGE_PROXY_DATABASE_URL"] = asyncio.run(pg.create_database())
    env = base_env(tmp / "edge-proxy.db", fake.url, extra)
    g = GatewayProcess(env).start(tmp)
    yield g
    g.stop()
    if request.param == "postgres":
        asyncio.run(pg.drop_database(env["EDGE_PROXY_DATABASE_URL"]))


@pytest.fixture
def merchant(gw) -> dict:
    return gw.create_merchant("dash-test", "100")


@pytest.fixture
def dash(gw, merchant):
    d = Dashboard(gw.url, next_address())
    assert d.sign_in(merchant["secret_key"]).status_code == 303
    yield d
    d.close()


def sql(gw, query: str, *args) -> list[tuple]:
    """Run one statement on the gateway's database (either backend) and return its rows."""
    async def run():
        db = open_database(gw.env["EDGE_PROXY_DATABASE_URL"])
        await db.open()
        try:
            if query.lstrip().upper().startswith("SELECT"):
                return await db.fetchall(query, *args)
            await db.execute(query, *args)
            return []
        finally:
            await db.close()
    return asyncio.run(run())


def session_rows(gw, digest: str) -> int:
    return sql(gw, "SELECT count(*) FROM dashboard_sessions WHERE session_hash = ?", digest)[0][0]


def set_cookie_attrs(response: httpx.Response, name: str) -> set[str]:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            return {part.strip().split("=")[0] for part in header.split(";")[1:]}
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers}")


# -- sign-in and the session cookie ------------------------------------------------------------------------------
def test_signing_in_sets_an_httponly_strict_cookie_holding_only_a_session_id(gw, merchant):
    d = Dashboard(gw.url, next_address())
    r = d.sign_in(merchant["secret_key"])
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/usage"
    attrs = set_cookie_attrs(r, "ep_dashboard_session")
    assert {"Path", "HttpOnly", "SameSite", "Max-Age"} <= attrs and "Secure" not in attrs  # plain http here
    assert "Path=/dashboard" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
    sid = d.session_id
    assert sid and merchant["secret_key"] not in r.headers["set-cookie"] and len(sid) == 43  # 32 random bytes
    rows = sql(gw, "SELECT session_hash, merchant_id FROM dashboard_sessions WHERE merchant_id = ?",
               merchant["merchant_id"])
    assert (hashlib.sha256(sid.encode()).hexdigest(), merchant["merchant_id"]) in rows
    assert all(sid not in row for row in rows)  # only the hash is stored


def test_the_cookie_is_secure_when_the_proxy_in_front_says_https(gw, merchant):
    d = Dashboard(gw.url, next_address())
    d.http.headers["x-forwarded-proto"] = "https"
    form = d.http.get("/dashboard/login")
    assert "Secure" in set_cookie_attrs(form, "ep_dashboard_login")
    token_ = form.text.split('name="login_token" value="')[1].split('"')[0]
    r = d.http.post("/dashboard/login", data={"login_token": token_, "secret_key": merchant["secret_key"]},
                    headers={"origin": "https://" + gw.url.split("://")[1],
                             "cookie": f"ep_dashboard_login={token_}"})  # a Secure cookie: the client keeps it
    assert r.status_code == 303, r.text
    assert "Secure" in set_cookie_attrs(r, "ep_dashboard_session")


def test_x_forwarded_proto_is_ignored_unless_the_gateway_is_behind_a_proxy(gateway):
    r = httpx.get(gateway.url + "/dashboard/login", headers={"x-forwarded-proto": "https"}, timeout=10)
    assert r.status_code == 200
    assert "Secure" not in set_cookie_attrs(r, "ep_dashboard_login")


@pytest.mark.parametrize("credential, status, says", [
    pytest.param("spend", 403, "spend keys cannot sign in", id="a spend key is refused and told to use a secret key"),
    pytest.param("forward", 403, "only a merchant secret key", id="a forward token is refused"),
    pytest.param("ep_sk_not-a-real-key", 401, "unknown or has been revoked", id="an unknown secret key is refused"),
    pytest.param("revoked", 401, "unknown or has been revoked", id="a revoked secret key is refused"),
])
def test_only_a_live_merchant_secret_key_signs_in(gw, merchant, credential, status, says):
    key = merchant["secret_key"]
    if credential == "spend":
        credential = httpx.post(gw.url + "/v1/spend_keys", json={"name": "k"}, headers=h(key), timeout=10).json()["key"]
    elif credential == "forward":
        credential = token(key)
    elif credential == "revoked":
        other = httpx.post(gw.url + "/v1/secret_keys", json={"name": "old"}, headers=h(key), timeout=10).json()
        assert httpx.delete(f"{gw.url}/v1/secret_keys/{other['secret_key_id']}", headers=h(key),
                            timeout=10).status_code == 200
        credential = other["secret_key"]
    d = Dashboard(gw.url, next_address())
    r = d.sign_in(credential)
    assert r.status_code == status and says in r.text
    assert d.session_id is None
    assert "text/html" in r.headers["content-type"] and "Traceback" not in r.text


def test_failed_sign_ins_are_limited_per_client_address(gw, merchant):
    address = next_address()
    d = Dashboard(gw.url, address)
    assert [d.sign_in("ep_sk_wrong").status_code for _ in range(3)] == [401, 401, 401]
    refused = d.sign_in(merchant["secret_key"])  # even the right key, from this address, for now
    assert refused.status_code == 429 and "too many failed sign-ins" in refused.text
    assert refused.headers["retry-after"] == "900"
    assert Dashboard(gw.url, next_address()).sign_in(merchant["secret_key"]).status_code == 303  # other address


def test_the_sign_in_form_refuses_a_post_without_its_own_token(gw, merchant):
    r = httpx.post(gw.url + "/dashboard/login", data={"secret_key": merchant["secret_key"]}, timeout=10,
                   headers={"x-forwarded-for": next_address()})
    assert r.status_code == 403 and "ep_dashboard_session" not in r.headers.get("set-cookie", "")


def test_pages_without_a_session_send_the_browser_to_sign_in(gw):
    d = Dashboard(gw.url, next_address())
    for page in PAGES:
        r = d.get(page + "?x=1")
        assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login?next=%2F")
    assert d.post("/customers", {"name": "x"}).status_code == 401


def test_after_sign_in_the_browser_returns_to_the_page_it_asked_for(gw, merchant):
    d = Dashboard(gw.url, next_address())
    assert d.sign_in(merchant["secret_key"], "/customers?cursor=").headers["location"] == "/dashboard/customers?cursor="
    d2 = Dashboard(gw.url, next_address())
    assert d2.sign_in(merchant["secret_key"], "//evil.example/x").headers["location"] == "/dashboard/usage"


# -- headers -----------------------------------------------------------------------------------------------------
def test_every_page_has_a_strict_csp_and_is_never_framed_or_cached(dash):
    for page in PAGES:
        r = dash.get(page)
        assert r.status_code == 200, (page, r.text)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "same-origin"
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
        assert "<script>" not in r.text and " style=" not in r.text and "http://" not in r.text.replace(
            'xmlns="http://www.w3.org/2000/svg"', "")  # nothing inline, nothing from elsewhere


def test_static_files_are_cached_under_their_content_hash_and_nothing_else_is_served(dash):
    page = dash.get("/usage").text
    css = page.split('href="/dashboard/static/')[1].split('"')[0]
    r = dash.http.get("/dashboard/static/" + css)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert dash.http.get("/dashboard/static/dashboard.css?v=old").headers["cache-control"] == "no-cache"
    for bad in ["../app.py", "..%2Fapp.py", ".hidden.css", "missing.css", "dashboard.py"]:
        assert dash.http.get("/dashboard/static/" + bad).status_code == 404


def test_the_app_serves_the_dashboard_to_browsers_but_still_refuses_them_on_the_api(gw, dash):
    origin = {"origin": gw.url}
    assert dash.get("/usage", headers=origin).status_code == 200
    assert dash.http.options("/dashboard/usage").status_code == 405
    assert httpx.get(gw.url + "/v1/customers", headers={**origin, **h("x")}, timeout=10).status_code == 403


# -- CSRF --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("csrf, headers", [
    pytest.param(None, {}, id="a form without the token is refused"),
    pytest.param("not-the-token", {}, id="a form with another token is refused"),
    pytest.param("right", {"origin": "https://evil.example"}, id="the right token from another origin is refused"),
    pytest.param("right", {"referer": "https://evil.example/page"}, id="the right token from another page is refused"),
    pytest.param("right", {"origin": "null"}, id="the right token from an opaque origin is refused"),
])
def test_a_post_without_the_sessions_csrf_token_from_this_site_is_refused(gw, dash, csrf, headers):
    form = {"name": "csrf-victim"}
    if csrf is not None:
        form["csrf"] = dash.csrf if csrf == "right" else csrf
    r = dash.post("/customers", form, csrf=False, headers=headers)
    assert r.status_code == 403 and "out of date or came from another site" in r.text
    assert "csrf-victim" not in dash.get("/customers").text


def test_a_post_with_the_token_from_this_site_works(gw, dash):
    r = dash.post("/customers", {"name": "Grace"}, headers={"origin": gw.url, "referer": gw.url + "/dashboard/x"})
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/customers/cus_")


def test_gets_change_nothing(dash):
    assert dash.get("/logout").status_code == 405
    assert dash.get("/customers/cus_x/credit").status_code == 405
    assert dash.get("/usage").status_code == 200  # still signed in


# -- sessions end ------------------------------------------------------------------------------------------------
def test_logout_deletes_the_session_and_the_cookie(gw, dash):
    sid = dash.session_id
    r = dash.post("/logout")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
    assert "Max-Age=0" in r.headers["set-cookie"]
    assert session_rows(gw, hashlib.sha256(sid.encode()).hexdigest()) == 0
    replay = httpx.get(gw.url + "/dashboard/usage", cookies={"ep_dashboard_session": sid}, timeout=10)
    assert replay.status_code == 303 and replay.headers["location"].startswith("/dashboard/login")


@pytest.mark.parametrize("column, seconds_ago", [
    pytest.param("last_seen_at", 1801, id="a session idle for over 30 minutes has ended"),
    pytest.param("created_at", 0, id="a session past its 12 hour lifetime has ended, however busy"),
])
def test_sessions_expire(gw, dash, column, seconds_ago):
    digest = hashlib.sha256(dash.session_id.encode()).hexdigest()
    if column == "created_at":
        sql(gw, "UPDATE dashboard_sessions SET expires_at = created_at - 1 WHERE session_hash = ?", digest)
    else:
        sql(gw, f"UPDATE dashboard_sessions SET {column} = {column} - ? WHERE session_hash = ?", seconds_ago, digest)
    r = dash.get("/usage")
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login")
    assert session_rows(gw, digest) == 0


def test_a_session_a_little_idle_goes_on_and_is_touched(gw, dash):
    digest = hashlib.sha256(dash.session_id.encode()).hexdigest()
    sql(gw, "UPDATE dashboard_sessions SET last_seen_at = last_seen_at - 600 WHERE session_hash = ?", digest)
    select = "SELECT last_seen_at FROM dashboard_sessions WHERE session_hash = ?"
    before = sql(gw, select, digest)[0][0]
    assert dash.get("/usage").status_code == 200
    assert sql(gw, select, digest)[0][0] >= before + 600


def test_revoking_the_secret_key_ends_its_sessions_at_the_next_request(gw, merchant):
    key = merchant["secret_key"]
    second = httpx.post(gw.url + "/v1/secret_keys", json={"name": "laptop"}, headers=h(key), timeout=10).json()
    d = Dashboard(gw.url, next_address())
    assert d.sign_in(second["secret_key"]).status_code == 303
    assert d.get("/usage").status_code == 200
    assert httpx.delete(f"{gw.url}/v1/secret_keys/{second['secret_key_id']}", headers=h(key),
                        timeout=10).status_code == 200
    assert d.get("/usage").status_code == 303


def test_revoking_the_sessions_own_key_in_the_dashboard_signs_it_out(gw, merchant):
    key = merchant["secret_key"]
    second = httpx.post(gw.url + "/v1/secret_keys", json={"name": "laptop"}, headers=h(key), timeout=10).json()
    d = Dashboard(gw.url, next_address())
    d.sign_in(second["secret_key"])
    r = d.post(f"/secret-keys/{second['secret_key_id']}/revoke")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
    assert d.get("/usage").status_code == 303


def test_the_last_secret_key_cannot_be_revoked_from_the_dashboard(gw, merchant, dash):
    keys = httpx.get(gw.url + "/v1/secret_keys", headers=h(merchant["secret_key"]), timeout=10).json()["data"]
    assert len(keys) == 1
    r = dash.post(f"/secret-keys/{keys[0]['secret_key_id']}/revoke")
    assert r.status_code == 400 and "last active secret key" in r.text
    assert dash.get("/usage").status_code == 200


# -- merchant isolation ------------------------------------------------------------------------------------------
def test_another_merchants_ids_are_not_found(gw, merchant, dash):
    other = gw.create_merchant("other", "10")
    theirs = customer(gw, other["secret_key"], "5")
    rid = httpx.post(gw.url + CHAT_PATH, json=CHAT, headers=h(other["secret_key"]),
                     timeout=10).headers["x-lava-request-id"]
    settled(gw, other["secret_key"], [rid])
    their_key = httpx.post(gw.url + "/v1/spend_keys", json={"name": "theirs"}, headers=h(other["secret_key"]),
                           timeout=10).json()
    assert dash.get(f"/customers/{theirs}").status_code == 404
    assert dash.get(f"/requests/{rid}").status_code == 404
    assert dash.post(f"/customers/{theirs}/credit", {"amount": "100"}).status_code == 404
    assert dash.post(f"/spend-keys/{their_key['spend_key_id']}/revoke").status_code == 404
    assert dash.post(f"/spend-keys/{their_key['spend_key_id']}/rotate").status_code == 404
    assert theirs not in dash.get("/customers").text and rid not in dash.get("/requests").text
    after = httpx.get(f"{gw.url}/v1/customers/{theirs}", headers=h(other["secret_key"]), timeout=10).json()
    assert after["balance"] == "5"
    assert httpx.get(f"{gw.url}/v1/spend_keys/{their_key['spend_key_id']}", headers=h(other["secret_key"]),
                     timeout=10).json()["status"] == "active"


# -- escaping and bad input --------------------------------------------------------------------------------------
def test_values_are_escaped_everywhere_they_are_shown(gw, merchant, dash):
    evil = "<script>alert(1)</script>"
    cid = customer(gw, merchant["secret_key"], "0.5", metadata={"note": evil}, email="a@example.com")
    httpx.patch(f"{gw.url}/v1/customers/{cid}", json={"name": evil}, headers=h(merchant["secret_key"]), timeout=10)
    pages = [dash.get("/customers").text, dash.get(f"/customers/{cid}").text,
             dash.get("/requests", params={"model": evil, "metadata": f"k={evil}"}).text,
             dash.get("/usage", params={"split": "customer"}).text]
    for text in pages:
        assert evil not in text and "<script>alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0] and "&lt;script&gt;" in pages[1]


@pytest.mark.parametrize("path, status, says", [
    pytest.param("/usage?start=yesterday", 400, "start: expected a date", id="a malformed date"),
    pytest.param("/usage?start=2024-03-01&end=2024-02-01", 400, "end: must not be before start", id="a reversed range"),
    pytest.param("/usage?start=2020-01-01&end=2024-01-01", 400, "over 366 days", id="a range too long"),
    pytest.param("/usage?split=colour", 400, "split: one of", id="an unknown split"),
    pytest.param("/usage?end=0001-01-05", 400, "end: must be from", id="an end too early for the default range"),
    pytest.param("/usage?start=9999-12-31&end=9999-12-31", 400, "end: must be from",
                 id="an end on the last day a date can hold"),
    pytest.param("/requests?cursor=%%%", 400, "cursor", id="a cursor the API never gave"),
    pytest.param("/requests?status=maybe", 400, "status: one of", id="an unknown status"),
    pytest.param("/requests?metadata=novalue", 400, "key=value", id="a metadata filter without a value"),
    pytest.param("/customers?cursor=abc", 400, "cursor", id="a bad customers cursor"),
    pytest.param("/nowhere", 404, "no dashboard page", id="an unknown page"),
])
def test_bad_input_is_a_clear_page_with_the_right_status(dash, path, status, says):
    r = dash.get(path)
    assert r.status_code == status and says in r.text and "Traceback" not in r.text


@pytest.mark.parametrize("form, says", [
    pytest.param({"amount": "-1"}, "amount", id="a negative credit"),
    pytest.param({"amount": "lots"}, "amount", id="a credit that is not a number"),
    pytest.param({"amount": ""}, "amount", id="an empty credit"),
    pytest.param({"amount": "0"}, "more than zero", id="a zero credit"),
])
def test_a_bad_credit_is_refused_and_credits_nothing(gw, merchant, dash, form, says):
    cid = customer(gw, merchant["secret_key"], "1")
    r = dash.post(f"/customers/{cid}/credit", form)
    assert r.status_code == 400 and says in r.text
    assert httpx.get(f"{gw.url}/v1/customers/{cid}", headers=h(merchant["secret_key"]),
                     timeout=10).json()["balance"] == "1"


# -- the data ----------------------------------------------------------------------------------------------------
def test_a_customer_created_and_credited_in_the_dashboard_is_the_one_the_api_serves(gw, merchant, dash):
    r = dash.post("/customers", {"name": "Ada", "email": "ada@example.com", "balance": "2",
                                 "autopay_threshold": "1", "autopay_amount": "5"})
    cid = r.headers["location"].rsplit("/", 1)[1]
    assert dash.post(f"/customers/{cid}/credit", {"amount": "3.25"}).status_code == 303
    api = httpx.get(f"{gw.url}/v1/customers/{cid}", headers=h(merchant["secret_key"]), timeout=10).json()
    assert api["balance"] == "5.25" and api["autopay"] == {"threshold": "1", "amount": "5"}
    page = dash.get(f"/customers/{cid}?credited=1").text
    assert "$5.25" in page and "Credit added." in page


def test_low_balances_are_marked(gw, merchant, dash):
    low = customer(gw, merchant["secret_key"], "0.5")
    under_threshold = customer(gw, merchant["secret_key"], "3", autopay={"threshold": "5", "amount": "10"})
    fine = customer(gw, merchant["secret_key"], "3")
    rows = {cid: row for row in dash.get("/customers").text.split("<tr")[1:]
            for cid in (low, under_threshold, fine) if f"/customers/{cid}\"" in row}
    assert 'class="low"' in rows[low] and 'class="low"' in rows[under_threshold]
    assert 'class="low"' not in rows[fine]


def test_customers_page_through_cursors(gw, merchant, dash):
    made = [customer(gw, merchant["secret_key"], "1") for _ in range(27)]
    first = dash.get("/customers").text
    next_link = first.split('class="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = dash.http.get(next_link).text
    shown = [cid for cid in made if cid in first] + [cid for cid in made if cid in second]
    assert sorted(shown) == sorted(made) and 'class="next"' not in second


def test_usage_and_requests_show_what_went_through_the_gateway(gw, merchant, dash):
    key = merchant["secret_key"]
    m = meter(gw, key, "chat", "fixed", "tokens_1m", [(0, "2.00")])
    cid = customer(gw, key, "5")
    fwd = token(key, customer_id=cid, meter_slug=m["meter_slug"])
    rids = [httpx.post(gw.url + CHAT_PATH, json=CHAT, headers={**h(fwd), "x-lava-metadata": '{"team": "blue"}'},
                       timeout=10).headers["x-lava-request-id"] for _ in range(3)]
    records = settled(gw, key, rids)
    cost = sum(Decimal(r["cost"]) for r in records)
    charge = sum(Decimal(r["charge"]["amount"]) for r in records)
    assert cost > 0 and charge > 0

    usage = dash.get("/usage", params={"split": "customer"}).text
    assert f'data-series="{cid}"' in usage and cid in usage.split('id="series"')[1]
    total_cost = usage.split('id="total-cost">$')[1].split("<")[0]
    total_charge = usage.split('id="total-charge">$')[1].split("<")[0]
    assert Decimal(total_cost) == cost and Decimal(total_charge) == charge
    api = httpx.get(gw.url + "/v1/usage", params={"start": records[0]["created_at"][:10], "group_by": "customer"},
                    headers=h(key), timeout=10).json()
    assert Decimal(api["totals"]["total_cost"]) == cost
    assert [g["key"] for item in api["items"] for g in item["groups"]] == [cid]

    listing = dash.get("/requests", params={"customer_id": cid, "metadata": "team=blue", "status": "completed"}).text
    assert all(rid in listing for rid in rids)
    assert dash.get("/requests", params={"metadata": "team=red"}).text.count("/dashboard/requests/req_") == 0
    assert all(rid not in dash.get("/requests", params={"status": "error"}).text for rid in rids)
    detail = dash.get(f"/requests/{rids[0]}").text
    r = records[0]
    for shown in (str(r["model_usage"]["input_tokens"]), r["cost"], r["charge"]["amount"], "tokens_1m", "completed",
                  "team", "blue"):
        assert shown in detail


def test_the_requests_page_pages_with_the_apis_cursors(gw, merchant, dash):
    key = merchant["secret_key"]
    for i in range(60):  # reported requests are logged like proxied ones, without a provider round trip
        assert httpx.post(gw.url + "/v1/requests", json={"request_id": f"r-{i:03d}", "model": "gpt-4o-mini",
                          "input_tokens": 10}, headers=h(key), timeout=10).status_code == 201
    first = dash.get("/requests").text
    assert first.count('href="/dashboard/requests/r-') == 50
    next_link = first.split('class="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = dash.http.get(next_link).text
    assert second.count('href="/dashboard/requests/r-') == 10 and 'class="next"' not in second
    assert "r-059" in first and "r-000" in second  # newest first


def test_spend_keys_are_created_shown_once_rotated_and_revoked(gw, merchant, dash):
    r = dash.post("/spend-keys", {"name": "ci", "allowed_models": "gpt-4o-mini, gpt-4o", "spend_limit": "5",
                                  "spend_limit_cycle": "daily", "rate_limit": "60"})
    assert r.status_code == 200
    key = r.text.split('id="new-key-value" readonly value="')[1].split('"')[0]
    assert key.startswith("ep_spk_") and key not in dash.get("/spend-keys").text
    listed = httpx.get(gw.url + "/v1/spend_keys", headers=h(merchant["secret_key"]), timeout=10).json()["data"][0]
    assert listed["allowed_models"] == ["gpt-4o-mini", "gpt-4o"] and listed["spend_limit"] == {
        "amount": "5", "cycle": "daily"} and listed["rate_limit"]["rpm"] == 60
    rotated = dash.post(f"/spend-keys/{listed['spend_key_id']}/rotate")
    new_key = rotated.text.split('id="new-key-value" readonly value="')[1].split('"')[0]
    assert new_key != key
    assert httpx.post(gw.url + CHAT_PATH, json=CHAT, headers=h(key), timeout=10).status_code == 401
    assert dash.post(f"/spend-keys/{listed['spend_key_id']}/revoke").status_code == 303
    assert httpx.post(gw.url + CHAT_PATH, json=CHAT, headers=h(new_key), timeout=10).status_code == 401
    bad = dash.post("/spend-keys", {"name": "x", "rate_limit": "fast"})
    assert bad.status_code == 400 and "rate_limit.rpm" in bad.text


@pytest.mark.parametrize("form, says", [
    pytest.param({"rate_limit": "²"}, "rate_limit.rpm", id="a rate limit in superscript digits"),
    pytest.param({"request_limit": "²"}, "request_limit.count", id="a request limit in superscript digits"),
])
def test_a_spend_key_form_with_a_bad_limit_is_refused_with_the_field_named(dash, form, says):
    r = dash.post("/spend-keys", {"name": "x", **form})
    assert r.status_code == 400 and says in r.text


def test_the_wallet_shows_its_balance_and_its_transfers(gw, merchant, dash):
    cid = customer(gw, merchant["secret_key"], "2.5")  # a transfer from the wallet to the customer
    page = dash.get("/wallet").text
    assert "$97.50" in page.split('id="wallet-balance"')[1].split("</p>")[0]
    history = page.split('id="wallet-history"')[1]
    assert "+$100.00" in history and "-$2.50" in history and history.index("-$2.50") < history.index("+$100.00")
    assert f"customer:{cid}" in history and "operator:funding" in history


def test_meters_and_webhooks_are_listed(gw, merchant, dash):
    key = merchant["secret_key"]
    meter(gw, key, "tok-meter", "percentage", "tokens_1m", [(0, "20")])
    httpx.post(gw.url + "/v1/webhooks", json={"name": "billing", "url": "https://hooks.example/x"}, headers=h(key),
               timeout=10)
    assert "tok-meter" in dash.get("/meters").text and "0: 20%" in dash.get("/meters").text
    hooks = dash.get("/webhooks").text
    assert "https://hooks.example/x" in hooks and "whsec_" not in hooks


def test_rest_usage_group_by_adds_each_days_groups_and_refuses_unknown_groups(gw, merchant):
    key = merchant["secret_key"]
    httpx.post(gw.url + "/v1/requests", json={"request_id": "g-1", "model": "gpt-4o", "input_tokens": 1000},
               headers=h(key), timeout=10)
    httpx.post(gw.url + "/v1/requests", json={"request_id": "g-2", "model": "gpt-4o-mini", "input_tokens": 1000},
               headers=h(key), timeout=10)
    today = httpx.get(gw.url + "/v1/requests/g-1", headers=h(key), timeout=10).json()["created_at"][:10]
    plain = httpx.get(gw.url + "/v1/usage", params={"start": today}, headers=h(key), timeout=10).json()
    grouped = httpx.get(gw.url + "/v1/usage", params={"start": today, "group_by": "model"}, headers=h(key),
                        timeout=10).json()
    assert grouped["totals"] == plain["totals"] and "groups" not in plain["items"][0]
    groups = grouped["items"][-1]["groups"]
    assert sorted(g["key"] for g in groups) == ["gpt-4o", "gpt-4o-mini"]
    assert sum(g["total_requests"] for g in groups) == grouped["items"][-1]["total_requests"] == 2
    bad = httpx.get(gw.url + "/v1/usage", params={"start": today, "group_by": "colour"}, headers=h(key), timeout=10)
    assert bad.status_code == 400 and "group_by" in json.loads(bad.text)["error"]["message"]
