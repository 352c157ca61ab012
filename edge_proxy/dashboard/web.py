"""What every dashboard page shares: the request as a page sees it, HTML answers with their security headers,
cookies, form bodies, CSRF checks, templates and the packaged static files.

Templates are Jinja2 with autoescaping on for every template, so a value is escaped unless a page marks it safe
(only the server-drawn SVG chart is, and it escapes its own text).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import hashlib
import hmac
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import jinja2

from ..errors import Forbidden, InvalidRequest
from ..money import usd
from .sessions import Session

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ..services import Services


HERE = Path(__file__).resolve().parent
COOKIE = "ep_dashboard_session"
LOGIN_COOKIE = "ep_dashboard_login"   # the sign-in form's own CSRF token (there is no session yet)
PREFIX = "/dashboard"
MAX_FORM = 64 * 1024

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("x-content-type-options", "nosniff"),
    ("cross-origin-opener-policy", "same-origin"),
]
_HTML = [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")] + SECURITY_HEADERS
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class CsrfRefused(Forbidden):
    message = "this form is out of date or came from another site: reload the page and send it again"


class Request:
    """One dashboard request: where it came from, its query, its cookies, and (once checked) its session."""

    def __init__(self, svc: Services, scope: Scope, proto: HTTPProtocol, behind_proxy: bool) -> None:
        self.svc = svc
        self.scope = scope
        self.proto = proto
        self.method = scope.method
        self.path = scope.path[len(PREFIX):] or "/"
        self.query = dict(parse_qsl(scope.query_string, keep_blank_values=True))
        self.cookies = parse_cookies(scope.headers.get("cookie") or "")
        headers = scope.headers
        forwarded = behind_proxy and headers.get("x-forwarded-proto")
        self.scheme = forwarded.split(",")[0].strip().lower() if forwarded else scope.scheme
        host = (behind_proxy and headers.get("x-forwarded-host")) or headers.get("host") or scope.authority or ""
        self.host = host.split(",")[0].strip()
        forwarded_for = behind_proxy and headers.get("x-forwarded-for")
        # the address the nearest trusted hop saw: the last entry a proxy appended, else the socket's peer
        self.client = (forwarded_for.split(",")[-1].strip() if forwarded_for else
                       scope.client.rsplit(":", 1)[0] if scope.client else "unknown")
        self.session: Session | None = None
        self._form: dict[str, str] | None = None

    @property
    def secure(self) -> bool:
        return bool(self.scheme == "https")

    @property
    def merchant_id(self) -> str:
        assert self.session is not None  # the router only calls signed-in pages with a session
        return self.session.merchant_id

    async def form(self) -> dict[str, str]:
        """The urlencoded form body (read once)."""
        if self._form is None:
            data = await self.proto()
            if len(data) > MAX_FORM:
                raise InvalidRequest("the form is too large")
            try:
                self._form = dict(parse_qsl(data.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                raise InvalidRequest("the form is not UTF-8") from None
        return self._form

    def check_origin(self) -> None:
        """A state-changing request must come from this host: Origin (or Referer) names it when sent."""
        expected = f"{self.scheme}://{self.host}"
        origin = self.scope.headers.get("origin")
        if origin is not None:
            if origin != expected:
                raise CsrfRefused()
            return
        referer = self.scope.headers.get("referer")
        if referer is not None and referer != expected and not referer.startswith(expected + "/"):
            raise CsrfRefused()

    async def check_csrf(self) -> dict[str, str]:
        """The form, once its CSRF token matches the session's (and Origin/Referer this host)."""
        self.check_origin()
        form = await self.form()
        sent = form.get("csrf", "")
        if self.session is None or not hmac.compare_digest(sent.encode(), self.session.csrf_token.encode()):
            raise CsrfRefused()
        return form

    def cookie(self, name: str, value: str, max_age: int | None) -> tuple[str, str]:
        """A Set-Cookie header for the dashboard: HttpOnly, SameSite=Strict, Path=/dashboard, Secure over https."""
        parts = [f"{name}={value}", f"Path={PREFIX}", "HttpOnly", "SameSite=Strict"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if self.secure:
            parts.append("Secure")
        return ("set-cookie", "; ".join(parts))


def parse_cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in out:
            out[name] = value.strip().strip('"')
    return out


# -- answers -----------------------------------------------------------------------------------------------------
def send_html(proto: HTTPProtocol, status: int, body: str, extra: list[tuple[str, str]] | None = None) -> None:
    proto.response_str(status, _HTML + (extra or []), body)


def redirect(proto: HTTPProtocol, location: str, extra: list[tuple[str, str]] | None = None) -> None:
    proto.response_empty(303, [("location", location), ("cache-control", "no-store")] + SECURITY_HEADERS
                         + (extra or []))


class Assets:
    """The packaged CSS and JS, read on first use and served with a long cache under a content-hashed URL."""

    def __init__(self, folder: Path = HERE / "static") -> None:
        self.folder = folder
        self._files: dict[str, tuple[bytes, str]] = {}

    def _load(self, name: str) -> tuple[bytes, str] | None:
        got = self._files.get(name)
        if got is None:
            path = self.folder / name
            if "/" in name or name.startswith(".") or path.suffix not in _STATIC_TYPES or not path.is_file():
                return None
            data = path.read_bytes()
            got = self._files[name] = (data, hashlib.sha256(data).hexdigest()[:12])
        return got

    def url(self, name: str) -> str:
        got = self._load(name)
        if got is None:
            raise LookupError(f"no dashboard asset {name!r}")
        return f"{PREFIX}/static/{name}?v={got[1]}"

    def serve(self, proto: HTTPProtocol, name: str, version: str | None) -> bool:
        got = self._load(name)
        if got is None:
            return False
        data, digest = got
        cache = "public, max-age=31536000, immutable" if version == digest else "no-cache"
        proto.response_bytes(200, [("content-type", _STATIC_TYPES[Path(name).suffix]), ("cache-control", cache),
                                   ("etag", f'"{digest}"')] + SECURITY_HEADERS, data)
        return True


def money(nanos: int | None) -> str:
    """Nano-dollars as a USD amount for people: exact, with at least two decimals ("$0.000123", "$5.00")."""
    if nanos is None:
        return "—"
    text = usd(nanos)
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def with_query(path: str, params: dict[str, str | None], **changes: str | None) -> str:
    """`path?query` from params, changed by `changes`; empty values are left out."""
    merged = {**params, **changes}
    query = urlencode({k: v for k, v in merged.items() if v})
    return f"{PREFIX}{path}" + (f"?{query}" if query else "")


def templates(assets: Assets) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(asset=assets.url, with_query=with_query, prefix=PREFIX)
    env.filters.update(money=money)
    return env


ASSETS = Assets()
TEMPLATES = templates(ASSETS)  # builds no template yet: each is read and compiled on first use


def render(name: str, req: Request, **context: Any) -> str:
    """A page from its template, with what the layout needs: the session, its CSRF token, the current path."""
    session = req.session
    return TEMPLATES.get_template(name).render(
        session=session, csrf=session.csrf_token if session else "", path=req.path, query=req.query,
        form_key=_form_key, **context)


def _form_key() -> str:
    """A fresh key for a form that moves money: submitting it twice moves the money once."""
    return secrets.token_urlsafe(16)
