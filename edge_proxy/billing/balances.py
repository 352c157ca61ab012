"""Balances: reading them, and crediting them (each credit is a ledger row; Redis mirrors it when configured).

Reservations are in leases.py, debits in settle.py.
"""
from __future__ import annotations

import logging

from ..clock import now_iso
from ..store.base import new_id
from ..store.db import Database
from .payer import Payer

log = logging.getLogger("edge_proxy.balances")


class UnknownPayer(LookupError):
    pass


class Balances:
    def __init__(self, db: Database, redis_holds=None) -> None:
        self.db = db
        self.redis_holds = redis_holds

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
                             payer.kind, payer.id, nanos, source, now_iso())
            row = await tx.fetchone(f"SELECT balance_nanos FROM {payer.table} WHERE {payer.key_column} = ?",
                                    payer.id)
            if payer.kind == "customer":  # back above the autopay threshold: the next fall fires again
                await tx.execute("UPDATE customers SET autopay_armed = 1 WHERE customer_id = ? AND "
                                 "autopay_threshold_nanos IS NOT NULL AND balance_nanos >= autopay_threshold_nanos",
                                 payer.id)
        if self.redis_holds is not None:
            try:
                await self.redis_holds.credit(payer, nanos)
            except Exception as exc:  # SQL has the credit; Redis shows less money until reconciled (safe side)
                log.warning("Redis credit for %s failed (%s): run `edge-proxy balances reconcile`", payer, exc)
        return int(row[0])
