"""The billing engine a worker runs: resolve who pays, reserve before forwarding, bill in the log writer.

Request path: `billing_of()` (once per credential, cached with the principal) and `reserve()`.
Log writer: `commit()` prices nothing itself (pricing is metering's) but charges each record once, in the
same transaction as its log row, then mirrors debits to Redis and fires autopay events. With `webhooks` (a
WebhookSender), an autopay event is owed to the merchant's webhooks in that same transaction, so it is
delivered exactly when the charge that caused it commits; `on_autopay` is the older callback after the commit.
"""
from __future__ import annotations

import logging

from ..errors import InvalidRequest
from ..forward_token import ForwardToken
from ..log_sinks import SQLLogSink, usage_rollup
from ..lru import TTLCache
from ..metering.record import RequestRecord
from . import accounts
from .charging import Billing, reservation
from .holds import RedisHolds
from .leases import Lease, Leases
from .payer import Payer
from .settle import disarm_autopay, payer_of, settle
from .spend_counters import record_spend
from .webhooks import autopay_data

log = logging.getLogger("edge_proxy.billing")


class BillingEngine:
    def __init__(self, store_db, log_sink: SQLLogSink, leases: Leases, prices, *, byok_fee_nanos: int = 0,
                 redis_holds: RedisHolds | None = None, on_autopay=None, webhooks=None) -> None:
        self.db = store_db
        self.log_sink = log_sink
        self.leases = leases
        self.prices = prices
        self.byok_fee_nanos = byok_fee_nanos
        self.redis_holds = redis_holds
        self.on_autopay = on_autopay
        self.webhooks = webhooks
        self.inflight: dict[str, tuple[Lease | None, int]] = {}
        self._meters: TTLCache[tuple[str, str], accounts.Meter] = TTLCache(10_000, 30.0)
        self.redis_pending: list[tuple[Payer, str, int, str | None]] = []

    # -- the request path ----------------------------------------------------------------------------------
    async def billing_of(self, merchant_id: str, token: ForwardToken) -> Billing:
        meter = None
        if token.meter_slug:
            meter = await self._meter(merchant_id, token.meter_slug)
            if meter is None:
                raise InvalidRequest(f"meter_slug: no meter {token.meter_slug!r} for this merchant")
        if token.customer_id and meter is not None:
            if await accounts.customer(self.db, merchant_id, token.customer_id) is None:
                raise InvalidRequest(f"customer_id: no customer {token.customer_id!r} for this merchant")
            if token.disable_billing:
                return Billing("none", None, meter)
            return Billing("customer", token.customer_id, meter, self.byok_fee_nanos)
        return Billing("merchant", merchant_id, meter, self.byok_fee_nanos)

    async def _meter(self, merchant_id: str, slug: str) -> accounts.Meter | None:
        meter = self._meters.get((merchant_id, slug))
        if meter is None:
            meter = await accounts.meter_by_slug(self.db, merchant_id, slug)
            if meter is not None:
                self._meters.put((merchant_id, slug), meter)
        return meter

    async def reserve(self, request_id: str, billing: Billing, provider: str, body_len: int, limits,
                      unmanaged: bool) -> tuple[Lease | None, int]:
        """Hold the most this request can cost; raises 402 when the payer cannot cover it."""
        if billing.payer_kind == "none":
            return None, 0
        price = self.prices.lookup(provider, limits.model)
        max_out = (limits.max_tokens or limits.max_completion_tokens or limits.max_output_tokens
                   or self.prices.max_output_tokens(provider, limits.model))
        amount = reservation(billing, price, body_len, max_out, unmanaged)
        lease = await self.leases.reserve(Payer(billing.payer_kind, billing.payer_id), amount)
        if lease is not None:
            self.inflight[request_id] = (lease, amount)
        return lease, amount

    # -- the log writer ------------------------------------------------------------------------------------
    def charge_at_cost(self, records: list[RequestRecord]) -> None:
        """The merchant-wallet charge: provider cost (managed) or the service fee (unmanaged)."""
        for r in records:
            if r.payer == "merchant" and not r.charge_nanos:
                if r.provider_key_type == "unmanaged":
                    r.charge_nanos = self.byok_fee_nanos if r.status_code and r.status_code < 400 else 0
                else:
                    r.charge_nanos = r.cost_nanos or 0

    async def commit(self, records: list[RequestRecord]) -> None:
        self.charge_at_cost(records)
        meters = {}
        for r in records:
            if r.meter_slug and (r.merchant_id, r.meter_slug) not in meters:
                meters[(r.merchant_id, r.meter_slug)] = await self._meter(r.merchant_id, r.meter_slug)
        async with self.log_sink.db.transaction() as tx:
            new = await settle(tx, records, meters, self.log_sink.insert_new)
            await usage_rollup.add(tx, new)  # the daily usage rollup, exactly once with the log rows
            await record_spend(tx, new, self.redis_holds)
            fired = await disarm_autopay(tx, {r.customer_id for r in new if r.payer == "customer" and r.charge_nanos})
            if fired and self.webhooks is not None:
                for customer_id, merchant_id, balance, threshold, amount in fired:
                    await self.webhooks.enqueue(tx, merchant_id, "customer.autopay",
                                                autopay_data(customer_id, balance, threshold, amount))
        charged_now = {r.request_id for r in new}
        for r in records:
            self._finished(r, r.charge_nanos if r.request_id in charged_now else 0)
        if self.redis_holds is not None:
            self.redis_pending += [(p, r.request_id, r.charge_nanos, r.hold_id) for r in new
                                   if r.charge_nanos and (p := payer_of(r)) is not None]
            await self.flush_redis()
        if fired and self.webhooks is not None:
            self.webhooks.wake()
        elif fired and self.on_autopay is not None:
            for event in fired:
                self.on_autopay(*event)

    def _finished(self, record: RequestRecord, consumed: int) -> None:
        entry = self.inflight.pop(record.request_id, None)
        if entry is not None:
            self.leases.finished(entry[0], entry[1], consumed)

    def spilled(self, records: list[RequestRecord]) -> None:
        """Records that went to disk instead of the store: their requests are over for this worker."""
        for r in records:
            self._finished(r, 0)

    async def flush_redis(self) -> None:
        """Mirror committed debits to Redis (idempotent per request). Failures wait for the next batch; until
        then Redis shows more money than SQL, by at most these debits (`edge-proxy balances reconcile`)."""
        while self.redis_pending:
            batch = self.redis_pending[:500]
            try:
                await self.redis_holds.debit(batch)
            except Exception as exc:  # Redis down: keep the debits for the next flush
                log.warning("Redis debits failed (%s); %d pending", exc, len(self.redis_pending))
                return
            del self.redis_pending[:len(batch)]
