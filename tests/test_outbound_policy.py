"""The outbound policy for tenant-chosen URLs: what an IP literal means, which addresses are public, and which
URLs are refused at registration (and why). Pure functions: one row per case."""
from __future__ import annotations

from ipaddress import ip_address

import pytest

from edge_proxy.errors import UnsafeURL
from edge_proxy.outbound import MalformedHost, OutboundPolicy, check_url, parse_allow_list, parse_ip_literal, refusal

LITERALS = [
    ("2130706433", "127.0.0.1", "a decimal number is one IPv4 address"),
    ("0x7f000001", "127.0.0.1", "a hex number is one IPv4 address"),
    ("0X7F000001", "127.0.0.1", "hex digits in either case"),
    ("0177.0.0.1", "127.0.0.1", "a leading zero makes a part octal"),
    ("0177.0.0.01", "127.0.0.1", "octal in the last part too"),
    ("127.1", "127.0.0.1", "two parts: the last fills three bytes"),
    ("127.0.1", "127.0.0.1", "three parts: the last fills two bytes"),
    ("0x7f.1", "127.0.0.1", "parts may mix hex and decimal"),
    ("017700000001", "127.0.0.1", "one octal number"),
    ("127.0.0.1.", "127.0.0.1", "a trailing dot is allowed"),
    ("0", "0.0.0.0", "zero is the unspecified address"),
    ("::1", "::1", "IPv6 loopback"),
    ("::ffff:127.0.0.1", "::ffff:7f00:1", "IPv4-mapped IPv6 in dotted form"),
    ("fe80::1%25eth0", "fe80::1", "a zone id as a URL writes it is dropped"),
    ("fe80::1%eth0", "fe80::1", "a zone id as a resolver writes it is dropped"),
    ("example.com", None, "a name is not a literal"),
    ("1.2.3.example", None, "a name whose last label is not a number"),
    ("0x7f.example", None, "a name whose earlier labels look like numbers"),
]


@pytest.mark.parametrize("host, expected, why", LITERALS, ids=[row[2] for row in LITERALS])
def test_an_ip_literal_means_the_address_a_resolver_would_use(host, expected, why):
    parsed = parse_ip_literal(host)
    assert (str(parsed) if parsed is not None else None) == expected


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.1.1.1", "1.16777216", "example.123", "08.1.1.1", "0xg.1",
                                  "::g", "1::2::3"])
def test_a_host_that_can_only_be_an_address_and_is_not_a_valid_one_is_malformed(host):
    with pytest.raises(MalformedHost):
        parse_ip_literal(host)


