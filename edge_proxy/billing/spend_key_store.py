"""Spend keys: keys a merchant hands out that spend from its wallet under a policy (models, providers, limits).

Only the SHA-256 of a key is stored, with a short preview for listings. The policy columns are JSON text; the
`SpendKey` Struct carries them parsed, so the request path (`find_by_hash`) reads one row and decides.
A revoked key is kept (status "revoked") but reads as absent everywhere. Every change to a key is a key event
(store/key_events.py) in the same transaction, so no worker serves a cached copy of it a second later.

Stored JSON: spend_limit {"amount_nanos", "cycle"}, request_limit {"count", "cycle"}, rate_limit {"rpm", "burst"},
allowed_models / allowed_providers a list of strings. NULL means "no restriction".
"""
from __future__ import annotations

import secrets
from typing import Any, TypeVar

import msgspec

from ..store import key_events
from ..store.base import hash_secret, new_id
from ..store.db import Database, Row, Tx
from ..clock import now_iso
from .accounts import page

SPEND_KEY_PREFIX = "ep_spk_"
CYCLES = ("daily", "weekly", "monthly", "total")
STATUSES = ("active", "paused")
REQUEST_SHAPES = ("openai", "anthropic")
POLICY_FIELDS = ("name", "status", "request_shape", "allowed_models", "allowed_providers", "spend_limit",
                 "request_limit", "rate_limit", "expires_at")

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class SpendLimit(msgspec.Struct, frozen=True, gc=False):
    amount_nanos: int
    cycle: str  # daily | weekly | monthly | total


class RequestLimit(msgspec.Struct, frozen=True, gc=False):
    count: int
    cycle: str


class RateLimit(msgspec.Struct, frozen=True, gc=False):
    rpm: int
    burst: int | None = None


class SpendKey(msgspec.Struct, frozen=True):
    spend_key_id: str
    merchant_id: str          # the wallet the key spends from
    key_preview: str
    name: str
    status: str               # active | paused (revoked keys are never returned)
    request_shape: str | None
    allowed_models: list[str] | None
    allowed_providers: list[str] | None
    spend_limit: SpendLimit | None
    request_limit: RequestLimit | None
    rate_limit: RateLimit | None
    expires_at: str | None    # UTC, same text format as now_iso(), so it compares as text
    last_used_at: str | None
    total_spend_nanos: int
    total_requests: int
    created_at: str

    def expired(self, now: str | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or now_iso())


_COLUMNS = ("spend_key_id, merchant_id, key_preview, name, status, request_shape, allowed_models, "
            "allowed_providers, spend_limit, request_limit, rate_limit, expires_at, last_used_at, "
            "total_spend_nanos, total_requests, created_at")
_LIVE = "status <> 'revoked'"


_T = TypeVar("_T")


def _json(text: str | None, typ: type[_T]) -> _T | None:
    return None if text is None else msgspec.json.decode(text, type=typ)


def _row(row: Row) -> SpendKey:
    return SpendKey(
        row[0], row[1], row[2], row[3], row[4], row[5], _json(row[6], list[str]), _json(row[7], list[str]),
        _json(row[8], SpendLimit), _json(row[9], RequestLimit), _json(row[10], RateLimit), row[11], row[12],
        int(row[13]), int(row[14]), row[15])


def _column(value: object) -> str | None:
    """A policy value as stored: Structs and lists as JSON text, None as NULL."""
    if value is None or isinstance(value, str):
        return value
    return _encode(value).decode()


def new_spend_key() -> tuple[str, str, str]:
    """A fresh key, its stored hash, and its preview."""
    key = SPEND_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_secret(key), key[:len(SPEND_KEY_PREFIX) + 4] + "..." + key[-4:]


async def find_by_hash(db: Database, key_hash: str) -> SpendKey | None:
    """The live (not revoked) spend key with this hash, policy parsed; the request path checks `status`
    ("paused" refuses) and `expired()` itself."""
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM spend_keys WHERE key_hash = ? AND {_LIVE}", key_hash)
    return _row(row) if row else None


