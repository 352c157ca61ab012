"""`edge-proxy balances reconcile`: rebuild every balance from the durable record.

The truth for a payer is its credits (the `credits` ledger) minus its charges (the `charge_nanos` of its rows in
the request log), both written in the same transactions as the balances. Reconcile repairs the SQL balance column
where it differs, and sets the Redis balance of every payer to it. Run it after restoring Redis, or when Redis
missed debits while it was down; it is idempotent. Requests still in a gateway's log queue are not in the ledger
yet, so run it when traffic is quiet, or run it again.
"""
from __future__ import annotations

from ..store.db import Database
from .payer import Payer


async def reconcile(db: Database, redis_holds=None) -> dict:
    credits = {(k, i): int(n) for k, i, n in await db.fetchall(
        "SELECT payer_kind, payer_id, coalesce(sum(amount_nanos), 0) FROM credits GROUP BY payer_kind, payer_id")}
    charges = {(k, i): int(n) for k, i, n in await db.fetchall(
        "SELECT payer, CASE WHEN payer = 'customer' THEN customer_id ELSE merchant_id END, "
        "coalesce(sum(charge_nanos), 0) FROM requests WHERE payer IN ('merchant', 'customer') GROUP BY 1, 2")}
    payers = 0
    repaired = 0
    for kind in ("merchant", "customer"):
        table, column = Payer(kind, "").table, Payer(kind, "").key_column
        for payer_id, stored in await db.fetchall(f"SELECT {column}, balance_nanos FROM {table}"):
            payer = Payer(kind, payer_id)
            truth = credits.get((kind, payer_id), 0) - charges.get((kind, payer_id), 0)
            payers += 1
            if int(stored) != truth:
                repaired += 1
                await db.execute(f"UPDATE {table} SET balance_nanos = ? WHERE {column} = ?", truth, payer_id)
            if redis_holds is not None:
                hot = await redis_holds.redis.hget(payer.redis_key, "b")
                if hot is not None and int(hot) != truth:
                    repaired += 1
                await redis_holds.set_balance(payer, truth)
    return {"payers": payers, "repaired": repaired}
