"""Delivers billing events (autopay) to a merchant's webhooks: signed POSTs, owed in the database until done.

Each delivery is a POST of the event as JSON with
  x-edge-proxy-event: <type>
  x-edge-proxy-event-id: <the event's id, also its "id" field: receivers de-duplicate on it>
  x-edge-proxy-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the webhook secret>
A receiver recomputes the HMAC with its `webhook_secret` and rejects stale timestamps. Any answer other than
2xx (a redirect included), or no answer within the deadline, is retried after a doubling wait (`backoff`
seconds first, at most an hour), up to `attempts` tries; then the delivery is marked failed. A merchant has at
most `per_merchant` deliveries in flight (half of `concurrency` unless given), so a receiver that never answers
cannot hold every slot while the other merchants' events wait behind its own.

Every owed delivery is a row of `webhook_deliveries` (webhook_deliveries.py), so a restart loses none: each
worker runs a loop that claims due rows with a lease, sends them through the guarded outbound client
(edge_proxy.outbound: only public addresses, or the operator's allow-list), and records the outcome. Any worker
of any gateway on the same database may deliver any row; each attempt is made by one of them. Delivery is at
least once: a worker that dies mid-attempt leaves the row to be sent again once its lease ends.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..money import usd
from ..outbound import GuardedClient, OutboundPolicy, Outcome
from ..outbound.client import Resolver
from ..store.db import Database, Tx
from . import webhook_deliveries as deliveries

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger("edge_proxy.webhooks")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    import hashlib  # here: the log writer process imports this module and signs nothing (store/base.py)
    import hmac
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def autopay_data(customer_id: str, balance: int, threshold: int, amount: int) -> dict[str, Any]:
    """The `data` of a customer.autopay event (money as USD decimal strings, as at every edge)."""
    return {"customer_id": customer_id, "balance": usd(balance), "autopay_threshold": usd(threshold),
            "autopay_amount": usd(amount)}


class WebhookSender:
    """One per worker: `emit` owes an event, `start` runs the delivery loop, `stop` ends it at shutdown."""

    def __init__(self, db: Database, _legacy_upstream_of: object = None, *, policy: OutboundPolicy | None = None,
                 attempts: int = 12, backoff: float = 1.0, deadline: float = 10.0, concurrency: int = 8,
                 per_merchant: int | None = None, poll: float = 1.0, idle_poll: float = 5.0,
                 resolver: Resolver | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        # _legacy_upstream_of: what app.py passed when deliveries used the providers' pool; ignored
        self.db = db
        self.attempts = attempts
        self.backoff = backoff
        self.concurrency = concurrency
        # one merchant's deliveries in flight at once (all workers): a receiver that never answers holds at most
        # half the slots, and the other merchants' deliveries go on in the rest
        self.per_merchant = per_merchant or max(1, concurrency // 2)
        self.poll = poll            # the longest wait while a delivery is owed (a retry's time is known)
        self.idle_poll = idle_poll  # the longest wait while none is: see _run
        self.lease = deadline + 30.0   # longer than any attempt can take: the client enforces the deadline
        self.client = GuardedClient(policy or OutboundPolicy(), deadline=deadline, concurrency=concurrency,
                                    resolver=resolver, ssl_context=ssl_context)
        self._clock = clock
        self._loop_task: asyncio.Task[None] | None = None
        self._enqueues: set[asyncio.Task[None]] = set()
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self.delivered = 0
        self.failed = 0

    @classmethod
    def from_settings(cls, db: Database, settings: Settings, **overrides: Any) -> WebhookSender:
        """The sender the settings describe (EDGE_PROXY_WEBHOOK_*)."""
        options: dict[str, Any] = {
            "policy": OutboundPolicy.from_settings(settings), "attempts": settings.webhook_max_attempts,
            "backoff": settings.webhook_retry_seconds, "deadline": settings.webhook_timeout,
            "concurrency": settings.webhook_concurrency}
        options.update(overrides)
        return cls(db, **options)

    # -- owing events ------------------------------------------------------------------------------------------
    def emit(self, merchant_id: str, event_type: str, data: dict[str, Any]) -> None:
        """Owe an event to the merchant's webhooks (stored at once, in the background) and wake the loop."""
        self.start()
        task = asyncio.get_running_loop().create_task(self._enqueue_now(merchant_id, event_type, data))
        self._enqueues.add(task)
        task.add_done_callback(self._enqueues.discard)

    async def enqueue(self, tx: Tx, merchant_id: str, event_type: str, data: dict[str, Any]) -> str:
        """Owe an event inside the caller's transaction (it is owed exactly when that commits); the caller wakes
        the loop with `wake()` after the commit. Returns the event id."""
        event_id, _ = await deliveries.enqueue(tx, merchant_id, event_type, data, self._clock())
        return event_id

    def wake(self) -> None:
        """Tell the loop that something is owed now (after the commit of an `enqueue`)."""
        self.start()
        self._wake.set()

    async def _enqueue_now(self, merchant_id: str, event_type: str, data: dict[str, Any]) -> None:
        try:
            async with self.db.transaction() as tx:
                event_id, n = await deliveries.enqueue(tx, merchant_id, event_type, data, self._clock())
        except Exception:   # the database is down: the event cannot be owed, and that must be loud
            log.exception("webhook event %s for merchant %s could not be stored; it is lost", event_type,
                          merchant_id)
            return
        if n:
            log.info("webhook event %s (%s) owed to %d webhook(s)", event_id, event_type, n)
            self._wake.set()

    # -- the delivery loop -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start delivering (owed deliveries left by an earlier run included); idempotent."""
        if self._loop_task is None and not self._stopping:
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="webhook-deliveries")

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._inflight)
            wait = self.poll
            batch: list[deliveries.Claimed] = []
            if free > 0:
                try:
                    # a read first: claiming is a write, and SQLite has one writer (the log writer among others)
                    now = self._clock()
                    due = await deliveries.next_due(self.db, now)
                    if due is not None and due <= now:
                        batch = await deliveries.claim(self.db, now, self.lease, free, per_merchant=self.per_merchant)
                    elif due is not None:
                        wait = min(self.poll, due - now)
                    else:  # nothing owed: a new row wakes its own worker (after_commit), so a look is only for
                        wait = self.idle_poll   # one that a process owed and died before claiming it
                except Exception as exc:   # the database is away: try again after a poll interval
                    log.warning("webhook deliveries: cannot read the queue (%s: %s)", type(exc).__name__, exc)
                for claimed in batch:
                    task = asyncio.get_running_loop().create_task(self._attempt(claimed))
                    self._inflight.add(task)
                    task.add_done_callback(self._attempt_done)
                if batch and len(batch) == free:
                    continue   # there may be more due right now
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()   # a slot is free

    async def _attempt(self, claimed: deliveries.Claimed) -> None:
        try:
            if claimed.url is None or claimed.secret is None:
                outcome, give_up = Outcome(False, None, "the webhook was deleted"), True
            else:
                outcome, give_up = await self._send(claimed), False
        except asyncio.CancelledError:   # shutdown mid-attempt: the next worker sends it
            await asyncio.shield(deliveries.release(self.db, claimed))
            raise
        try:
            status = await deliveries.record(self.db, claimed, outcome.ok, outcome.status, outcome.error,
                                             self._clock(), max_attempts=self.attempts, backoff=self.backoff,
                                             give_up=give_up)
        except Exception as exc:   # the database is away: the lease runs out and the delivery is owed again
            log.warning("webhook delivery %s: cannot record attempt %d (%s: %s)", claimed.delivery_id,
                        claimed.attempts, type(exc).__name__, exc)
            return
        if status == deliveries.DELIVERED:
            self.delivered += 1
        elif status == deliveries.FAILED:
            self.failed += 1
            log.error("webhook delivery %s of event %s failed for good after %d attempt(s): %s",
                      claimed.delivery_id, claimed.event_id, claimed.attempts, outcome.error)
        else:
            log.warning("webhook delivery %s, attempt %d failed (%s); it will be retried", claimed.delivery_id,
                        claimed.attempts, outcome.error)

    async def _send(self, claimed: deliveries.Claimed) -> Outcome:
        headers = [(b"content-type", b"application/json"), (b"x-edge-proxy-event", claimed.event_type.encode()),
                   (b"x-edge-proxy-event-id", claimed.event_id.encode()),
                   (b"x-edge-proxy-signature", signature(claimed.secret or "", int(self._clock()),
                                                         claimed.body).encode())]
        return await self.client.post(claimed.url or "", headers, claimed.body)

    async def stop(self, timeout: float = 5.0) -> None:
        """Store the events emitted so far, let attempts under way finish (up to `timeout`), give back the rest."""
        self._stopping = True
        if self._enqueues:
            await asyncio.wait(self._enqueues, timeout=timeout)
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                log.warning("%d webhook deliveries were cut short by shutdown; they stay owed", len(pending))
        await self.client.close()
