"""The dashboard's one entry point, `handle(svc, scope, proto)`, and its table of pages under /dashboard.

Each page declares its access as the gateway's route table does (access.py): `PUBLIC` (sign-in; the static files
too) or `MERCHANT`, the merchant signed in with its secret key, whose session is the caller; the page acts on that
merchant's data only. A `MERCHANT` page needs a live session: a GET without one is sent to the sign-in page,
anything else is refused with 401. A page of any other access is refused to everyone (fail closed).
GETs change nothing; every POST carries the session's CSRF token (web.Request.check_csrf).
Errors are HTML pages with the error's status; a bug is logged and shown as a plain 500 page.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from ..access import Access
from ..errors import Forbidden, GatewayError, MethodNotAllowed, NotFound
from . import account_pages, key_pages, request_pages, sign_in, usage_pages
from .web import ASSETS, COOKIE, PREFIX, Request, redirect, render, send_html

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..services import Services


log = logging.getLogger("edge_proxy.dashboard")

Page = Callable[..., Awaitable[None]]
_ID = r"(?P<{}>[^/]{{1,200}})"

PUBLIC, MERCHANT = Access.PUBLIC, Access.MERCHANT

# (method, path under /dashboard, page, access); {name} matches one path segment of id characters
PAGES: list[tuple[str, str, Page, Access]] = [
    ("GET", "/login", sign_in.login_form, PUBLIC),
    ("POST", "/login", sign_in.login, PUBLIC),
    ("POST", "/logout", sign_in.logout, MERCHANT),
    ("GET", "/", usage_pages.home, MERCHANT),
    ("GET", "/usage", usage_pages.usage, MERCHANT),
    ("GET", "/requests", request_pages.request_list, MERCHANT),
    ("GET", "/requests/{request_id}", request_pages.request_detail, MERCHANT),
    ("GET", "/customers", account_pages.customer_list, MERCHANT),
    ("POST", "/customers", account_pages.customer_create, MERCHANT),
    ("GET", "/customers/{customer_id}", account_pages.customer_detail, MERCHANT),
    ("POST", "/customers/{customer_id}/credit", account_pages.customer_credit, MERCHANT),
    ("GET", "/wallet", account_pages.wallet, MERCHANT),
    ("GET", "/meters", key_pages.meter_list, MERCHANT),
    ("GET", "/spend-keys", key_pages.spend_key_list, MERCHANT),
    ("POST", "/spend-keys", key_pages.spend_key_create, MERCHANT),
    ("POST", "/spend-keys/{spend_key_id}/revoke", key_pages.spend_key_revoke, MERCHANT),
    ("POST", "/spend-keys/{spend_key_id}/rotate", key_pages.spend_key_rotate, MERCHANT),
    ("GET", "/secret-keys", key_pages.secret_key_list, MERCHANT),
    ("POST", "/secret-keys", key_pages.secret_key_create, MERCHANT),
    ("POST", "/secret-keys/{secret_key_id}/revoke", key_pages.secret_key_revoke, MERCHANT),
    ("GET", "/webhooks", key_pages.webhook_list, MERCHANT),
]
_TABLE = [(method, re.compile(re.sub(r"\{(\w+)\}", lambda m: _ID.format(m.group(1)), path) + "$"), page, access)
          for method, path, page, access in PAGES]


def _match(method: str, path: str) -> tuple[Page, dict[str, str], Access]:
    allowed = set()
    for m, pattern, page, access in _TABLE:
        found = pattern.match(path)
        if found:
            if m == method:
                return page, found.groupdict(), access
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
        page, params, access = _match(method, req.path)
        if access is Access.MERCHANT:
            req.session = await sign_in.sessions_of(svc).find(req.cookies.get(COOKIE))
            if req.session is None:
                if method == "GET":
                    target = req.path + (f"?{scope.query_string}" if scope.query_string else "")
                    redirect(proto, f"{PREFIX}/login?next={quote(target, safe='')}")
                    return
                raise sign_in.SignedOut()
        elif access is not Access.PUBLIC:  # the dashboard signs in merchants only: any other access serves nobody
            raise Forbidden(f"no one may see {PREFIX}{req.path} on the dashboard")
        await page(req, **params)
    except GatewayError as exc:
        send_html(proto, exc.status, render("error.html", req, status=exc.status, message=exc.message),
                  exc.headers)
    except Exception:
        log.exception("dashboard: unhandled error on %s %s", scope.method, scope.path)
        send_html(proto, 500, render("error.html", req, status=500, message="internal error"))

