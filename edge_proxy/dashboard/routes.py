"""The dashboard's one entry point, `handle(svc, scope, proto)`, and its table of pages under /dashboard.

Every page but sign-in and the static files needs a live session; a GET without one is sent to the sign-in page,
anything else is refused. GETs change nothing; every POST carries the session's CSRF token (web.Request.check_csrf).
Errors are HTML pages with the error's status; a bug is logged and shown as a plain 500 page.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from ..errors import GatewayError, MethodNotAllowed, NotFound
from . import account_pages, key_pages, request_pages, sign_in, usage_pages
from .web import ASSETS, COOKIE, PREFIX, Request, redirect, render, send_html

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..services import Services


log = logging.getLogger("edge_proxy.dashboard")

Page = Callable[..., Awaitable[None]]
_ID = r"(?P<{}>[^/]{{1,200}})"

# (method, path under /dashboard, page, needs a session); {name} matches one path segment of id characters
PAGES: list[tuple[str, str, Page, bool]] = [
    ("GET", "/login", sign_in.login_form, False),
    ("POST", "/login", sign_in.login, False),
    ("POST", "/logout", sign_in.logout, True),
    ("GET", "/", usage_pages.home, True),
    ("GET", "/usage", usage_pages.usage, True),
    ("GET", "/requests", request_pages.request_list, True),
    ("GET", "/requests/{request_id}", request_pages.request_detail, True),
    ("GET", "/customers", account_pages.customer_list, True),
    ("POST", "/customers", account_pages.customer_create, True),
    ("GET", "/customers/{customer_id}", account_pages.customer_detail, True),
    ("POST", "/customers/{customer_id}/credit", account_pages.customer_credit, True),
    ("GET", "/wallet", account_pages.wallet, True),
    ("GET", "/meters", key_pages.meter_list, True),
    ("GET", "/spend-keys", key_pages.spend_key_list, True),
    ("POST", "/spend-keys", key_pages.spend_key_create, True),
    ("POST", "/spend-keys/{spend_key_id}/revoke", key_pages.spend_key_revoke, True),
    ("POST", "/spend-keys/{spend_key_id}/rotate", key_pages.spend_key_rotate, True),
    ("GET", "/secret-keys", key_pages.secret_key_list, True),
    ("POST", "/secret-keys", key_pages.secret_key_create, True),
    ("POST", "/secret-keys/{secret_key_id}/revoke", key_pages.secret_key_revoke, True),
    ("GET", "/webhooks", key_pages.webhook_list, True),
]
_TABLE = [(method, re.compile(re.sub(r"\{(\w+)\}", lambda m: _ID.format(m.group(1)), path) + "$"), page, signed)
          for method, path, page, signed in PAGES]


def _match(method: str, path: str) -> tuple[Page, dict[str, str], bool]:
    allowed = set()
    for m, pattern, page, signed in _TABLE:
        found = pattern.match(path)
        if found:
            if m == method:
                return page, found.groupdict(), signed
            allowed.add(m)
    if allowed:
        raise MethodNotAllowed(f"{method} is not allowed here; use {' or '.join(sorted(allowed))}")
    raise NotFound(f"no dashboard page {PREFIX}{path}")


async def handle(svc: Services, scope: Scope, proto: HTTPProtocol) -> None:
    """Serve one request under /dashboard (the app routes the whole prefix here, browser requests included)."""
    req = Request(svc, scope, proto, svc.settings.behind_proxy)
    try:
        if req.path.startswith("/static/"):
            if req.method not in ("GET", "HEAD") or not ASSETS.serve(proto, req.path[8:], req.query.get("v")):
                raise NotFound(f"no dashboard file {req.path}")
            return
        method = "GET" if req.method == "HEAD" else req.method
        page, params, signed = _match(method, req.path)
        if signed:
            req.session = await sign_in.sessions_of(svc).find(req.cookies.get(COOKIE))
            if req.session is None:
                if method == "GET":
                    target = req.path + (f"?{scope.query_string}" if scope.query_string else "")
                    redirect(proto, f"{PREFIX}/login?next={quote(target, safe='')}")
                    return
                raise sign_in.SignedOut()
        await page(req, **params)
    except GatewayError as exc:
        send_html(proto, exc.status, render("error.html", req, status=exc.status, message=exc.message),
                  exc.headers)
    except Exception:
        log.exception("dashboard: unhandled error on %s %s", scope.method, scope.path)
        send_html(proto, 500, render("error.html", req, status=500, message="internal error"))

