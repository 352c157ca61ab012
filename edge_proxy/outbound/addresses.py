"""Which IP addresses a tenant-chosen URL may reach, and which address an IP literal in a URL really means.

A resolver accepts IPv4 in the forms of C's `inet_aton` (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`), and
IPv6 with a zone id (`fe80::1%eth0`), so a literal is parsed the same way and judged by the address it means.
Only public unicast addresses pass; every other kind is named, so an error says why (`a loopback address`).
"""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address

__all__ = ["IPAddress", "MalformedHost", "address_of", "parse_ip_literal", "refusal"]


class MalformedHost(ValueError):
    """A host that looks like an IP address (it ends in a number, or holds a colon) but is not a valid one."""


# Checked in order, so the more precise name wins (metadata before link-local).
_V4_REFUSED: tuple[tuple[IPv4Network, str], ...] = tuple((IPv4Network(net), why) for net, why in (
    ("0.0.0.0/8", "unspecified ('this network')"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.169.254/32", "cloud metadata"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved (6to4 relay anycast)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "reserved (benchmarking)"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
))
_V6_REFUSED: tuple[tuple[IPv6Network, str], ...] = tuple((IPv6Network(net), why) for net, why in (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped IPv6"),
    ("::/96", "IPv4-compatible IPv6"),
    ("64:ff9b::/96", "NAT64"),
    ("64:ff9b:1::/48", "NAT64 (local use)"),
    ("100::/64", "reserved (discard)"),
    ("2001:db8::/32", "documentation"),
    ("fd00:ec2::254/128", "cloud metadata"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
))
_TEREDO = IPv6Network("2001::/32")
_SIX_TO_FOUR = IPv6Network("2002::/16")


def refusal(ip: IPAddress) -> str | None:
    """Why a tenant-chosen URL may not reach this address (`"loopback"`, `"private (RFC 1918)"`...), or None
    when it is a public unicast address."""
    if isinstance(ip, IPv4Address):
        for net, why in _V4_REFUSED:
            if ip in net:
                return why
        return None if ip.is_global else "reserved"
    bare = IPv6Address(ip.compressed.partition("%")[0]) if ip.scope_id else ip   # a zone id changes nothing
    for net6, why in _V6_REFUSED:
        if bare in net6:
            return why
    # 6to4 and Teredo carry an IPv4 address inside: they are as public as what they carry
    if bare in _SIX_TO_FOUR:
        inner = bare.sixtofour
        return f"6to4 around {inner}: {refusal(inner)}" if inner and refusal(inner) else None
    if bare in _TEREDO:
        server, client = bare.teredo or (None, None)
        for inner in (server, client):
            if inner is not None and refusal(inner):
                return f"Teredo around {inner}: {refusal(inner)}"
        return None
    return None if bare.is_global else "reserved"


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address `host` means when it is an IP literal in any form a resolver accepts; None for a name.

    `host` is a URL's host without brackets (`urlsplit(url).hostname`). Raises MalformedHost for a host that
    can only be meant as an address and is not a valid one (`1.2.3.4.5`, `999.1.1.1`, `::g`)."""
    if ":" in host:   # only IPv6 literals hold a colon (the port is split off already)
        address = host.partition("%")[0]   # less a zone id (`fe80::1%eth0`, `%25eth0` in a URL): same address
        try:
            return IPv6Address(address)
        except ValueError:
            raise MalformedHost(f"{host} is not a valid IPv6 address") from None
    return _parse_ipv4(host)


def _parse_ipv4(host: str) -> IPv4Address | None:
    """inet_aton's forms (and the WHATWG URL standard's): 1 to 4 dot-separated numbers, each decimal, octal
    (leading 0) or hex (0x), the last one filling the remaining bytes; a trailing dot is allowed."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if _number(parts[-1]) is None:
        return None   # a name: its last label is not a number
    numbers = [_number(p) for p in parts]
    if len(parts) > 4 or any(n is None for n in numbers):
        raise MalformedHost(f"{host} ends in a number but is not a valid IPv4 address")
    values = [n for n in numbers if n is not None]
    *head, last = values
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(values)):
        raise MalformedHost(f"{host} ends in a number but is not a valid IPv4 address")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return IPv4Address(value)


def _number(part: str) -> int | None:
    if part[:2].lower() == "0x":
        digits = part[2:]
        if digits == "":
            return 0
        return int(digits, 16) if all(c in "0123456789abcdefABCDEF" for c in digits) else None
    if not part.isascii() or not part.isdigit():
        return None
    if len(part) > 1 and part[0] == "0":
        return int(part, 8) if all(c in "01234567" for c in part) else None
    return int(part)


def address_of(text: str) -> IPAddress:
    """An address as a resolver returns it (`getaddrinfo`'s sockaddr[0], zone id included)."""
    return IPv6Address(text) if ":" in text else IPv4Address(text)
