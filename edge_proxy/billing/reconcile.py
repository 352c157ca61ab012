"""The ledger's proof, and its repair.

`verify(db)` (`edge-proxy ledger verify`) checks what the ledger promises (ledger.py):
- the transfers balance: the sum over all accounts is zero, so what every account but the operator's funding
  account holds (`sum_nanos`) is exactly what the operator has funded;
- every balance is the sum of its transfers (credits less debits);
- no account but the funding account is below zero;
- every billed request has exactly one set of transfers, of exactly the amounts its log row says (a customer's
  charge to its merchant, and the merchant's payment to the operator), and every request transfer has its request.

`reconcile(db, redis_holds)` (`edge-proxy balances reconcile`) rebuilds every stored balance from the transfers,
and gives Redis each payer's region lease as the database holds it (holds.py). Run it after restoring Redis, or
when Redis missed a mirror while it was down; it is idempotent. Requests still in a gateway's log queue are not in
the ledger yet: run it when traffic is quiet.
"""
from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from .holds import region_hold_id
from .ledger import FUNDING, account_id, ledger_start
from .payer import Payer

if TYPE_CHECKING:
    from ..store.db import Database
    from .holds import RedisHolds

_KINDS = (("merchant", "merchants", "merchant_id"), ("customer", "customers", "customer_id"),
          ("operator", "ledger_accounts", "account_id"))


async def _stored(db: Database) -> dict[str, int]:
    """Every account's stored balance, by account id."""
    out: dict[str, int] = {}
    for kind, table, column in _KINDS:
        for ident, balance in await db.fetchall(f"SELECT {column}, balance_nanos FROM {table}"):
            out[account_id(Payer(kind, ident))] = int(balance)
    return out


async def _from_transfers(db: Database) -> dict[str, int]:
    """Every account's balance as its transfers make it."""
    truth: dict[str, int] = defaultdict(int)
    for account, amount in await db.fetchall("SELECT credit_account, sum(amount_nanos) FROM transfers GROUP BY 1"):
        truth[account] += int(amount)
    for account, amount in await db.fetchall("SELECT debit_account, sum(amount_nanos) FROM transfers GROUP BY 1"):
        truth[account] -= int(amount)
    return truth


async def verify(db: Database) -> dict[str, Any]:
    stored, truth = await _stored(db), await _from_transfers(db)
    problems: list[str] = []
    for account in sorted(set(stored) | set(truth)):
        if account not in stored:
            problems.append(f"transfers name {account}, which does not exist")
        elif stored[account] != truth.get(account, 0):
            problems.append(f"{account} holds {stored[account]} nanos; its transfers make {truth.get(account, 0)}")
        elif stored[account] < 0 and account != account_id(FUNDING):
            problems.append(f"{account} is below zero: {stored[account]} nanos")
    total = sum(stored.values())
    if total != 0:
        problems.append(f"the accounts sum to {total} nanos, not zero: money was made or lost")
    problems += await _request_problems(db)
    [(transfers,)] = await db.fetchall("SELECT count(*) FROM transfers")
    return {"accounts": len(stored), "transfers": int(transfers), "sum_nanos": total - stored.get(
        account_id(FUNDING), 0), "ok": not problems, "problems": problems[:100]}


# the legs a billed request's row says it has, and the legs its transfers have, side by side
_REQUEST_LEGS = """
WITH legs AS (
  SELECT merchant_id, request_id,
         sum(CASE WHEN kind = 'charge' THEN amount_nanos ELSE 0 END) AS charged,
         sum(CASE WHEN kind IN ('provider_cost', 'fee') THEN amount_nanos ELSE 0 END) AS paid,
         count(*) AS n
  FROM transfers WHERE request_id IS NOT NULL AND kind IN ('charge', 'provider_cost', 'fee')
  GROUP BY merchant_id, request_id
)
SELECT r.merchant_id, r.request_id, coalesce(l.charged, 0), coalesce(l.paid, 0), coalesce(l.n, 0),
       CASE WHEN r.payer = 'customer' THEN coalesce(r.charge_nanos, 0) ELSE 0 END, coalesce(r.operator_nanos, 0)
FROM requests r LEFT JOIN legs l ON l.merchant_id = r.merchant_id AND l.request_id = r.request_id
WHERE (coalesce(l.n, 0) > 0 OR coalesce(r.operator_nanos, 0) > 0
       OR (r.payer = 'customer' AND coalesce(r.charge_nanos, 0) > 0))
  AND r.created_at >= ?
"""
_ORPHAN_LEGS = """
SELECT t.transfer_id FROM transfers t LEFT JOIN requests r ON r.merchant_id = t.merchant_id AND
  r.request_id = t.request_id
WHERE t.request_id IS NOT NULL AND t.kind IN ('charge', 'provider_cost', 'fee') AND r.request_id IS NULL LIMIT 100
"""


async def _request_problems(db: Database) -> list[str]:
    problems = []
    rows = await db.fetchall(_REQUEST_LEGS, await ledger_start(db))
    for merchant_id, request_id, charged, paid, n, owes_charge, owes_paid in rows:
        want = (int(owes_charge) > 0) + (int(owes_paid) > 0)
        if (int(charged), int(paid), int(n)) != (int(owes_charge), int(owes_paid), want):
            problems.append(f"request {merchant_id}/{request_id}: its row says charge {owes_charge} and operator "
                            f"{owes_paid} nanos; its {n} transfers say {charged} and {paid}")
    problems += [f"transfer {tid} names a request that is not in the log" for (tid,) in
                 await db.fetchall(_ORPHAN_LEGS)]
    return problems


async def reconcile(db: Database, redis_holds: RedisHolds | None = None) -> dict[str, int]:
    truth = await _from_transfers(db)
    payers = repaired = 0
    for kind, table, column in _KINDS:
        for ident, stored in await db.fetchall(f"SELECT {column}, balance_nanos FROM {table}"):
            payer = Payer(kind, ident)
            want = truth.get(account_id(payer), 0)
            payers += 1
            if int(stored) != want:
                repaired += 1
                await db.execute(f"UPDATE {table} SET balance_nanos = ? WHERE {column} = ?", want, ident)
            if redis_holds is not None and kind != "operator":
                hot = await redis_holds.redis.hget(payer.redis_key, "b")
                if hot is not None:  # Redis holds this region's lease on the payer: as the database has it
                    lease = await redis_holds.sql.hold(payer, region_hold_id(redis_holds.region, payer), 0,
                                                       redis_holds.region_ttl)
                    if lease is not None and int(hot) != lease:
                        repaired += 1
                    await redis_holds.resync(payer)
    return {"payers": payers, "repaired": repaired}
