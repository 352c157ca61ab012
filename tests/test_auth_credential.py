"""The credential a request brings, and `authorize` on the principal cache: one table of Authorization headers
(every casing and spacing reads as it always did), and a cache hit that a revocation or the TTL still ends."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from edge_proxy.access import Access, authorize
from edge_proxy.auth import Authenticator
from edge_proxy.errors import InvalidToken
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


class Store:
    """The store's secret keys: one key, counted reads, revocable."""

    def __init__(self) -> None:
        self.reads = 0
        self.revoked = False

    async def find_secret_key(self, key_hash: str) -> SimpleNamespace:
        self.reads += 1
        return SimpleNamespace(merchant_id="m", secret_key_id="sk_1", revoked=self.revoked)


def _authorize(auth: Authenticator) -> object:
    svc = SimpleNamespace(auth=auth)
    return asyncio.run(authorize(svc, {"authorization": f"Bearer {KEY}"}, Access.PROXY))  # type: ignore[arg-type]


def test_a_cached_principal_is_answered_without_a_store_read():
    store = Store()
    auth = Authenticator(store, 100, 3600.0)  # type: ignore[arg-type]
    first = _authorize(auth)
    assert _authorize(auth) is first and store.reads == 1


def test_a_revoked_key_is_refused_at_once_though_its_principal_was_cached():
    store = Store()
    auth = Authenticator(store, 100, 3600.0)  # type: ignore[arg-type]
    _authorize(auth)
    store.revoked = True
    auth.forget(["sk_1"])  # what the key-event watcher calls
    with pytest.raises(InvalidToken):
        _authorize(auth)
    assert store.reads == 2


def test_a_principal_past_its_ttl_is_read_again():
    store = Store()
    auth = Authenticator(store, 100, 0.0)  # type: ignore[arg-type]  # every entry is expired as soon as it is put
    _authorize(auth)
    _authorize(auth)
    assert store.reads == 2
