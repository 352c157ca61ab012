"""The fields of a Lava forward token, and the JSON step both decoders share.

A forward token is base64 of the JSON object
`{"secret_key", "customer_id"?, "meter_slug"?, "provider_key"?, "disable_billing"?}`. The official Lava Node SDK
sends unset `customer_id`/`meter_slug` as JSON null, so null (and "") mean absent. Unknown fields are ignored, so
a newer SDK that adds one still works.
"""
from __future__ import annotations

import msgspec

from .errors import InvalidToken

MAX_TOKEN_CHARS = 8192
MAX_FIELD_CHARS = 4096


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
    if not secret or len(secret) > MAX_FIELD_CHARS:
        raise InvalidToken()
    for value in (wire.customer_id, wire.meter_slug, wire.provider_key):
        if value is not None and len(value) > MAX_FIELD_CHARS:
            raise InvalidToken()
    return ForwardToken(
        secret,
        wire.customer_id or None,
        wire.meter_slug or None,
        wire.provider_key or None,
        bool(wire.disable_billing),
    )
