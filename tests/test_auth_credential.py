"""The credential a request brings: one table of Authorization headers (every casing and spacing reads as it
always did)."""
from __future__ import annotations

import pytest

from edge_proxy.headers import credential

KEY = "ep_sk_" + "k" * 43

CREDENTIALS = [  # id, request headers, the credential read from them (None: a 401)
    ("the usual Bearer scheme", {"authorization": f"Bearer {KEY}"}, KEY),
    ("a lowercase scheme", {"authorization": f"bearer {KEY}"}, KEY),
    ("an uppercase scheme", {"authorization": f"BEARER {KEY}"}, KEY),
    ("a mixed-case scheme", {"authorization": f"BeArEr {KEY}"}, KEY),
    ("spaces around the credential are trimmed", {"authorization": f"Bearer   {KEY}  "}, KEY),
    ("a trailing tab is trimmed", {"authorization": f"Bearer {KEY}\t"}, KEY),
    ("a non-breaking space after the scheme is trimmed", {"authorization": f"Bearer \u00a0{KEY}"}, KEY),
    ("a credential with a space in it is kept whole (the key's shape refuses it later)",
     {"authorization": f"Bearer {KEY} more"}, f"{KEY} more"),
    ("the scheme and a space with nothing after it", {"authorization": "Bearer "}, None),
    ("the scheme and only spaces", {"authorization": "Bearer    "}, None),
    ("the scheme alone", {"authorization": "Bearer"}, None),
    ("a tab is not the scheme's separator", {"authorization": f"Bearer\t{KEY}"}, None),
    ("a space before the scheme", {"authorization": f" Bearer {KEY}"}, None),
    ("no space after the scheme", {"authorization": f"Bearer{KEY}"}, None),
    ("another scheme", {"authorization": f"Basic {KEY}"}, None),
    ("Authorization wins over x-api-key", {"authorization": f"Bearer {KEY}", "x-api-key": "other"}, KEY),
    ("a bad Authorization is not rescued by x-api-key", {"authorization": "Basic x", "x-api-key": KEY}, None),
    ("an empty Authorization falls back to x-api-key", {"authorization": "", "x-api-key": KEY}, KEY),
    ("x-goog-api-key when there is nothing else", {"x-goog-api-key": KEY}, KEY),
    ("no credential at all", {}, None),
]


@pytest.mark.parametrize("headers,expected", [row[1:] for row in CREDENTIALS], ids=[row[0] for row in CREDENTIALS])
def test_the_credential_read_from_the_headers(headers, expected):
    assert credential(headers) == expected  # type: ignore[arg-type]  # a dict reads as Granian's headers do
