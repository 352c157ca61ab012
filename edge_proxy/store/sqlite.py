"""The embedded store: one SQLite file in WAL mode, shared by every worker process and the CLI.

Reads here are point lookups on indexed keys (tens of microseconds), so they run on the event loop; the
principal cache keeps them off the common path anyway.
"""
from __future__ import annotations

import sqlite3
import time

from .base import Merchant, SecretKey, new_id, new_secret_key, schema

SCHEMA = schema("INTEGER")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db`, `sqlite:////absolute/path.db` or `sqlite://:memory:`."""
    rest = url[len("sqlite://"):]
    if rest.startswith("/"):
        rest = rest[1:]
    return rest or ":memory:"


class SQLiteStore:
    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        self.open_sync()

    def open_sync(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        db.executescript(SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def create_merchant(self, name: str, balance_nanos: int) -> tuple[Merchant, str]:
        merchant = Merchant(new_id("mer"), name, balance_nanos, now_iso())
        key, key_hash, hint = new_secret_key()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT INTO merchants VALUES (?, ?, ?, ?)",
                            (merchant.merchant_id, merchant.name, merchant.balance_nanos, merchant.created_at))
            self.db.execute("INSERT INTO secret_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                            (new_id("key"), merchant.merchant_id, "default", key_hash, hint, merchant.created_at))
        return merchant, key

    async def get_merchant(self, merchant_id: str) -> Merchant | None:
        row = self.db.execute("SELECT merchant_id, name, balance_nanos, created_at FROM merchants WHERE merchant_id = ?",
                              (merchant_id,)).fetchone()
        return Merchant(*row) if row else None

    async def find_secret_key(self, key_hash: str) -> SecretKey | None:
        row = self.db.execute(
            "SELECT secret_key_id, merchant_id, name, hint, created_at, revoked_at IS NOT NULL "
            "FROM secret_keys WHERE key_hash = ?", (key_hash,)).fetchone()
        return SecretKey(*row[:5], revoked=bool(row[5])) if row else None

    async def credit_merchant(self, merchant_id: str, nanos: int) -> Merchant:
        self.db.execute("UPDATE merchants SET balance_nanos = balance_nanos + ? WHERE merchant_id = ?",
                        (nanos, merchant_id))
        merchant = await self.get_merchant(merchant_id)
        if merchant is None:
            raise KeyError(merchant_id)
        return merchant
