"""The fields of a Lava forward token, and the JSON step both decoders share.

A forward token is base64 of the JSON object
`{"secret_key", "customer_id"?, "meter_slug"?, "provider_key"?, "disable_billing"?}`. The official Lava Node SDK
sends unset `customer_id`/`meter_slug` as JSON null, so null (and "") mean absent. Unknown fields are ignored, so
a newer SDK that adds one still works. A field with a control character (a CR/LF in `provider_key` would
otherwise end up inside an upstream header) makes the whole token invalid.
"""
from __future__ import annotations

import re

import msgspec

from .errors import InvalidToken

MAX_TOKEN_CHARS = 8192
MAX_FIELD_CHARS = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ForwardToken(msgspec.Struct, frozen=True, gc=False):
    secret_key: str
    customer_id: str | None = None
    meter_slug: str | None = None
    provider_key: str | None = None
    disable_billing: bool = False


class _Wire(msgspec.Struct):
    secret_key: str
    customer_id: str | None = None
    meter_slug: str | None = None
    provider_key: str | None = None
    disable_billing: bool | None = None


_decode_wire = msgspec.json.Decoder(_Wire).decode


def fields_from_json(data: bytes) -> ForwardToken:
    """Decode the JSON inside a token. Raises InvalidToken on anything but a well-typed object."""
    try:
        wire = _decode_wire(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidToken() from None
    secret = wire.secret_key
    if not secret:
        raise InvalidToken()
    for value in (secret, wire.customer_id, wire.meter_slug, wire.provider_key):
        if value is not None and (len(value) > MAX_FIELD_CHARS or _CONTROL.search(value)):
            raise InvalidToken()
    return ForwardToken(
        secret,
        wire.customer_id or None,
        wire.meter_slug or None,
        wire.provider_key or None,
        bool(wire.disable_billing),
    )
