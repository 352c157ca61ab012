"""`POST /v1/rewrite/{client_format}/{provider_url}`: which format the client speaks, and where the request goes.

The body is in `client_format` (openai | anthropic | google) and is translated to whatever the provider at
`provider_url` speaks (the catalogue's `usage_format` for that host). The URL may come scheme-less
(`api.anthropic.com/v1/messages`), full (`https://…`), full with its `//` collapsed to `/` by a proxy or a path
normaliser (`https:/api.anthropic.com/…`), or percent-encoded as one segment (`https%3A%2F%2F…`). The gateway's
own query string is the upstream URL's (the Lava Node SDK puts it there), so it is re-attached. Whether the
host may be reached is the catalogue's question, asked by the caller; this module only parses.

With client_format google the body names neither model nor stream (Gemini puts both in its URL): toward a
Gemini provider they come from the provider URL (`gemini_clients.parse_gemini_model_path`); toward any other
provider the caller has to supply them.
"""
from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote

CLIENT_FORMATS = ("openai", "anthropic", "google")
PREFIX = "/v1/rewrite/"

_SCHEME = re.compile(r"(?i)(https?):/*")
_OTHER_SCHEME = re.compile(r"(?i)[a-z][a-z0-9+.-]*:/")
_ENCODED_SCHEME = re.compile(r"(?i)https?%3A")
_BAD = re.compile(r"[\x00-\x20\x7f\\#]")


class RewriteTarget(NamedTuple):
    client_format: str
    provider_url: str


def normalize_provider_url(url: str, what: str = "url") -> str:
    """A scheme-less, full or `//`-collapsed provider URL as a full one (`https://` when no scheme was given)."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{what}: expected a provider URL")
    if _BAD.search(url):
        raise ValueError(f"{what}: the URL holds whitespace, a backslash or a '#'")
    scheme = "https"
    if match := _SCHEME.match(url):
        scheme, url = match.group(1).lower(), url[match.end():]
    elif _OTHER_SCHEME.match(url):
        raise ValueError(f"{what}: only http(s) URLs are allowed")
    if not url.split("/", 1)[0].split("?", 1)[0]:
        raise ValueError(f"{what}: expected a host, as in api.openai.com/v1/chat/completions")
    return f"{scheme}://{url}"


def parse_rewrite_path(path: str, query: str = "") -> RewriteTarget:
    """Split `/v1/rewrite/{client_format}/{provider_url}` (and the gateway's query) into (format, full URL).

    `query` is the raw query string, without `?`. Raises ValueError with a one-line message on a bad path.
    """
    if not path.startswith(PREFIX):
        raise ValueError(f"path: expected {PREFIX}{{openai|anthropic|google}}/{{provider URL}}")
    client_format, _, rest = path[len(PREFIX):].partition("/")
    if client_format not in CLIENT_FORMATS:
        raise ValueError(f"client_format: expected one of {', '.join(CLIENT_FORMATS)}, not {client_format!r}")
    if _ENCODED_SCHEME.match(rest):
        rest = unquote(rest)  # the whole URL sent as one percent-encoded path segment
    url = normalize_provider_url(rest, "provider_url")
    query = query.removeprefix("?")
    if query:
        url += ("&" if "?" in url else "?") + query
    return RewriteTarget(client_format, url)
