"""Where a tenant-chosen URL may point: the operator's policy, and the checks made when a URL is registered and
again before each delivery.

A URL passes when it is `https://` (or `http://` with EDGE_PROXY_WEBHOOK_ALLOW_HTTP), names no user or
password, stays within 2,048 bytes, uses a web port (443 or 8443; 80 or 8080 for http), and its host is a
public IP literal or a DNS name that is not always local (`localhost`, `*.localhost`, `*.local`, `*.internal`,
single-label names...). An operator's allow-list entry (`host:port` in EDGE_PROXY_WEBHOOK_ALLOW) lifts the
port, name and address checks for exactly that host and port: it is the only way to reach a private address.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import UnsafeURL
from .addresses import IPAddress, MalformedHost, parse_ip_literal, refusal

if TYPE_CHECKING:
    from ..settings import Settings

MAX_URL_BYTES = 2048
_WEB_PORTS = {"https": frozenset((443, 8443)), "http": frozenset((80, 8080))}
_DEFAULT_PORT = {"https": 443, "http": 80}
# Names that resolve inside the host or its network, whatever public DNS says.
_LOCAL_NAMES = frozenset(("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"))
_LOCAL_SUFFIXES = (".localhost", ".localdomain", ".local", ".internal", ".intranet", ".lan", ".home.arpa",
                   ".in-addr.arpa", ".ip6.arpa")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The operator's rules for tenant-chosen URLs (EDGE_PROXY_WEBHOOK_ALLOW_HTTP, EDGE_PROXY_WEBHOOK_ALLOW)."""

    allow_http: bool = False
    allow: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls(settings.webhook_allow_http, parse_allow_list(settings.webhook_allow))

    def allow_listed(self, host: str, port: int) -> bool:
        return (host, port) in self.allow


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL: where to connect and what to send. `host` is canonical: an IP literal in its standard
    form, a name in lower-case ASCII (IDNA) without a trailing dot."""

    scheme: str
    host: str
    port: int
    target: str   # path and query, as the request line carries them
    literal: IPAddress | None
    allow_listed: bool


def parse_allow_list(raw: str | None) -> frozenset[tuple[str, int]]:
    """`host:port` entries separated by commas (`hooks.internal:8443, 10.0.0.5:443, [fd00::5]:443`).
    Raises ValueError saying which entry is wrong."""
    entries: set[tuple[str, int]] = set()
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise ValueError(f"{item!r} is not host:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            entries.add((_canonical_host(host.lower()), int(port)))
        except UnsafeURL as exc:
            raise ValueError(f"{item!r}: {exc.message.removeprefix('url: ')}") from None
    return frozenset(entries)


def check_url(url: str, policy: OutboundPolicy) -> Destination:
    """The destination of a tenant-chosen URL, or UnsafeURL (400) saying why it may not be one.

    Checks everything that needs no DNS; `checked_addresses` does the rest at delivery time."""
    if len(url.encode("utf-8", "surrogatepass")) > MAX_URL_BYTES:
        raise UnsafeURL(f"is over {MAX_URL_BYTES} bytes")
    if _BAD_CHARS.search(url):
        raise UnsafeURL("must not contain whitespace, control characters or backslashes")
    if not url.isascii():
        raise UnsafeURL("must be ASCII: percent-encode the path, and give an international host name as its "
                        "xn-- form")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeURL("is not a valid URL (check the host and the port)") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORT:
        raise UnsafeURL("must be an https:// URL")
    if scheme == "http" and not policy.allow_http:
        raise UnsafeURL("must be https:// (this gateway delivers over plain http only when its operator allows it)")
    if "@" in parts.netloc:
        raise UnsafeURL("must not carry a user name or password")
    if "#" in url:
        raise UnsafeURL("must not have a #fragment (it is never sent)")
    if not parts.hostname:
        raise UnsafeURL("needs a host")
    if port is None:
        if parts.netloc.endswith(":"):
            raise UnsafeURL("has an empty port")
        port = _DEFAULT_PORT[scheme]
    host = _canonical_host(parts.hostname)
    literal = parse_ip_literal(host)
    allow_listed = policy.allow_listed(host, port)
    if not allow_listed:
        if literal is not None:
            why = refusal(literal)
            if why:
                raise UnsafeURL(f"{parts.hostname} is not a public address ({why}), and webhooks reach only those")
        elif host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES):
            raise UnsafeURL(f"{parts.hostname} is a name that always points inside the network")
        elif "." not in host:
            raise UnsafeURL(f"{parts.hostname} is a single-label name, which resolves inside the network")
        if port not in _WEB_PORTS[scheme]:
            wanted = " or ".join(str(p) for p in sorted(_WEB_PORTS[scheme]))
            raise UnsafeURL(f"port {port} is not allowed for {scheme}:// (use {wanted}, or ask the operator to "
                            "allow this host and port)")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(scheme, str(literal) if literal is not None else host, port, target, literal, allow_listed)


def _canonical_host(host: str) -> str:
    """An IP literal in its standard form, or a DNS name in lower case without its trailing dot."""
    host = host.lower()
    try:
        literal = parse_ip_literal(host)
    except MalformedHost as exc:
        raise UnsafeURL(str(exc)) from None
    if literal is not None:
        return str(literal)
    name = host.removesuffix(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise UnsafeURL(f"{host} is not a valid host name")
    return name
