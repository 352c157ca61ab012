"""Authorize: turn a credential (forward token or raw secret key) into the principal that pays.

A verified principal, with how its requests are billed (payer and meter), is cached per worker (bounded LRU
with a TTL), so a repeated token costs one dict lookup and no database read. A revoked key, a deleted customer
or a changed meter therefore takes effect within `principal_cache_ttl` seconds in a worker that has it cached.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from .billing.charging import Billing
from .billing.spend_key_store import SPEND_KEY_PREFIX, SpendKey, find_by_hash
from .errors import InvalidToken
from .forward_token import ForwardToken, decode_forward_token
from .lru import TTLCache
from .store import SECRET_KEY_PREFIX, Store, hash_secret


class Principal(msgspec.Struct, frozen=True, gc=False):
    merchant_id: str
    secret_key_id: str
    customer_id: str | None = None
    meter_slug: str | None = None
    provider_key: str | None = None  # set: unmanaged (BYOK); None: the gateway's managed key
    disable_billing: bool = False
    billing: Billing | None = None
    spend_key: SpendKey | None = None  # set when the credential is a spend key (billing/spend_keys.py)


class Authenticator:
    __slots__ = ("store", "cache", "billing_of")

    def __init__(self, store: Store, cache_size: int, cache_ttl: float,
                 billing_of: Callable[[str, ForwardToken], Awaitable[Billing]] | None = None) -> None:
        self.store = store
        self.cache: TTLCache[str, Principal] = TTLCache(cache_size, cache_ttl)
        self.billing_of = billing_of

    async def authenticate(self, credential: str | None) -> Principal:
        if not credential:
            raise InvalidToken()
        principal = self.cache.get(credential)
        if principal is not None:
            return principal
        if credential.startswith(SPEND_KEY_PREFIX):
            principal = await self._spend_key(credential)
            self.cache.put(credential, principal)
            return principal
        if credential.startswith(SECRET_KEY_PREFIX):
            token = ForwardToken(credential)
        else:
            token = decode_forward_token(credential)
        key = await self.store.find_secret_key(hash_secret(token.secret_key))
        if key is None or key.revoked:
            raise InvalidToken()
        billing = await self.billing_of(key.merchant_id, token) if self.billing_of else None
        principal = Principal(key.merchant_id, key.secret_key_id, token.customer_id, token.meter_slug,
                              token.provider_key, token.disable_billing, billing)
        self.cache.put(credential, principal)
        return principal

    async def _spend_key(self, credential: str) -> Principal:
        """A spend key is a drop-in provider key: it spends from its merchant's wallet, under its policy."""
        key = await find_by_hash(self.store.db, hash_secret(credential))
        if key is None:
            raise InvalidToken()
        return Principal(key.merchant_id, key.spend_key_id,
                         billing=Billing("merchant", key.merchant_id, merchant_id=key.merchant_id), spend_key=key)
