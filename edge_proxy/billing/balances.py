"""Balances: credits, the reservation a request must hold before it is forwarded, and the debit after.

(The reservation and settlement parts are below the credit API; see the module docstring of leases.py for the
overspend bound.)
"""
from __future__ import annotations

import time

from ..store.base import new_id
from ..store.db import Database
from .payer import Payer


class UnknownPayer(LookupError):
    pass


class Balances:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def balance(self, payer: Payer) -> int:
        row = await self.db.fetchone(f"SELECT balance_nanos FROM {payer.table} WHERE {payer.key_column} = ?",
                                     payer.id)
        if row is None:
            raise UnknownPayer(payer)
        return int(row[0])

    async def credit(self, merchant_id: str, payer: Payer, nanos: int, source: str) -> int:
        """Add funds; every credit is also a ledger row. Returns the new balance."""
        if nanos < 0:
            raise ValueError("a credit is never negative")
        async with self.db.transaction() as tx:
            changed = await tx.execute(
                f"UPDATE {payer.table} SET balance_nanos = balance_nanos + ? WHERE {payer.key_column} = ?",
                nanos, payer.id)
            if changed != 1:
                raise UnknownPayer(payer)
            await tx.execute("INSERT INTO credits VALUES (?, ?, ?, ?, ?, ?, ?)", new_id("cre"), merchant_id,
                             payer.kind, payer.id, nanos, source, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            row = await tx.fetchone(f"SELECT balance_nanos FROM {payer.table} WHERE {payer.key_column} = ?",
                                    payer.id)
        return int(row[0])
