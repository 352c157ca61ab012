"""The billing engine a worker runs: who pays, what a request may cost before it is sent, and billing afterwards.

Request path: `billing_of()` (once per credential, cached with the principal), `quote()` (what an attempt can
cost at most, or the refusal of what the gateway cannot price or bound: admission fails closed) and `reserve()`.
Log writer: `commit_tx()` bills each record once, in the same transaction as its log row (settle.py, ledger.py),
and owes autopay webhook events in it; it may run in the writer process, which then also mirrors the batch's
debits to Redis (`mirror()`). `after_commit()`, on the serving loop, gives each request's reservation back,
mirrors to Redis what was not mirrored yet and wakes the webhook sender.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from ..errors import InputNotBounded, InvalidRequest, ModelNotPriced, ServiceUnavailable
from ..forward_token import ForwardToken
from ..log_sinks import SQLLogSink, usage_rollup
from ..lru import TTLCache
from ..metering.pricing import PriceTable
from ..metering.record import RequestRecord
from . import accounts
from . import webhook_deliveries as deliveries
from .charging import UNPRICEABLE_METERS, Billing, Quote, quote
from .holds import REDIS_RETRY_WINDOW, RedisHolds
from .leases import Lease, Leases
from .ledger import Transfer
from .payer import Payer
from .settle import consumed, disarm_autopay, settle
from .spend_counters import record_spend
from .webhooks import autopay_data

if TYPE_CHECKING:
    from ..auth import Principal
    from ..request_path.plan import Attempt
    from ..store.db import Database
    from .webhooks import WebhookSender

log = logging.getLogger("edge_proxy.billing")
_tuple_new = tuple.__new__  # builds a NamedTuple from its fields in order, without its Python-level __new__
FREE = Quote(0, 0, 0)
_RELEASE_SLICE = 100  # reservations given back between two turns of the event loop (after_commit)


class Reservation(NamedTuple):
    """What one request set aside: on its payer's balance, and on its merchant's wallet (charging.py)."""

    payer: Lease | None = None
    payer_nanos: int = 0
    merchant: Lease | None = None
    merchant_nanos: int = 0


NOTHING = Reservation()


class Committed(msgspec.Struct, array_like=True):
    """What one committed batch changed, for the serving loop (`BillingEngine.after_commit`); it crosses the pipe
    from the writer process."""

    consumed: list[tuple[str, int, int]]  # (request id, payer took, merchant took) of each record billed now
    # the Redis copy of the transfers' debits, with Redis holds only (empty in SQL mode): (account kind,
    # account id, transfer id, change, hold id, hold used)
    debits: list[tuple[str, str, str, int, str | None, int]]
    fired: int  # autopay events owed by this transaction


class BillingEngine:
    def __init__(self, store_db: Database, log_sink: SQLLogSink, leases: Leases, prices: PriceTable, *,
                 byok_fee_nanos: int = 0, redis_holds: RedisHolds | None = None,
                 webhooks: WebhookSender | None = None) -> None:
        self.db = store_db
        self.log_sink = log_sink
        self.leases = leases
        self.prices = prices
        self.byok_fee_nanos = byok_fee_nanos
        self.redis_holds = redis_holds
        self.webhooks = webhooks
        self.inflight: dict[str, Reservation] = {}
        self._meters: TTLCache[tuple[str, str], accounts.Meter] = TTLCache(10_000, 30.0)
        self.redis_pending: list[tuple[Payer, str, int, str | None, int]] = []
        self.redis_failing_since: float | None = None  # monotonic: when a flush first left debits pending
        self.redis_resync: set[Payer] = set()  # payers whose debits gave way to a lease reload (flush_redis)
        # how long the request log has failed to take a batch (log_queue.LogQueue.failing_for), set at start-up
        self.settle_lag: Callable[[], float] = lambda: 0.0
        self.settled: Callable[[Committed], None] | None = None  # observability: what each batch charged

    # -- the request path ----------------------------------------------------------------------------------
    async def billing_of(self, merchant_id: str, token: ForwardToken) -> Billing:
        meter = None
        fee = self.byok_fee_nanos
        if token.meter_slug:
            meter = await self._meter(merchant_id, token.meter_slug)
            if meter is None:
                raise InvalidRequest(f"meter_slug: no meter {token.meter_slug!r} for this merchant")
        # a customer named without a meter pays nothing, but its requests are logged under it: it must exist too
        if token.customer_id and await accounts.customer(self.db, merchant_id, token.customer_id) is None:
            raise InvalidRequest(f"customer_id: no customer {token.customer_id!r} for this merchant")
        if token.customer_id and meter is not None:
            if token.disable_billing:
                return Billing("none", None, meter, fee, merchant_id)
            return Billing("customer", token.customer_id, meter, fee, merchant_id)
        return Billing("merchant", merchant_id, meter, fee, merchant_id)

    async def _meter(self, merchant_id: str, slug: str) -> accounts.Meter | None:
        meter = self._meters.get((merchant_id, slug))
        if meter is None:
            meter = await accounts.meter_by_slug(self.db, merchant_id, slug)
            if meter is not None:
                self._meters.put((merchant_id, slug), meter)
        return meter

    def forget(self, ids: set[str]) -> None:
        """Key events: drop the cached meters they name (a deleted meter), as the principal cache drops its own."""
        self._meters.discard_where(lambda meter: meter.meter_id in ids)

    def forget_all(self) -> None:
        self._meters.clear()

    def quote(self, principal: Principal, attempt: Attempt) -> Quote:
        """The most this attempt can cost whom (charging.py), or the refusal of a request the gateway cannot
        price or bound on the operator's managed key: it is never sent at $0 or without a ceiling."""
        billing, bounds = principal.billing, attempt.bounds
        assert billing is not None  # every principal is billed somehow (auth.py)
        if billing.payer_kind == "customer" and billing.meter is not None \
                and billing.meter.tier_type in UNPRICEABLE_METERS:
            raise InvalidRequest(f"meter {billing.meter.meter_slug!r} prices {billing.meter.tier_type}, which only "
                                 "post-request reporting (POST /v1/requests) can count; bill proxied requests on a "
                                 "tokens_1m, requests or percentage meter")
        provider, model = attempt.provider.name, attempt.model
        if attempt.free:  # a token count (the catalogue's free endpoints): no fee, no meter, no reservation
            return FREE
        unmanaged = principal.provider_key is not None
        price = self.prices.lookup(provider, model)  # one lookup: the output limit is the price's own
        limit = price.max_output_tokens if price is not None else None  # PriceTable.output_limit
        if bounds.max_output is not None and limit is not None and bounds.max_output > limit:
            raise InvalidRequest(f"max_tokens: {model} writes at most {limit} tokens, not {bounds.max_output}")
        if unmanaged:  # a BYOK request's ceiling may be a guess: PriceTable.max_output_tokens
            max_out = bounds.max_output or (limit if limit is not None else self.prices.default_max_output_tokens)
            return quote(billing, price, bounds.input_tokens, max_out * bounds.choices, True)
        if not bounds.parsed:
            raise InvalidRequest("the request body is not a JSON object, so the gateway cannot bound what it costs "
                                 "on its managed key; send your own key as provider_key (BYOK)")
        if price is None:
            raise ModelNotPriced(f"model {model!r} of {provider!r} has no price, so the gateway will not send it on "
                                 "its managed key: the operator can add a price (EDGE_PROXY_PRICES_FILE), or send "
                                 "your own key as provider_key (BYOK)")
        if bounds.background:  # answered `queued`, with no usage: what it then uses is never in an answer we see
            raise InvalidRequest("background: a background response runs on after its request is answered, so the "
                                 "gateway cannot read what it uses on its managed key; send your own key as "
                                 "provider_key (BYOK), or leave background out")
        if bounds.unbounded:
            raise InputNotBounded(f"the request sends {bounds.unbounded}, whose tokens the gateway cannot bound "
                                  "before sending it on its managed key: send the content inline, or your own key "
                                  "as provider_key (BYOK)")
        ceiling = bounds.max_output or limit
        if ceiling is None:
            raise InvalidRequest(f"max_tokens: required for {model}, whose output limit the gateway does not know "
                                 "(it must bound what a request can cost before sending it)")
        return quote(billing, price, bounds.input_tokens, ceiling * bounds.choices, False)  # each answer billed

    async def reserve(self, request_id: str, billing: Billing, q: Quote) -> Reservation:
        """Hold what the quote says, on the payer and on the merchant: 402 when either cannot cover it, 503 when
        the balance store is not answering or the request log has been down longer than a lease lasts (what was
        spent meanwhile is not settled yet, so no new money may be promised)."""
        if not (q.payer or q.merchant):
            return NOTHING
        if self.settle_lag() > self.leases.ttl:
            raise ServiceUnavailable("the request log has not taken records for longer than a balance lease lasts, "
                                     "so spending cannot be settled: the gateway takes no new reservations until "
                                     "it answers again")
        payer = merchant = None
        leases = self.leases
        # a lease with room is found by a plain (kind, id) tuple; a Payer is built only to ask the store
        if q.payer and billing.payer_id:
            payer = leases.reserve_local((billing.payer_kind, billing.payer_id), q.payer) \
                or await leases.reserve(Payer(billing.payer_kind, billing.payer_id), q.payer)
        if q.merchant:
            try:
                merchant = leases.reserve_local(("merchant", billing.merchant_id), q.merchant) \
                    or await leases.reserve(Payer("merchant", billing.merchant_id), q.merchant)
            except BaseException:
                leases.finished(payer, q.payer, 0)
                raise
        # tuple.__new__: the NamedTuple's Python-level __new__ costs twice as much (charging.py says more)
        held = _tuple_new(Reservation, (payer, q.payer if payer else 0, merchant, q.merchant if merchant else 0))
        self.inflight[request_id] = held
        return held

    # -- the log writer ------------------------------------------------------------------------------------
    async def commit(self, records: list[RequestRecord]) -> None:
        await self.after_commit([r.request_id for r in records], await self.commit_tx(records))

    async def commit_tx(self, records: list[RequestRecord]) -> Committed:
        """Bill the records and write their log rows, transfers, rollup, spend counters and owed webhook events in
        ONE transaction. It touches no per-worker state, so it may run in the log writer's own process
        (log_sinks/writer_process.py); what it changed goes to `after_commit` on the serving loop."""
        meters: dict[str, accounts.Meter | None] = {}  # read afresh for each batch: the price at billing
        for r in records:
            if r.meter_slug and not r.meter_id:  # a record made without its meter's id (metering/opened.py)
                live = await accounts.meter_by_slug(self.db, r.merchant_id, r.meter_slug)
                r.meter_id = live.meter_id if live else None
            if r.meter_id and r.meter_id not in meters:
                meters[r.meter_id] = await accounts.meter(self.db, r.merchant_id, r.meter_id, deleted=True)
        async with self.log_sink.db.transaction() as tx:
            new, transfers = await settle(tx, records, meters, self.log_sink.insert_new, self.byok_fee_nanos)
            await usage_rollup.add(tx, new)  # the daily usage rollup, exactly once with the log rows
            await record_spend(tx, new, self.redis_holds)
            fired = await disarm_autopay(tx, {r.customer_id for r in new if r.payer == "customer" and r.charge_nanos
                                              and r.customer_id})
            for customer_id, merchant_id, balance, threshold, amount in fired:
                await deliveries.enqueue(tx, merchant_id, "customer.autopay",
                                         autopay_data(customer_id, balance, threshold, amount), time.time())
        # without Redis holds (SQL mode) nothing mirrors the debits: they are not built nor sent over the pipe
        return Committed(consumed=[(r.request_id, *consumed(r)) for r in new],
                         debits=[] if self.redis_holds is None else _redis_debits(new, transfers),
                         fired=len(fired))

    async def after_commit(self, request_ids: list[str], done: Committed) -> None:
        """The serving loop's part of a commit: give back the reservations of the batch's requests (what the
        billed ones consumed is spent), mirror the debits the writer process did not (all of them with the inline
        writer) to Redis, and wake the webhook loop for owed events."""
        took = {rid: (payer, merchant) for rid, payer, merchant in done.consumed}
        if self.settled is not None:  # observability hook (metrics: charge)
            self.settled(done)
        for i, request_id in enumerate(request_ids, 1):
            self._finished(request_id, took.get(request_id, (0, 0)))  # a replay's old record consumed nothing now
            if i % _RELEASE_SLICE == 0:
                await asyncio.sleep(0)  # a request arriving meanwhile waits for a slice, not for the whole batch
        if self.redis_holds is not None:
            self.redis_pending += [(Payer(kind, pid), marker, change, hold, used)
                                   for kind, pid, marker, change, hold, used in done.debits]
            await self.flush_redis()
        if done.fired and self.webhooks is not None:
            self.webhooks.wake()

    def _finished(self, request_id: str, took: tuple[int, int]) -> None:
        held = self.inflight.pop(request_id, None)
        if held is not None:
            self.leases.finished(held.payer, held.payer_nanos, took[0])
            self.leases.finished(held.merchant, held.merchant_nanos, took[1])

    async def mirror(self, debits: list[tuple[str, str, str, int, str | None, int]]
                     ) -> list[tuple[str, str, str, int, str | None, int]]:
        """In the log writer process, right after its commit: mirror the batch's debits to Redis from there, so
        the serving loop neither encodes nor sends them (bench/RESULTS.md: 7-9 us a record on the worker). What
        Redis does not take is returned; it goes back to the worker with the batch's answer, and the worker's
        `after_commit` keeps it and retries it with its next batches, as it does for every debit without this."""
        self.redis_pending += [(Payer(kind, pid), marker, change, hold, used)
                               for kind, pid, marker, change, hold, used in debits]
        await self.flush_redis()
        left, self.redis_pending = self.redis_pending, []
        self.redis_failing_since = None  # what is left goes to the worker, whose flushes keep the time from now
        return [(payer.kind, payer.id, marker, change, hold, used) for payer, marker, change, hold, used in left]

    async def flush_redis(self) -> None:
        """Mirror committed debits to Redis (each applied once, by its marker). Failures wait for the next batch;
        until then Redis shows more money than SQL, by at most these debits (`edge-proxy balances reconcile`).
        Debits that have waited REDIS_RETRY_WINDOW are not sent again, since their markers may be gone before they
        land: their payers' leases are reloaded from the database instead (`RedisHolds.resync`), which counts them
        already; a reload that fails is tried again at each flush."""
        holds = self.redis_holds
        if holds is None:  # pending only ever with Redis holds
            return
        since = self.redis_failing_since
        if self.redis_pending and since is not None and time.monotonic() - since > REDIS_RETRY_WINDOW:
            log.warning("Redis debits: %d waited over %.0f s; their payers' leases are reloaded from the database "
                        "instead", len(self.redis_pending), REDIS_RETRY_WINDOW)
            self.redis_resync.update(payer for payer, *_ in self.redis_pending)
            self.redis_pending = []
        while self.redis_pending:
            batch = self.redis_pending[:500]
            try:
                await holds.apply(batch)
            except Exception as exc:  # Redis down: keep the debits for the next flush
                log.warning("Redis debits failed (%s); %d pending", exc, len(self.redis_pending))
                if self.redis_failing_since is None:
                    self.redis_failing_since = time.monotonic()
                return
            del self.redis_pending[:len(batch)]
        self.redis_failing_since = None
        for payer in list(self.redis_resync):  # after the debits above: the reload's figure counts them already
            try:
                await holds.resync(payer)
            except Exception as exc:  # Redis or the database away: the next flush tries again
                log.warning("Redis lease reload for %s failed (%s); %d to go", payer, exc, len(self.redis_resync))
                return
            self.redis_resync.discard(payer)


