"""Every dashboard page does what its access says, for every kind of caller: the page table walked.

`dashboard.routes.PAGES` declares each page's access as `routes.ROUTES` does. A `MERCHANT` page is the signed-in
merchant's: without a live session (none, an unknown cookie, a session whose secret key was revoked, a bearer
key instead of a session) a GET is sent to the sign-in page and anything else is a 401; the merchant's own session
is served; another merchant's session on the merchant's ids is a 404 and never shows the merchant's data. The
walk reads the table itself, so a new page is walked as soon as it is in it.
"""
from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from edge_proxy.access import Access
from edge_proxy.dashboard.routes import PAGES
from edge_proxy.dashboard.sign_in import sessions_of
from edge_proxy.dashboard.web import COOKIE

from .inprocess import Answer
from .trust_world import World

NO_SESSION = "no session"
UNKNOWN = "an unknown session cookie"
REVOKED = "a session whose secret key was revoked"
BEARER = "the merchant's secret key as a bearer token, without a session"
OWN = "the merchant's own session"
OTHER = "another merchant's session"
CALLERS = [NO_SESSION, UNKNOWN, REVOKED, BEARER, OWN, OTHER]

# the form each POST page gets besides its CSRF token
FORMS = {
    "/customers": {"name": "walker"},
    "/customers/{customer_id}/credit": {"amount": "0.01", "idempotency_key": "walk"},
    "/spend-keys": {"name": "walker"},
    "/secret-keys": {"name": "walker"},
}


async def session_cookie(world: World, caller: str) -> tuple[dict[str, str], str]:
    """The headers a browser of this kind sends, and the CSRF token its forms carry."""
    svc = world.gw.svc
    if caller == NO_SESSION:
        return {}, ""
    if caller == UNKNOWN:
        return {"cookie": f"{COOKIE}=not-a-session"}, ""
    if caller == BEARER:
        return {"authorization": f"Bearer {world.gw.secret_key}"}, ""
    if caller == REVOKED:
        made = await world.rest("POST", "/v1/secret_keys", {"name": "signed in, then revoked"})
        session_id, session = await sessions_of(svc).sign_in(made["secret_key"])
        await world.rest("DELETE", f"/v1/secret_keys/{made['secret_key_id']}", status=200)
        return {"cookie": f"{COOKIE}={session_id}"}, session.csrf_token
    key = world.gw.secret_key if caller == OWN else world.other_key
    session_id, session = await sessions_of(svc).sign_in(key)
    return {"cookie": f"{COOKIE}={session_id}"}, session.csrf_token


async def visit(world: World, method: str, page_path: str, caller: str) -> tuple[Answer, str, bool]:
    path, owned = page_path, False
    for name in re.findall(r"\{(\w+)\}", page_path):
        path = path.replace("{" + name + "}", await world.fresh(name))
        owned = True
    headers, csrf = await session_cookie(world, caller)
    body = None
    if method == "POST":
        body = urlencode({"csrf": csrf, **FORMS.get(page_path, {})}).encode()
        headers["content-type"] = "application/x-www-form-urlencoded"
    answer = await world.gw.call(method, "/dashboard" + path, body=body, headers=headers)
    return answer, path, owned


MERCHANT_PAGES = [(m, p) for m, p, _, access in PAGES if access is Access.MERCHANT]


@pytest.mark.parametrize(("method", "path", "caller"), [
    pytest.param(m, p, c, id=f"{c} on {m} /dashboard{p}") for m, p in MERCHANT_PAGES for c in CALLERS])
def test_every_merchant_page_serves_only_the_signed_in_merchant(trust_world, method, path, caller):
    world = trust_world
    answer, sent, owned = world.run(visit(world, method, path, caller))
    text = answer.body.decode(errors="replace")
    where = f"{caller}: {method} /dashboard{sent}"
    assert answer.status < 500, (where, answer.status, text[-2000:])
    if caller in (NO_SESSION, UNKNOWN, REVOKED, BEARER):
        if method == "GET":
            assert answer.status == 303 and (answer.header("location") or "").startswith("/dashboard/login"), where
        else:
            assert answer.status == 401 and "sign in again" in text, (where, answer.status)
    elif caller == OWN:
        assert answer.status in (200, 303), (where, answer.status, text[-2000:])
    else:
        assert answer.status == 404 if owned else answer.status in (200, 303), (where, answer.status, text[-2000:])
        shown = text + repr(answer.headers)
        leaked = [i for i in world.ours if i in shown and i not in sent]
        assert leaked == [], (where, "the first merchant's ids on another merchant's page", leaked)


def test_every_dashboard_page_is_public_or_the_merchants():
    assert {access for _, _, _, access in PAGES} <= {Access.PUBLIC, Access.MERCHANT}
    public = sorted((m, p) for m, p, _, access in PAGES if access is Access.PUBLIC)
    assert public == [("GET", "/login"), ("POST", "/login")]


def test_a_page_of_any_other_access_is_refused_to_everyone(trust_world, monkeypatch):
    world = trust_world
    from edge_proxy.dashboard import routes as dashboard_routes
    table = [(m, pattern, page, Access.OPERATOR if m == "GET" and pattern.pattern == "/wallet$" else access)
             for m, pattern, page, access in dashboard_routes._TABLE]
    monkeypatch.setattr(dashboard_routes, "_TABLE", table)
    for caller in (NO_SESSION, OWN):
        answer, _, _ = world.run(visit(world, "GET", "/wallet", caller))
        assert answer.status == 403, (caller, answer.status)
