"""Moving money outside of requests: the operator funding a merchant, a merchant crediting a customer, and the
operator's refunds and corrections. Each is one transfer with an id that makes it happen once (ledger.py).

- `fund`: operator -> merchant. The only way money comes in (the admin API and the CLI on the host).
- `credit_customer`: merchant -> customer, only what the merchant's wallet holds beyond what its requests have
  set aside (a hold is taken first, in the same store that admits requests, so a credit and a request never
  spend the same money); 402 otherwise.
- `transfer`: any account to any other (the operator's refunds and corrections), never past a balance.
An id already used is a replay when it names the same transfer (nothing moves, the answer is as before) and a 409
when it names another: an idempotency key reused for another customer, account or amount never reads as done.
Redis, when configured, mirrors every change once (holds.RedisHolds.apply), retried with the billing engine's
pending mirror when Redis is down.
"""
from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from ..errors import Conflict, InsufficientBalance, InvalidRequest
from ..money import usd
from . import ledger
from .holds import region_hold_id
from .ledger import FUNDING, Transfer
from .payer import Payer

if TYPE_CHECKING:
    from ..store.db import Database
    from .holds import HoldBackend, RedisHolds

log = logging.getLogger("edge_proxy.balances")
CREDIT_HOLD_TTL = 60.0  # seconds: a credit's hold lives only while its transfer is written


class UnknownPayer(LookupError):
    pass


def transfer_id(scope: str, key: str | None) -> str:
    """The id that makes a transfer happen once: the caller's idempotency key (scoped to who sent it), or new."""
    if key is None:
        return f"{scope}:{secrets.token_hex(12)}"
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise InvalidRequest("Idempotency-Key: 1 to 200 printable characters")
    return f"{scope}:key:{key}"


class Balances:
    def __init__(self, db: Database, holds: HoldBackend, redis_holds: RedisHolds | None = None,
                 redis_pending: list[tuple[Payer, str, int, str | None, int]] | None = None) -> None:
        self.db = db
        self.holds = holds
        self.redis_holds = redis_holds
        self.redis_pending = redis_pending if redis_pending is not None else []

    async def balance(self, payer: Payer) -> int:
        row = await self.db.fetchone(f"SELECT balance_nanos FROM {payer.table} WHERE {payer.key_column} = ?",
                                     payer.id)
        if row is None:
            raise UnknownPayer(payer)
        return int(row[0])

    async def fund(self, merchant_id: str, nanos: int, tid: str) -> int:
        """Operator -> merchant: money from outside. Returns the wallet's balance."""
        merchant = Payer("merchant", merchant_id)
        await self.balance(merchant)  # UnknownPayer for a merchant that does not exist
        t = Transfer(tid, FUNDING, merchant, nanos, "funding", merchant_id)
        posted = await self._post([t])
        if not posted:
            await self._made_before(t)
        await self._mirror([(merchant, tid, nanos, None, 0)] if posted else [])
        return await self.balance(merchant)

    async def credit_customer(self, merchant_id: str, customer_id: str, nanos: int, tid: str,
                              kind: str = "credit") -> int:
        """Merchant -> customer, from what the wallet has free; 402 when it cannot cover it. Re-arms autopay.
        Returns the customer's balance."""
        merchant, customer = Payer("merchant", merchant_id), Payer("customer", customer_id)
        t = Transfer(tid, merchant, customer, nanos, kind, merchant_id)
        if await self._made_before(t):
            return await self.balance(customer)  # asked again with the same idempotency key: done already
        hold_id = f"transfer:{tid}"
        if await self.holds.hold(merchant, hold_id, nanos, CREDIT_HOLD_TTL) is None:
            raise InsufficientBalance("insufficient balance: the wallet, less what requests in flight have set aside, "
                                      "does not cover this credit")
        try:
            posted = await self._post([t], rearm=customer_id, spent=merchant)
            if not posted:  # the same key, sent twice at once: the other one made it
                await self._made_before(t)
            await self._mirror([(merchant, tid, -nanos, hold_id, nanos), (customer, tid, nanos, None, 0)]
                               if posted else [])
        finally:
            await self.holds.release(merchant, hold_id)
        return await self.balance(customer)

    async def transfer(self, t: Transfer) -> bool:
        """The operator's refund or correction between any two accounts; False when it was made before."""
        for account in (t.debit, t.credit):
            if account.kind != "operator":
                await self.balance(account)
        posted = await self._post([t], rearm=t.credit.id if t.credit.kind == "customer" else None,
                                  spent=t.debit if t.debit.kind != "operator" else None)
        if not posted:  # its id was used before: a replay of this transfer, or a 409 for another
            await self._made_before(t)
            return False
        await self._mirror([(account, t.transfer_id, change, None, 0)
                            for account, change in ((t.debit, -t.amount), (t.credit, t.amount))
                            if account.kind != "operator"])
        return True

    async def _made_before(self, t: Transfer) -> bool:
        """Whether `t`'s id is recorded already: True when it recorded `t` itself (a replay), Conflict (409) when
        it recorded another transfer, False when it is new."""
        row = await self.db.fetchone("SELECT debit_account, credit_account, amount_nanos FROM transfers WHERE "
                                     "transfer_id = ?", t.transfer_id)
        if row is None:
            return False
        debit, credit, amount = row[0], row[1], int(row[2])
        if (debit, credit, amount) != (ledger.account_id(t.debit), ledger.account_id(t.credit), t.amount):
            raise Conflict(f"Idempotency-Key (or transfer_id): already used for another transfer ({debit} -> "
                           f"{credit}, {usd(amount)} USD); a new transfer needs a new key")
        return True

    async def _post(self, transfers: list[Transfer], rearm: str | None = None,
                    spent: Payer | None = None) -> list[Transfer]:
        try:
            async with self.db.transaction() as tx:
                posted = await ledger.post(tx, transfers, once=True)
                if spent is not None and posted and self.redis_holds is not None:
                    # the money left the balance: the region's lease on it shrinks by as much (holds.py)
                    amount = sum(t.amount for t in posted)
                    await tx.execute("UPDATE holds SET amount_nanos = CASE WHEN amount_nanos > ? THEN amount_nanos "
                                     "- ? ELSE 0 END WHERE hold_id = ?", amount, amount,
                                     region_hold_id(self.redis_holds.region, spent))
                if rearm is not None and posted:  # back above the autopay threshold: the next fall fires again
                    await tx.execute("UPDATE customers SET autopay_armed = 1 WHERE customer_id = ? AND "
                                     "autopay_threshold_nanos IS NOT NULL AND balance_nanos >= "
                                     "autopay_threshold_nanos", rearm)
        except Exception as exc:
            if ledger.is_range_error(exc):
                raise InsufficientBalance("a balance would leave its range: below zero, or over "
                                          f"{ledger.MAX_BALANCE_NANOS // 10**9} USD") from None
            raise
        return posted

    async def _mirror(self, entries: list[tuple[Payer, str, int, str | None, int]]) -> None:
        if self.redis_holds is None or not entries:
            return
        try:
            await self.redis_holds.apply(entries)
        except Exception as exc:  # SQL has it; the billing engine's next flush retries the mirror
            log.warning("Redis mirror of a transfer failed (%s); retried with the next batch", exc)
            self.redis_pending.extend(entries)
