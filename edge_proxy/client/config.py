"""Where a client's secret key and gateway address come from: the arguments, else the environment.

Read when a client is constructed, never at import. The secret key is the first of: the argument,
EDGE_PROXY_SECRET_KEY, LAVA_SECRET_KEY (what the Lava SDKs read), without surrounding whitespace (a key read
whole from a file keeps its newline; the gateway ignores it around a Bearer token too). The base URL is the
argument, else EDGE_PROXY_BASE_URL, else http://127.0.0.1:8080; a trailing `/v1` or `/v1/` (the Node SDK's
`baseUrl` form) is accepted and dropped.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

SECRET_KEY_VARIABLES = ("EDGE_PROXY_SECRET_KEY", "LAVA_SECRET_KEY")
BASE_URL_VARIABLE = "EDGE_PROXY_BASE_URL"
DEFAULT_BASE_URL = "http://127.0.0.1:8080"


def resolve_secret_key(secret_key: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The secret key to use, or None when neither the argument nor the environment has one."""
    if secret_key and secret_key.strip():
        return secret_key.strip()
    environ = os.environ if environ is None else environ
    for name in SECRET_KEY_VARIABLES:
        if environ.get(name, "").strip():
            return environ[name].strip()
    return None


def is_header_safe(secret_key: str) -> bool:
    """Whether the key can travel in `Authorization: Bearer <key>`: printable ASCII, no space."""
    return secret_key.isascii() and secret_key.isprintable() and " " not in secret_key


def resolve_base_url(base_url: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The gateway's origin (and any path prefix), without a trailing slash or `/v1`."""
    environ = os.environ if environ is None else environ
    url = (base_url or environ.get(BASE_URL_VARIABLE) or DEFAULT_BASE_URL).strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3]
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url: expected an http(s) URL such as {DEFAULT_BASE_URL}, not {url!r}")
    return url
