"""Merchants and their secret keys, in SQLite or PostgreSQL (see db.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..billing import ledger
from ..billing.payer import Payer
from ..clock import now_iso
from . import key_events
from .base import Merchant, SecretKey, new_id, new_secret_key
from .db import Database, Row, Tx, fetch_row

if TYPE_CHECKING:
    from ..billing.spend_key_store import SpendKey

SCHEMA = """
CREATE TABLE IF NOT EXISTS merchants (
    merchant_id   TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    balance_nanos BIGINT NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS secret_keys (
    secret_key_id TEXT PRIMARY KEY,
    merchant_id   TEXT NOT NULL REFERENCES merchants(merchant_id),
    name          TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    hint          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);
"""
_KEY_COLUMNS = "secret_key_id, merchant_id, name, hint, created_at, revoked_at IS NOT NULL"


def _secret_key(row: Row) -> SecretKey:
    return SecretKey(row[0], row[1], row[2], row[3], row[4], revoked=bool(row[5]))


class SQLStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(self) -> None:
        from ..billing.schema import SCHEMA as BILLING_SCHEMA
        from ..billing.schema_spend import SCHEMA as SPEND_KEY_SCHEMA
        from ..dashboard.schema import SCHEMA as DASHBOARD_SCHEMA
        await self.db.open()
        await self.db.executescript(SCHEMA + BILLING_SCHEMA + SPEND_KEY_SCHEMA + DASHBOARD_SCHEMA
                                    + key_events.SCHEMA + ledger.schema(self.db.dialect))
        await ledger.drop_old_indexes(self.db)  # its own statement: PostgreSQL's lock on `transfers` comes alone
        await ledger.open_accounts(self.db)

    async def close(self) -> None:
        await self.db.close()

    async def create_merchant(self, name: str, balance_nanos: int) -> tuple[Merchant, str]:
        """A merchant and its first secret key; an opening balance is the operator's funding transfer."""
        merchant = Merchant(new_id("mer"), name, balance_nanos, now_iso())
        async with self.db.transaction() as tx:
            await tx.execute("INSERT INTO merchants VALUES (?, ?, 0, ?)",
                             merchant.merchant_id, merchant.name, merchant.created_at)
            if balance_nanos:
                await ledger.post(tx, [ledger.Transfer(f"opening:{merchant.merchant_id}", ledger.FUNDING,
                                                       Payer("merchant", merchant.merchant_id), balance_nanos,
                                                       "funding", merchant.merchant_id)])
            key = await self._add_key(tx, merchant.merchant_id, "default")
        return merchant, key[1]

    async def get_merchant(self, merchant_id: str) -> Merchant | None:
        row = await self.db.fetchone(
            "SELECT merchant_id, name, balance_nanos, created_at FROM merchants WHERE merchant_id = ?", merchant_id)
        return Merchant(row[0], row[1], int(row[2]), row[3]) if row else None

    async def find_secret_key(self, key_hash: str) -> SecretKey | None:
        row = await self.db.fetchone(f"SELECT {_KEY_COLUMNS} FROM secret_keys WHERE key_hash = ?", key_hash)
        return _secret_key(row) if row else None

    async def find_spend_key(self, key_hash: str) -> SpendKey | None:
        """The live spend key with this hash (billing/spend_key_store.py), as authentication reads it."""
        from ..billing.spend_key_store import find_by_hash  # billing imports the store: no cycle at import
        return await find_by_hash(self.db, key_hash)

    # -- secret keys (the merchant's own: `secret_keys` resource) -----------------------------------------
    async def create_secret_key(self, merchant_id: str, name: str) -> tuple[SecretKey, str]:
        async with self.db.transaction() as tx:
            key_id, secret = await self._add_key(tx, merchant_id, name)
            row = await fetch_row(tx, f"SELECT {_KEY_COLUMNS} FROM secret_keys WHERE secret_key_id = ?", key_id)
        return _secret_key(row), secret

    async def list_secret_keys(self, merchant_id: str) -> list[SecretKey]:
        rows = await self.db.fetchall(f"SELECT {_KEY_COLUMNS} FROM secret_keys WHERE merchant_id = ? "
                                      "AND revoked_at IS NULL ORDER BY created_at, secret_key_id", merchant_id)
        return [_secret_key(r) for r in rows]

    async def revoke_secret_key(self, merchant_id: str, secret_key_id: str) -> bool:
        """Revoke a key; every worker's cache forgets it within a second (key_events.py)."""
        async with self.db.transaction() as tx:
            revoked = await tx.execute("UPDATE secret_keys SET revoked_at = ? WHERE merchant_id = ? AND "
                                       "secret_key_id = ? AND revoked_at IS NULL",
                                       now_iso(), merchant_id, secret_key_id) == 1
            if revoked:
                await key_events.record(tx, secret_key_id)
        return revoked

    @staticmethod
    async def _add_key(tx: Tx, merchant_id: str, name: str) -> tuple[str, str]:
        key, key_hash, hint = new_secret_key()
        key_id = new_id("key")
        await tx.execute("INSERT INTO secret_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                         key_id, merchant_id, name, key_hash, hint, now_iso())
        await key_events.created(tx, key_id)  # no worker may still hold its hash as refused
        return key_id, key