def _redis_debits(new: list[RequestRecord], transfers: list[Transfer]) -> list[tuple[str, str, str, int, str | None,
                                                                                     int]]:
    """The Redis copy of what the batch's transfers took from customers' and merchants' balances: (account kind,
    account id, marker id, change, the hold it came out of, how much of that hold it used), one per account and
    hold, each applied once by its marker. The batch's debits from one account out of one hold are summed into one
    entry whose marker is the first of their transfer ids: a transfer is in one commit only, so the marker is
    unique, and the summed entry is retried whole. Redis then keeps one marker key (~250 bytes, SETTLED_MARKER_TTL)
    per account and batch, not one per request; the script's sums are the same either way. Debits only: Redis
    holds a region's lease on a balance, which a credit leaves as it is (RedisHolds.apply), and the operator's
    accounts are in SQL only (nothing on the request path reads them)."""
    by_request = {(r.merchant_id, r.request_id): r for r in new}
    summed: dict[tuple[str, str, str | None], list[Any]] = {}  # (kind, id, hold) -> [marker, change, used]
    for t in transfers:
        kind = t.debit.kind
        if kind == "operator":
            continue
        r = by_request[(t.merchant_id or "", t.request_id or "")]
        payer_took, merchant_took = consumed(r)
        if kind == "customer" or r.payer == "merchant":
            hold, took = r.hold_id, payer_took
        else:
            hold, took = r.merchant_hold_id, merchant_took
        entry = summed.get((kind, t.debit.id, hold))
        if entry is None:
            summed[(kind, t.debit.id, hold)] = [t.transfer_id, -t.amount, took]
        else:
            entry[1] -= t.amount
            entry[2] += took
    return [(kind, account, marker, change, hold, took)
            for (kind, account, hold), (marker, change, took) in summed.items()]
