"""A plain HTTP client for the dashboard (no browser): sign in, read pages, send forms with the CSRF token."""
from __future__ import annotations

import itertools
import re

import httpx2 as httpx

_addresses = itertools.count(1)
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


def next_address() -> str:
    """A client address of its own (sent as X-Forwarded-For to a gateway behind a proxy), so failed sign-ins of
    one test never count against another's."""
    n = next(_addresses)
    return f"198.51.100.{n % 250 + 1}" if n < 250 else f"203.0.113.{n % 250 + 1}"


class Dashboard:
    def __init__(self, base_url: str, address: str | None = None) -> None:
        headers = {"x-forwarded-for": address} if address else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, follow_redirects=False, timeout=10)
        self.csrf = ""

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **kw) -> httpx.Response:
        r = self.http.get("/dashboard" + path, **kw)
        found = _CSRF.search(r.text)
        if found:
            self.csrf = found.group(1)
        return r

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True, **kw) -> httpx.Response:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf", self.csrf)
        return self.http.post("/dashboard" + path, data=form, **kw)

    def sign_in(self, secret_key: str, next_path: str = "") -> httpx.Response:
        form = self.http.get("/dashboard/login")
        token = _LOGIN_TOKEN.search(form.text).group(1)
        r = self.http.post("/dashboard/login", data={"login_token": token, "secret_key": secret_key,
                                                     "next": next_path})
        if r.status_code == 303:
            self.get("/usage")  # picks up the session's CSRF token
        return r

    @property
    def session_id(self) -> str | None:
        return self.http.cookies.get("ep_dashboard_session")
