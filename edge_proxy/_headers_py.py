"""Header filtering on the way up and down, in pure Python: the specification of `_fastpath/headers.pyx`.

headers.py says what the rules are and picks this module or its compiled twin once, at import.
"""
from __future__ import annotations

from collections.abc import Iterable

from .header_rules import DROP_DOWN, DROP_DOWN_MANAGED, DROP_UP, DROP_UP_MANAGED
from .upstream import HeaderBlock


def request_headers(items: Iterable[tuple[str, str]], key_header: bytes, key: str | None, *,
                    managed: bool = False) -> HeaderBlock:
    """The headers to send upstream, from the client's (lowercase names), encoded once as one block.
    `managed`: the key is the operator's, so the client's account-selecting headers are dropped too."""
    lines = ["accept-encoding: identity\r\n"]
    drop = DROP_UP_MANAGED if managed else DROP_UP
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
    drop = DROP_DOWN_MANAGED if managed else DROP_DOWN
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
