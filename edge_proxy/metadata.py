"""Request metadata from `x-lava-metadata` or the `metadata` query parameter, validated before forwarding.

The rules: a JSON object of at most 50 keys; keys are non-empty strings of at most 40 characters; values are
strings of at most 500 characters (numbers and booleans are kept as their JSON text). Anything else is a 400,
and nothing is sent upstream.
"""
from __future__ import annotations

from urllib.parse import unquote

import msgspec

from .errors import InvalidRequest

MAX_KEYS = 50
MAX_KEY = 40
MAX_VALUE = 500
_decode = msgspec.json.decode


def parse_metadata(text: str, where: str) -> dict[str, str]:
    try:
        value = _decode(text)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest(f"{where}: not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}: must be a JSON object of string values")
    if len(value) > MAX_KEYS:
        raise InvalidRequest(f"{where}: at most {MAX_KEYS} keys")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not key or len(key) > MAX_KEY:
            raise InvalidRequest(f"{where}: keys must be 1 to {MAX_KEY} characters")
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            item = msgspec.json.encode(item).decode()
        elif not isinstance(item, str):
            raise InvalidRequest(f"{where}: the value of {key!r} must be a string, number or boolean")
        if len(item) > MAX_VALUE:
            raise InvalidRequest(f"{where}: the value of {key!r} is over {MAX_VALUE} characters")
        out[key] = item
    return out


def split_metadata_param(query: str) -> tuple[str, str | None]:
    """Take `metadata=` out of a query string (it is the gateway's, not the provider's)."""
    if "metadata=" not in query:
        return query, None
    kept, found = [], None
    for part in query.split("&"):
        if part.startswith("metadata="):
            found = unquote(part[len("metadata="):].replace("+", " "))
        elif part:
            kept.append(part)
    return "&".join(kept), found
