"""`/dashboard/login` and `/dashboard/logout`: open a session with a merchant secret key, and end it.

The sign-in form has no session to carry a CSRF token yet, so it carries its own: a random token in a
short-lived cookie and the same token in a hidden field (a cross-site form can set neither), plus the Origin check.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import hmac
import secrets

from ..errors import InvalidToken
from .sessions import Sessions, SignInRefused, SignInThrottle
from .web import (
    COOKIE,
    LOGIN_COOKIE,
    PREFIX,
    CsrfRefused,
    Request,
    redirect,
    render,
    send_html,
)

if TYPE_CHECKING:
    from ..services import Services


LOGIN_TOKEN_AGE = 3600  # seconds a sign-in form stays usable


class SignedOut(InvalidToken):
    message = "your dashboard session has ended: sign in again"


def sessions_of(svc: Services) -> Sessions:
    s = svc.settings
    return Sessions(svc.store, s.dashboard_idle_timeout, s.dashboard_session_lifetime)


def _next(raw: str | None) -> str:
    """Where to go after signing in: a dashboard path only, never another site."""
    if raw and raw.startswith("/") and not raw.startswith(("//", "/\\")) and "\\" not in raw:
        return PREFIX + raw if raw != "/" else PREFIX + "/usage"
    return PREFIX + "/usage"


def _form(req: Request, status: int, error: str | None = None) -> None:
    token = req.cookies.get(LOGIN_COOKIE)
    extra = []
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(24)
        extra.append(req.cookie(LOGIN_COOKIE, token, LOGIN_TOKEN_AGE))
    send_html(req.proto, status, render("login.html", req, login_token=token, error=error,
                                        next=req.query.get("next") or ""), extra)


async def login_form(req: Request) -> None:
    if await sessions_of(req.svc).find(req.cookies.get(COOKIE)) is not None:
        redirect(req.proto, _next(req.query.get("next")))
        return
    _form(req, 200)


async def login(req: Request) -> None:
    req.check_origin()
    form = await req.form()
    sent, expected = form.get("login_token", ""), req.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused()
    svc = req.svc
    throttle = SignInThrottle(svc.store.db, svc.settings.dashboard_sign_in_attempts)
    await throttle.check(req.client)
    try:
        session_id, _ = await sessions_of(svc).sign_in(form.get("secret_key", ""))
    except SignInRefused as exc:
        await throttle.failed(req.client)
        req.query["next"] = form.get("next", "")
        _form(req, exc.status, exc.message)
        return
    lifetime = int(svc.settings.dashboard_session_lifetime)
    redirect(req.proto, _next(form.get("next")),
             [req.cookie(COOKIE, session_id, lifetime), req.cookie(LOGIN_COOKIE, "", 0)])


async def logout(req: Request) -> None:
    await req.check_csrf()
    assert req.session is not None
    await sessions_of(req.svc).end(req.session)
    redirect(req.proto, PREFIX + "/login", [req.cookie(COOKIE, "", 0)])
