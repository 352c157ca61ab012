"""The per-worker balance cache: leases on each payer's balance, so a well-funded payer costs no round trip.

A lease is this worker's hold (holds.py) plus what its requests in flight use of it. Admitting a request is a
dict lookup and two integer operations when the lease has room; otherwise the worker grows its hold with one
atomic call to the shared store (SQL or Redis) — by a chunk of several requests' worth, so the next ones are
local again — and answers 402 when the payer's balance cannot cover even this request. A chunk is `chunk`
requests' worth, or more for a busy payer: what its requests used in the last `lease_seconds`, up to
`max_chunk` requests. The lease is topped up in the background once less than half a chunk is left, so a steady
stream of requests never waits for the store, even while the store is busy writing a log batch: only a request
that finds the lease empty does.

Every admitted request is backed by money held in the shared store, across any number of workers and gateway
processes, so the balance never goes below zero because of concurrency. The only overspend is a request whose
real cost exceeds its reservation (see charging.py): at most the sum of those excesses over requests in flight.
A lease idle for `idle_release` seconds is given back; a worker that dies leaves a hold that expires after
`ttl` seconds, during which that money is unavailable, never lost.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

from ..errors import InsufficientBalance, ServiceUnavailable
from .holds import HoldBackend
from .payer import Payer

log = logging.getLogger("edge_proxy.leases")


class Lease:
    __slots__ = ("payer", "hold_id", "total", "used", "expires", "last_used", "lock", "refilling", "consumed",
                 "admitted", "sized_at", "sized_admitted", "target")

    def __init__(self, payer: Payer, hold_id: str) -> None:
        self.payer = payer
        self.hold_id = hold_id
        self.total = 0      # what the store holds for this worker
        self.used = 0       # reservations of requests in flight
        self.expires = 0.0
        self.last_used = time.monotonic()
        self.lock = asyncio.Lock()
        self.refilling = False
        self.consumed = 0   # all ever spent from the hold (see Leases._hold)
        self.admitted = 0   # requests admitted, and when/at which count the chunk was last sized (the rate)
        self.sized_at = self.last_used
        self.sized_admitted = 0
        self.target = 0     # what the last growth aimed to hold; a top-up starts below half of it


class Leases:
    def __init__(self, backend: HoldBackend, *, ttl: float = 30.0, chunk: int = 16, max_chunk: int = 1024,
                 lease_seconds: float = 0.5, min_chunk_nanos: int = 0, idle_release: float = 5.0,
                 timeout: float = 2.0) -> None:
        self.backend = backend
        self.ttl = ttl
        self.chunk = chunk
        self.max_chunk = max_chunk
        self.lease_seconds = lease_seconds
        self.min_chunk_nanos = min_chunk_nanos
        self.idle_release = idle_release
        self.timeout = timeout
        self.worker_id = f"{os.getpid()}-{os.urandom(4).hex()}"
        # keyed by (kind, id): a Payer is that tuple, so the request path looks a lease up without building one
        self._leases: dict[tuple[str, str], Lease] = {}
        self._task: asyncio.Task[None] | None = None
        self._refills: set[asyncio.Task[None]] = set()
        self.local_hits = 0
        self.store_calls = 0
        self.refills = 0

    # -- the request path ----------------------------------------------------------------------------------
    async def reserve(self, payer: Payer, amount: int) -> Lease | None:
        """Set `amount` aside for one request. Raises InsufficientBalance (402) or ServiceUnavailable (503)."""
        if amount <= 0:
            return None
        return self.reserve_local(payer, amount) or await self._grow(payer, amount)

    def reserve_local(self, payer: tuple[str, str], amount: int) -> Lease | None:
        """`reserve` when this worker's lease has room for a positive `amount` (no store call, no await), else
        None: then the caller awaits `reserve`, which asks the store. `payer` may be a plain (kind, id) tuple."""
        lease = self._leases.get(payer)
        if lease is None or lease.total - lease.used < amount or amount <= 0:
            return None
        now = time.monotonic()
        if lease.expires <= now:
            return None
        lease.used += amount
        lease.admitted += 1
        lease.last_used = now
        self.local_hits += 1
        if not lease.refilling and (lease.total - lease.used) * 2 < lease.target:
            self._refill_soon(lease, amount)
        return lease

    def _chunk_nanos(self, lease: Lease, amount: int, now: float) -> int:
        """How much a grown lease should hold: `chunk` requests' worth, or what the payer's requests used in
        the last `lease_seconds` (at the rate seen since the last sizing), up to `max_chunk` requests."""
        elapsed = now - lease.sized_at
        n = self.chunk
        if elapsed > 0:
            n = max(n, min(self.max_chunk, int((lease.admitted - lease.sized_admitted) * self.lease_seconds / elapsed)))
        lease.sized_at, lease.sized_admitted = now, lease.admitted
        lease.target = max(amount * n, self.min_chunk_nanos)
        return lease.target

    def _refill_soon(self, lease: Lease, amount: int) -> None:
        lease.refilling = True
        task = asyncio.get_running_loop().create_task(self._refill(lease, amount))
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _refill(self, lease: Lease, amount: int) -> None:
        """Top the lease up to a chunk before it runs dry. Best effort: a refusal or a store error leaves the
        lease as it is, and the request that finds it empty asks the store itself (402/503 come from there)."""
        try:
            async with lease.lock:
                now = time.monotonic()
                if lease.expires <= now or self._leases.get(lease.payer) is not lease:
                    return
                free = max(0, lease.total - lease.used)
                if free * 2 >= lease.target:
                    return
                self.refills += 1
                total = await self._hold(lease, self._chunk_nanos(lease, amount, now) - free)
                plain = max(amount * self.chunk, self.min_chunk_nanos)
                if total is None and plain > free:  # the balance cannot cover a busy chunk: try the plain one
                    total = await self._hold(lease, plain - free)
                if total is not None:
                    lease.total = total
                    lease.expires = now + self.ttl * 0.8
                # aim no higher than what the store gave: a payer running low is not asked again per request
                lease.target = min(lease.target, max(0, lease.total - lease.used))
        except Exception as exc:  # noqa: BLE001 - best effort; the request path reports store failures
            log.debug("background top-up for %s failed: %s: %s", lease.payer, type(exc).__name__, exc)
        finally:
            lease.refilling = False

    async def _grow(self, payer: Payer, amount: int) -> Lease:
        lease = self._leases.get(payer)
        if lease is None:
            lease = self._leases[payer] = Lease(payer, f"{self.worker_id}:{payer.kind}:{payer.id}")
        async with lease.lock:
            now = time.monotonic()
            if lease.total - lease.used >= amount and lease.expires > now:  # another request grew it meanwhile
                lease.used += amount
                lease.admitted += 1
                return lease
            free = max(0, lease.total - lease.used) if lease.expires > now else 0
            wanted = self._chunk_nanos(lease, amount, now) - free
            total = await self._hold(lease, wanted)
            if total is None and wanted > amount - free:
                total = await self._hold(lease, amount - free)
            if total is None:
                raise InsufficientBalance("insufficient balance: the payer's balance does not cover this "
                                          "request's maximum cost; add funds first")
            lease.total = total
            lease.expires = now + self.ttl * 0.8
            lease.target = min(lease.target, max(0, total - lease.used))
            lease.used += amount
            lease.admitted += 1
            lease.last_used = now
            return lease

    async def _hold(self, lease: Lease, add: int) -> int | None:
        """Grow the store's hold by `add`: the hold's new size, or None when the balance cannot cover it.

        Charges committed while the call is out shrink the store's hold too, and the answer may or may not
        include them; counting them off again can only make the lease smaller than the hold, never larger."""
        self.store_calls += 1
        consumed_before = lease.consumed
        try:
            total = await asyncio.wait_for(self.backend.hold(lease.payer, lease.hold_id, add, self.ttl),
                                           self.timeout)
            return None if total is None else max(0, total - (lease.consumed - consumed_before))
        except (TimeoutError, OSError, ConnectionError) as exc:
            raise ServiceUnavailable("the balance store is not answering; try again shortly") from exc
        except Exception as exc:  # redis-py and database errors: fail fast and clearly, never hang or bill
            if type(exc).__module__.split(".")[0] in ("redis", "asyncpg", "sqlite3"):
                raise ServiceUnavailable("the balance store is not answering; try again shortly") from exc
            raise

    # -- after the answer ----------------------------------------------------------------------------------
    def finished(self, lease: Lease | None, reserved: int, consumed: int) -> None:
        """A request's reservation is over: `consumed` of the hold was spent (the store's hold shrank by it)."""
        if lease is None:
            return
        lease.used = max(0, lease.used - reserved)
        lease.total = max(0, lease.total - consumed)
        lease.consumed += consumed

    # -- housekeeping --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep(), name="edge-proxy-leases")

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(min(self.ttl / 3, self.idle_release))
            now = time.monotonic()
            for key, lease in list(self._leases.items()):
                payer = lease.payer
                try:
                    if lease.used == 0 and now - lease.last_used > self.idle_release:
                        del self._leases[key]
                        await self.backend.release(payer, lease.hold_id)
                    elif lease.total and lease.expires - now < self.ttl * 0.5:
                        async with lease.lock:
                            total = await self._hold(lease, 0)
                            if total is not None:
                                lease.total, lease.expires = total, time.monotonic() + self.ttl * 0.8
                except Exception as exc:  # housekeeping retries next round; holds expire on their own
                    log.warning("lease upkeep for %s failed: %s: %s", payer, type(exc).__name__, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._refills):
            task.cancel()
        for lease in list(self._leases.values()):
            try:
                await asyncio.wait_for(self.backend.release(lease.payer, lease.hold_id), self.timeout)
            except Exception as exc:  # the hold expires by itself after ttl
                log.warning("releasing the hold for %s failed: %s", lease.payer, exc)
        self._leases.clear()
