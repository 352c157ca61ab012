"""The production store: merchants and keys in PostgreSQL, through asyncpg."""
from __future__ import annotations

import asyncpg

from .base import Merchant, SecretKey, new_id, new_secret_key, schema
from .sqlite import now_iso

SCHEMA = schema("BIGINT")


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=8, command_timeout=10, timeout=5,
                                               server_settings={"application_name": "edge_proxy_store"})
        async with self._pool.acquire() as conn:
            await conn.execute(SCHEMA)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def create_merchant(self, name: str, balance_nanos: int) -> tuple[Merchant, str]:
        merchant = Merchant(new_id("mer"), name, balance_nanos, now_iso())
        key, key_hash, hint = new_secret_key()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO merchants VALUES ($1, $2, $3, $4)",
                               merchant.merchant_id, merchant.name, merchant.balance_nanos, merchant.created_at)
            await conn.execute("INSERT INTO secret_keys VALUES ($1, $2, $3, $4, $5, $6, NULL)",
                               new_id("key"), merchant.merchant_id, "default", key_hash, hint, merchant.created_at)
        return merchant, key

    async def get_merchant(self, merchant_id: str) -> Merchant | None:
        row = await self.pool.fetchrow(
            "SELECT merchant_id, name, balance_nanos, created_at FROM merchants WHERE merchant_id = $1", merchant_id)
        return Merchant(*row) if row else None

    async def find_secret_key(self, key_hash: str) -> SecretKey | None:
        row = await self.pool.fetchrow(
            "SELECT secret_key_id, merchant_id, name, hint, created_at, revoked_at IS NOT NULL "
            "FROM secret_keys WHERE key_hash = $1", key_hash)
        return SecretKey(*tuple(row)[:5], revoked=bool(row[5])) if row else None

    async def credit_merchant(self, merchant_id: str, nanos: int) -> Merchant:
        await self.pool.execute("UPDATE merchants SET balance_nanos = balance_nanos + $1 WHERE merchant_id = $2",
                                nanos, merchant_id)
        merchant = await self.get_merchant(merchant_id)
        if merchant is None:
            raise KeyError(merchant_id)
        return merchant
