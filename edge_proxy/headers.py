"""What the proxy does to headers on the way up and on the way down.

Up: the gateway's own credentials, any header a provider takes its key in, hop-by-hop headers, Host and
Content-Length go; the provider key goes in that provider's own header; every other header passes unchanged.
Accept-Encoding is the one deliberate change: it becomes `identity`, so that the gateway can read usage from the
bytes it relays without decompressing them.
Down: hop-by-hop and framing headers go (Granian frames the body itself); the rest passes unchanged.

A managed request (the operator's provider key) must not choose or learn the operator's account: with
`managed=True` the client's account-selecting headers do not go up (`OpenAI-Organization`, `OpenAI-Project`,
Google's `X-Goog-User-Project`), the provider's account-describing headers do not come down
(`openai-organization`, `openai-project`, `anthropic-organization-id`), and `drop_key_param` removes a `key=`
query parameter (Gemini's way to pass a key) from the request-target.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from granian.rsgi import Headers as RSGIHeaders

from ._headers_py import request_headers, response_headers
from .header_rules import ACCOUNT_REQUEST_HEADERS, ACCOUNT_RESPONSE_HEADERS, HOP_BY_HOP

__all__ = ["ACCOUNT_REQUEST_HEADERS", "ACCOUNT_RESPONSE_HEADERS", "HOP_BY_HOP", "IMPLEMENTATION", "credential",
           "drop_key_param", "request_headers", "response_headers"]

# The filters are compiled (_fastpath/headers.pyx) unless EDGE_PROXY_PURE_PYTHON forces their twin; reading that
# one variable at import is deliberate (as yarl does): it chooses code, not behaviour.
IMPLEMENTATION = "py"
if os.environ.get("EDGE_PROXY_PURE_PYTHON", "") in ("", "0"):
    try:
        from ._headers_c import request_headers, response_headers  # the same API (.pyi)
        IMPLEMENTATION = "c"
    except ImportError:  # not built: tests/test_fastpath_loaded.py fails loudly on a build that should have it
        pass


def drop_key_param(target: str) -> str:
    """The request-target (path and query) without any `key` query parameter, however its name is encoded
    (`key=`, `%6Bey=`): with a managed key, a client's own `key=` must never reach the provider."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    kept = [p for p in query.split("&") if unquote_plus(p.partition("=")[0]) != "key"]
    return f"{path}?{'&'.join(kept)}" if kept else path


def credential(headers: RSGIHeaders) -> str | None:
    """The gateway credential: `Authorization: Bearer`, then `x-api-key`, then `x-goog-api-key`."""
    auth: str | None = headers.get("authorization")
    if auth:
        if auth.startswith("Bearer "):  # what every client sends: the general parse below gives the same answer
            return auth[7:].strip() or None
        scheme, _, rest = auth.partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
        return None
    key: str | None = headers.get("x-api-key") or headers.get("x-goog-api-key")
    return key or None