async def get(db: Database, merchant_id: str, spend_key_id: str) -> SpendKey | None:
    return await _read(db, merchant_id, spend_key_id)


async def _read(db: Tx, merchant_id: str, spend_key_id: str) -> SpendKey | None:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM spend_keys WHERE spend_key_id = ? AND merchant_id = ? AND "
                            f"{_LIVE}", spend_key_id, merchant_id)
    return _row(row) if row else None


async def create(db: Database, merchant_id: str, policy: dict[str, Any]) -> tuple[SpendKey, str]:
    """A new key with `policy` (POLICY_FIELDS, values already validated: Structs, lists, str or None).
    Returns the key's row and the key itself, which is never stored."""
    key, key_hash, preview = new_spend_key()
    spend_key_id = new_id("spk")
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO spend_keys (spend_key_id, merchant_id, key_hash, key_preview, name, status, request_shape, "
            "allowed_models, allowed_providers, spend_limit, request_limit, rate_limit, expires_at, last_used_at, "
            "total_spend_nanos, total_requests, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, 0, ?)",
            spend_key_id, merchant_id, key_hash, preview, policy["name"], policy.get("status") or "active",
            policy.get("request_shape") or "openai",
            *(_column(policy.get(n)) for n in POLICY_FIELDS[3:]), now_iso())
        await key_events.created(tx, spend_key_id)
        created = await _written(tx, merchant_id, spend_key_id)
    return created, key


async def _written(tx: Tx, merchant_id: str, spend_key_id: str) -> SpendKey:
    """The row this transaction just wrote, read in the same transaction: a change committed after it (a revoke,
    another rotate) cannot turn the answer into None or pair one key with another's preview."""
    key = await _read(tx, merchant_id, spend_key_id)
    if key is None:
        raise LookupError(f"spend key {spend_key_id} vanished inside the transaction that wrote it")
    return key


async def list_keys(db: Database, merchant_id: str, cursor: tuple[str, ...] | None, limit: int) -> list[SpendKey]:
    """Up to limit + 1 live keys, newest first (see accounts.page)."""
    rows = await page(db, "spend_keys", "spend_key_id", _COLUMNS, merchant_id, cursor, limit, extra_where=_LIVE)
    return [_row(r) for r in rows]


async def update(db: Database, merchant_id: str, spend_key_id: str, policy: dict[str, Any]) -> SpendKey | None:
    """Set the POLICY_FIELDS present in `policy` (None clears a restriction)."""
    sets = [n for n in POLICY_FIELDS if n in policy]
    if not sets:
        return await get(db, merchant_id, spend_key_id)
    async with db.transaction() as tx:
        changed = await tx.execute(
            f"UPDATE spend_keys SET {', '.join(f'{n} = ?' for n in sets)} WHERE spend_key_id = ? AND "
            f"merchant_id = ? AND {_LIVE}", *(_column(policy[n]) for n in sets), spend_key_id, merchant_id)
        if changed != 1:
            return None
        await key_events.record(tx, spend_key_id)
        return await _written(tx, merchant_id, spend_key_id)


async def rotate(db: Database, merchant_id: str, spend_key_id: str) -> tuple[SpendKey, str] | None:
    """Replace the key (the old one stops working at once); the policy and counters stay."""
    key, key_hash, preview = new_spend_key()
    async with db.transaction() as tx:
        changed = await tx.execute(f"UPDATE spend_keys SET key_hash = ?, key_preview = ? WHERE spend_key_id = ? AND "
                                   f"merchant_id = ? AND {_LIVE}", key_hash, preview, spend_key_id, merchant_id)
        if changed != 1:
            return None
        await key_events.record(tx, spend_key_id)
        rotated = await _written(tx, merchant_id, spend_key_id)
    return rotated, key


async def revoke(db: Database, merchant_id: str, spend_key_id: str) -> bool:
    async with db.transaction() as tx:
        revoked = await tx.execute(f"UPDATE spend_keys SET status = 'revoked' WHERE spend_key_id = ? AND "
                                   f"merchant_id = ? AND {_LIVE}", spend_key_id, merchant_id) == 1
        if revoked:
            await key_events.record(tx, spend_key_id)
    return revoked
