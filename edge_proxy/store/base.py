"""The store interface: where merchants, keys and (later) balances and the request log live.

SQLite is the embedded default; PostgreSQL and Redis slot in behind the same methods.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    from ..billing.spend_key_store import SpendKey

SECRET_KEY_PREFIX = "ep_sk_"


class Merchant(msgspec.Struct, frozen=True):
    merchant_id: str
    name: str
    balance_nanos: int
    created_at: str


class SecretKey(msgspec.Struct, frozen=True):
    secret_key_id: str
    merchant_id: str
    name: str
    hint: str
    created_at: str
    revoked: bool = False


# hashlib and secrets (which imports hmac, then hashlib) are imported by the two functions that use them: the log
# writer process imports this module (new_id: its webhook events) and hashes nothing, and importing hashlib sets up
# OpenSSL's digests, ~1 MB of that process's memory (bench/RESULTS.md, wave/rss6).
def hash_secret(secret: str) -> str:
    """Keys are 256-bit random, so one SHA-256 is enough: only this hash is stored."""
    import hashlib
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret_key() -> tuple[str, str, str]:
    """A fresh merchant secret key, its stored hash, and the hint shown in listings."""
    import secrets
    key = SECRET_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_secret(key), key[:len(SECRET_KEY_PREFIX) + 4] + "..." + key[-4:]


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(10).hex()}"  # what secrets.token_hex(10) returns


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def create_merchant(self, name: str, balance_nanos: int) -> tuple[Merchant, str]: ...
    async def get_merchant(self, merchant_id: str) -> Merchant | None: ...
    async def find_secret_key(self, key_hash: str) -> SecretKey | None: ...
    async def find_spend_key(self, key_hash: str) -> SpendKey | None: ...