ADDRESSES = [
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("172.31.255.255", "private"), ("192.168.1.1", "private"), ("169.254.169.254", "cloud metadata"),
    ("169.254.1.1", "link-local"), ("100.64.0.1", "carrier-grade NAT"), ("100.127.255.255", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("224.0.0.1", "multicast"), ("239.1.1.1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("192.0.0.9", "reserved"),
    ("192.0.2.1", "documentation"), ("198.18.0.1", "benchmarking"),
    ("::1", "loopback"), ("::", "unspecified"), ("::ffff:127.0.0.1", "IPv4-mapped"), ("::ffff:8.8.8.8", "IPv4-mapped"),
    ("::127.0.0.1", "IPv4-compatible"), ("64:ff9b::7f00:1", "NAT64"), ("64:ff9b::808:808", "NAT64"),
    ("64:ff9b:1::1", "NAT64"), ("fd00:ec2::254", "cloud metadata"), ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"), ("fe80::1", "link-local"), ("fec0::1", "site-local"), ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"), ("2002:7f00:1::", "6to4 around 127.0.0.1: loopback"),
    ("2002:a00:1::", "6to4 around 10.0.0.1: private"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo around 192.0.2.45: documentation"),
    ("100::1", "discard"),
    ("8.8.8.8", None), ("1.1.1.1", None), ("100.128.0.1", None), ("172.32.0.1", None), ("2606:4700::1111", None),
    ("2002:808:808::", None),
]


@pytest.mark.parametrize("address, kind", ADDRESSES, ids=[f"{a} is {k or 'public'}" for a, k in ADDRESSES])
def test_each_kind_of_address_that_is_not_public_is_refused_and_named(address, kind):
    why = refusal(ip_address(address))
    if kind is None:
        assert why is None
    else:
        assert why is not None and kind in why


REFUSED = [
    ("https://2130706433/", "loopback", "a decimal IPv4 literal for loopback"),
    ("https://0177.0.0.1/", "loopback", "an octal IPv4 literal for loopback"),
    ("https://0x7f000001/", "loopback", "a hex IPv4 literal for loopback"),
    ("https://127.1/", "loopback", "a short IPv4 literal for loopback"),
    ("https://[::1]/", "loopback", "IPv6 loopback"),
    ("https://[::ffff:127.0.0.1]/", "IPv4-mapped", "IPv4-mapped loopback"),
    ("https://[::ffff:7f00:1]/", "IPv4-mapped", "IPv4-mapped loopback in hex"),
    ("https://[64:ff9b::7f00:1]/", "NAT64", "NAT64 around loopback"),
    ("https://[::127.0.0.1]/", "IPv4-compatible", "IPv4-compatible loopback"),
    ("https://[2002:7f00:1::]/", "6to4", "6to4 around loopback"),
    ("https://[fe80::1%25eth0]/", "link-local", "link-local IPv6 with a zone id"),
    ("https://169.254.169.254/latest/meta-data/", "cloud metadata", "the cloud metadata address"),
    ("https://[fd00:ec2::254]/", "cloud metadata", "the IPv6 cloud metadata address"),
    ("https://10.0.0.1/", "private", "an RFC 1918 address"),
    ("https://100.64.0.1/", "carrier-grade NAT", "a CGNAT address"),
    ("https://0.0.0.0/", "unspecified", "the unspecified address"),
    ("https://0/", "unspecified", "the unspecified address as one number"),
    ("https://224.0.0.1/", "multicast", "a multicast address"),
    ("https://localhost/", "always points inside", "localhost"),
    ("https://LOCALHOST./", "always points inside", "localhost in capitals with a trailing dot"),
    ("https://canary.localhost/", "always points inside", "a name under .localhost"),
    ("https://printer.local/", "always points inside", "an mDNS name"),
    ("https://metadata.google.internal/", "always points inside", "a name under .internal"),
    ("https://redis/", "single-label", "a single-label name the search domains resolve inside"),
    ("https://example.com:6379/", "port 6379", "a port that is not a web port"),
    ("https://example.com:5432/", "port 5432", "the PostgreSQL port"),
    ("https://example.com:80/", "port 80", "http's port under https"),
    ("http://example.com/", "must be https", "plain http without the operator's leave"),
    ("ftp://example.com/", "must be an https", "another scheme"),
    ("https://user:pw@example.com/", "user name or password", "credentials in the URL"),
    ("https://@example.com/", "user name or password", "an empty userinfo"),
    ("https://example.com/#x", "fragment", "a fragment"),
    ("https://example.com/" + "a" * 2030, "over 2048 bytes", "a URL over 2,048 bytes"),
    ("https:///x", "needs a host", "no host"),
    ("https://exa mple.com/", "whitespace", "whitespace"),
    ("https://example.com\\@evil/", "backslash", "a backslash"),
    ("https://ex%61mple.com/", "not a valid host name", "a percent-encoded host"),
    ("https://exämple.com/", "ASCII", "a host that is not ASCII"),
    ("https://1.2.3.4.5/", "not a valid IPv4", "a malformed IPv4 literal"),
    ("https://example.com:99999/", "not a valid URL", "a port out of range"),
    ("https://example.com:/", "empty port", "an empty port"),
]


@pytest.mark.parametrize("url, reason, why", REFUSED, ids=[row[2] for row in REFUSED])
def test_a_url_that_could_reach_inside_the_network_is_refused_with_its_reason(url, reason, why):
    with pytest.raises(UnsafeURL) as refused:
        check_url(url, OutboundPolicy())
    assert reason in refused.value.message and refused.value.status == 400


ACCEPTED = [
    ("https://hooks.example.com/lava?x=1", OutboundPolicy(), ("hooks.example.com", 443, "/lava?x=1")),
    ("https://Hooks.Example.COM./a", OutboundPolicy(), ("hooks.example.com", 443, "/a")),
    ("https://hooks.example.com:8443", OutboundPolicy(), ("hooks.example.com", 8443, "/")),
    ("https://8.8.8.8/x", OutboundPolicy(), ("8.8.8.8", 443, "/x")),
    ("https://[2606:4700::1111]/", OutboundPolicy(), ("2606:4700::1111", 443, "/")),
    ("http://hooks.example.com:8080/", OutboundPolicy(allow_http=True), ("hooks.example.com", 8080, "/")),
    ("https://127.0.0.1:9999/h", OutboundPolicy(allow=parse_allow_list("127.0.0.1:9999")), ("127.0.0.1", 9999, "/h")),
    ("https://2130706433:9999/", OutboundPolicy(allow=parse_allow_list("127.0.0.1:9999")), ("127.0.0.1", 9999, "/")),
    ("https://receiver.internal:7000/", OutboundPolicy(allow=parse_allow_list("receiver.internal:7000")),
     ("receiver.internal", 7000, "/")),
    ("https://[::1]:9000/", OutboundPolicy(allow=parse_allow_list("[::1]:9000")), ("::1", 9000, "/")),
]


@pytest.mark.parametrize("url, policy, expected", ACCEPTED, ids=[row[0] for row in ACCEPTED])
def test_a_public_url_or_an_allow_listed_one_is_accepted_in_canonical_form(url, policy, expected):
    dest = check_url(url, policy)
    assert (dest.host, dest.port, dest.target) == expected


@pytest.mark.parametrize("url", ["https://127.0.0.1:9998/", "http://127.0.0.1:9999/", "https://127.0.0.2:9999/"])
def test_the_allow_list_lifts_the_checks_for_exactly_its_host_and_port_and_not_the_scheme(url):
    with pytest.raises(UnsafeURL):
        check_url(url, OutboundPolicy(allow=parse_allow_list("127.0.0.1:9999")))


@pytest.mark.parametrize("raw", ["localhost", "localhost:", ":80", "host:0", "host:65536", "a b:80", "1.2.3.4.5:80"])
def test_a_bad_allow_list_entry_is_refused(raw):
    with pytest.raises(ValueError):
        parse_allow_list(raw)
