"""Pure-Python forward-token decoder: the specification that _fastpath/forward_token.pyx must match.

The base64 step, exactly:
1. A token longer than MAX_TOKEN_CHARS, or with a non-ASCII character, is invalid.
2. ASCII whitespace anywhere is dropped.
3. Up to two trailing "=" are dropped; any other "=" makes it invalid.
4. What is left may mix the standard (+/) and url-safe (-_) alphabets; any other byte makes it invalid.
5. A length of 1 mod 4 is invalid; the unused low bits of the last character are ignored.
Then the JSON step in forward_token_fields.
"""
from __future__ import annotations

import binascii

from .errors import InvalidToken
from .forward_token_fields import MAX_TOKEN_CHARS, ForwardToken, fields_from_json

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
_WHITESPACE = b" \t\n\r\x0b\x0c"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def decode_forward_token(token: str) -> ForwardToken:
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise InvalidToken()
    raw = token.encode("ascii").translate(None, _WHITESPACE)
    body = raw.rstrip(b"=")
    if len(raw) - len(body) > 2 or body.translate(None, _ALPHABET) or len(body) % 4 == 1:
        raise InvalidToken()
    body = body.translate(_TO_STANDARD) + b"=" * (-len(body) % 4)
    try:
        data = binascii.a2b_base64(body)
    except binascii.Error:  # unreachable after the checks above; kept so no input can escape as a 500
        raise InvalidToken() from None
    return fields_from_json(data)
