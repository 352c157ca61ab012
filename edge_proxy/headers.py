"""What the proxy does to headers on the way up and on the way down.

Up: the gateway's own credentials, hop-by-hop headers, Host and Content-Length go; the provider key goes in
that provider's own header; every other header passes unchanged. Accept-Encoding is the one deliberate change:
it becomes `identity`, so that the gateway can read usage from the bytes it relays without decompressing them.
Down: hop-by-hop and framing headers go (Granian frames the body itself); the rest passes unchanged.

A managed request (the operator's provider key) must not choose or learn the operator's account: with
`managed=True` the client's account-selecting headers do not go up (`OpenAI-Organization`, `OpenAI-Project`,
Google's `X-Goog-User-Project`), the provider's account-describing headers do not come down
(`openai-organization`, `openai-project`, `anthropic-organization-id`), and `drop_key_param` removes a `key=`
query parameter (Gemini's way to pass a key) from the request-target.
"""
from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote_plus

from .upstream import HeaderBlock

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "transfer-encoding", "upgrade",
})
_DROP_UP = HOP_BY_HOP | {
    "host", "content-length", "accept-encoding",
    # the gateway's own credentials
    "authorization", "x-api-key", "x-goog-api-key",
    # the gateway's own controls
    "x-lava-metadata",
}
_DROP_DOWN = HOP_BY_HOP | {"content-length"}
# Headers that pick, or tell, which provider account serves a request: not the client's to pick or see when the
# account is the operator's (managed requests).
ACCOUNT_REQUEST_HEADERS = frozenset({"openai-organization", "openai-project", "x-goog-user-project"})
ACCOUNT_RESPONSE_HEADERS = frozenset({"openai-organization", "openai-project", "anthropic-organization-id"})
_DROP_UP_MANAGED = _DROP_UP | ACCOUNT_REQUEST_HEADERS
_DROP_DOWN_MANAGED = _DROP_DOWN | ACCOUNT_RESPONSE_HEADERS


def request_headers(items: Iterable[tuple[str, str]], key_header: bytes, key: str | None, *,
                    managed: bool = False) -> HeaderBlock:
    """The headers to send upstream, from the client's (lowercase names), encoded once as one block.
    `managed`: the key is the operator's, so the client's account-selecting headers are dropped too."""
    lines = ["accept-encoding: identity\r\n"]
    drop = _DROP_UP_MANAGED if managed else _DROP_UP
    extra: set[str] | None = None
    for name, value in items:
        if name in drop:
            if name == "connection":
                extra = {t.strip().lower() for t in value.split(",")}
            continue
        lines.append(f"{name}: {value}\r\n")
    if extra:
        lines = [line for line in lines if line.split(":", 1)[0] not in extra]
    if key:
        value = ("Bearer " + key) if key_header == b"authorization" else key
        lines.append(f"{key_header.decode()}: {value}\r\n")
    # Granian hands over header values decoded as UTF-8 (it drops undecodable ones): encode them back the same way
    return HeaderBlock("".join(lines).encode("utf-8"), len(lines))


def response_headers(raw: Iterable[tuple[bytes, bytes]], *, managed: bool = False) -> list[tuple[str, str]]:
    """The provider's response headers, less hop-by-hop and framing ones, for Granian.
    `managed`: the answer came from the operator's account, whose identifying headers are dropped too."""
    out = []
    drop = _DROP_DOWN_MANAGED if managed else _DROP_DOWN
    extra: set[str] | None = None
    for name_b, value_b in raw:
        name = name_b.decode("latin-1")
        if name in drop:
            if name == "connection":
                extra = {t.strip().lower() for t in value_b.decode("latin-1").split(",")}
            continue
        out.append((name, value_b.decode("latin-1")))
    if extra:
        out = [h for h in out if h[0] not in extra]
    return out


def drop_key_param(target: str) -> str:
    """The request-target (path and query) without any `key` query parameter, however its name is encoded
    (`key=`, `%6Bey=`): with a managed key, a client's own `key=` must never reach the provider."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    kept = [p for p in query.split("&") if unquote_plus(p.partition("=")[0]) != "key"]
    return f"{path}?{'&'.join(kept)}" if kept else path


def credential(headers) -> str | None:
    """The gateway credential: `Authorization: Bearer`, then `x-api-key`, then `x-goog-api-key`."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, rest = auth.partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
        return None
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or None
