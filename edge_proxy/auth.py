"""Authorize: turn a credential (forward token, secret key or spend key) into the principal that pays.

A verified principal, with how its requests are billed (payer and meter), is cached per worker (bounded LRU with
a TTL), so a repeated credential costs one dict lookup and no database read. A revoked, rotated or changed key is
forgotten by every worker within a second: the key-event watcher (store/key_events.py) calls `forget(ids)` with
the ids that changed. The TTL (`principal_cache_ttl`) bounds what no event announces; a deleted customer, and a
deleted or re-priced meter, are key events too (billing/accounts.py).

Refusals cost little too. A credential that cannot be a key of ours (wrong shape) is refused without a database
read; a well-formed key the database does not know, or knows as revoked, is remembered as refused for
`REFUSED_TTL` seconds (bounded, by key hash); concurrent first requests with one credential share one read. Key
events empty the refused cache too, so a key created a moment after its hash was refused works at once.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import NoReturn

import msgspec

from .billing.charging import Billing
from .billing.spend_key_store import SPEND_KEY_PREFIX, SpendKey
from .errors import InvalidToken
from .forward_token import ForwardToken, decode_forward_token
from .lru import TTLCache
from .store import SECRET_KEY_PREFIX, Store, hash_secret

REFUSED_TTL = 1.0       # seconds a refused key hash stays refused without a database read
REFUSED_SIZE = 10_000   # refused key hashes remembered per worker
# what our keys look like: the prefix and url-safe base64 (secrets.token_urlsafe(32) is 43 characters)
_SECRET_KEY_SHAPE = re.compile(re.escape(SECRET_KEY_PREFIX) + r"[A-Za-z0-9_-]{16,128}")
_SPEND_KEY_SHAPE = re.compile(re.escape(SPEND_KEY_PREFIX) + r"[A-Za-z0-9_-]{16,128}")


class Principal(msgspec.Struct, frozen=True, gc=False):
    merchant_id: str
    secret_key_id: str
    customer_id: str | None = None
    meter_slug: str | None = None
    provider_key: str | None = None  # set: unmanaged (BYOK); None: the gateway's managed key
    disable_billing: bool = False
    billing: Billing | None = None
    spend_key: SpendKey | None = None  # set when the credential is a spend key (billing/spend_keys.py)

    def subjects(self) -> tuple[str, ...]:
        """The ids a key event may name to make this principal stale: its key, merchant, customer and meter."""
        meter = self.billing.meter if self.billing is not None else None
        return (self.secret_key_id, self.merchant_id, self.customer_id or "", meter.meter_id if meter else "")


class Authenticator:
    __slots__ = ("store", "cache", "refused", "billing_of", "_inflight", "_generation")

    def __init__(self, store: Store, cache_size: int, cache_ttl: float,
                 billing_of: Callable[[str, ForwardToken], Awaitable[Billing]] | None = None) -> None:
        self.store = store
        self.cache: TTLCache[str, Principal] = TTLCache(cache_size, cache_ttl)
        self.refused: TTLCache[str, bool] = TTLCache(min(REFUSED_SIZE, max(cache_size, 1)), REFUSED_TTL)
        self.billing_of = billing_of
        self._inflight: dict[str, asyncio.Task[Principal]] = {}
        self._generation = 0  # bumped by every forget: a lookup that raced one does not cache what it read

    async def authenticate(self, credential: str | None) -> Principal:
        if not credential:
            raise InvalidToken()
        # `cache` holds the principals verified within its TTL (access.authorize reads it the same way)
        return self.cache.get(credential) or await self.verify(credential)

    async def verify(self, credential: str) -> Principal:
        """Read the credential's key from the store (a cache miss); concurrent misses share one read."""
        task = self._inflight.get(credential)
        if task is None:
            key_hash, token = self._lookup_of(credential)  # refuses what needs no database read, at once
            task = asyncio.get_running_loop().create_task(self._verify(credential, key_hash, token))
            self._inflight[credential] = task
            task.add_done_callback(lambda done: self._settled(credential, done))
        # shielded: a client that goes away does not cancel the read the others with this credential wait for
        return await asyncio.shield(task)

    def _settled(self, credential: str, task: asyncio.Task[Principal]) -> None:
        self._inflight.pop(credential, None)
        if not task.cancelled():
            task.exception()  # every waiter has its answer; one that left must not leave it "never retrieved"

    # -- what key events call ----------------------------------------------------------------------------------
    def forget(self, subjects: Iterable[str]) -> None:
        """Drop every cached principal of these key, merchant or customer ids, and every refusal."""
        ids = set(subjects)
        ids.discard("")
        self._generation += 1
        self.refused.clear()
        self.cache.discard_where(lambda principal: not ids.isdisjoint(principal.subjects()))

    def forget_all(self) -> None:
        self._generation += 1
        self.refused.clear()
        self.cache.clear()

    # -- a cache miss ------------------------------------------------------------------------------------------
    def _lookup_of(self, credential: str) -> tuple[str, ForwardToken | None]:
        """The key hash to look up, and the forward token for a secret key (None for a spend key)."""
        if credential.startswith(SPEND_KEY_PREFIX):
            return self._hash_of(credential, _SPEND_KEY_SHAPE), None
        token = ForwardToken(credential) if credential.startswith(SECRET_KEY_PREFIX) \
            else decode_forward_token(credential)
        return self._hash_of(token.secret_key, _SECRET_KEY_SHAPE), token

    async def _verify(self, credential: str, key_hash: str, token: ForwardToken | None) -> Principal:
        generation = self._generation
        if token is None:
            key = await self.store.find_spend_key(key_hash)
            if key is None:
                self._refuse(key_hash, generation)
            principal = Principal(key.merchant_id, key.spend_key_id, spend_key=key,
                                  billing=Billing("merchant", key.merchant_id, merchant_id=key.merchant_id))
        else:
            secret = await self.store.find_secret_key(key_hash)
            if secret is None or secret.revoked:
                self._refuse(key_hash, generation)
            billing = await self.billing_of(secret.merchant_id, token) if self.billing_of else None
            principal = Principal(secret.merchant_id, secret.secret_key_id, token.customer_id, token.meter_slug,
                                  token.provider_key, token.disable_billing, billing)
        if generation == self._generation:
            self.cache.put(credential, principal)
        return principal

    def _hash_of(self, key: str, shape: re.Pattern[str]) -> str:
        """The stored hash of a key that may exist, or the refusal of one that cannot (no database read)."""
        if not shape.fullmatch(key):
            raise InvalidToken()
        key_hash = hash_secret(key)
        if self.refused.get(key_hash):
            raise InvalidToken()
        return key_hash

    def _refuse(self, key_hash: str, generation: int) -> NoReturn:
        if generation == self._generation:
            self.refused.put(key_hash, True)
        raise InvalidToken()
