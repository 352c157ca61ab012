"""The per-worker balance cache: leases on each payer's balance, so a well-funded payer costs no round trip.

A lease is this worker's hold (holds.py) plus what its requests in flight use of it. Admitting a request is a
dict lookup and two integer operations when the lease has room; otherwise the worker grows its hold with one
atomic call to the shared store (SQL or Redis) — by a chunk of several requests' worth, so the next ones are
local again — and answers 402 when the payer's balance cannot cover even this request.

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
    __slots__ = ("payer", "hold_id", "total", "used", "expires", "last_used", "lock")

    def __init__(self, payer: Payer, hold_id: str) -> None:
        self.payer = payer
        self.hold_id = hold_id
        self.total = 0      # what the store holds for this worker
        self.used = 0       # reservations of requests in flight
        self.expires = 0.0
        self.last_used = time.monotonic()
        self.lock = asyncio.Lock()


class Leases:
    def __init__(self, backend: HoldBackend, *, ttl: float = 30.0, chunk: int = 16, min_chunk_nanos: int = 0,
                 idle_release: float = 5.0, timeout: float = 2.0) -> None:
        self.backend = backend
        self.ttl = ttl
        self.chunk = chunk
        self.min_chunk_nanos = min_chunk_nanos
        self.idle_release = idle_release
        self.timeout = timeout
        self.worker_id = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._leases: dict[Payer, Lease] = {}
        self._task: asyncio.Task | None = None
        self.local_hits = 0
        self.store_calls = 0

    # -- the request path ----------------------------------------------------------------------------------
    async def reserve(self, payer: Payer, amount: int) -> Lease | None:
        """Set `amount` aside for one request. Raises InsufficientBalance (402) or ServiceUnavailable (503)."""
        if amount <= 0:
            return None
        lease = self._leases.get(payer)
        if lease is not None and lease.total - lease.used >= amount and lease.expires > time.monotonic():
            lease.used += amount
            lease.last_used = time.monotonic()
            self.local_hits += 1
            return lease
        return await self._grow(payer, amount)

    async def _grow(self, payer: Payer, amount: int) -> Lease:
        lease = self._leases.get(payer)
        if lease is None:
            lease = self._leases[payer] = Lease(payer, f"{self.worker_id}:{payer.kind}:{payer.id}")
        async with lease.lock:
            now = time.monotonic()
            if lease.total - lease.used >= amount and lease.expires > now:  # another request grew it meanwhile
                lease.used += amount
                return lease
            free = max(0, lease.total - lease.used) if lease.expires > now else 0
            wanted = max(amount * self.chunk, self.min_chunk_nanos) - free
            total = await self._hold(lease, wanted)
            if total is None and wanted > amount - free:
                total = await self._hold(lease, amount - free)
            if total is None:
                raise InsufficientBalance("insufficient balance: the payer's balance does not cover this "
                                          "request's maximum cost; add funds first")
            lease.total = total
            lease.expires = now + self.ttl * 0.8
            lease.used += amount
            lease.last_used = now
            return lease

    async def _hold(self, lease: Lease, add: int) -> int | None:
        self.store_calls += 1
        try:
            return await asyncio.wait_for(self.backend.hold(lease.payer, lease.hold_id, add, self.ttl),
                                          self.timeout)
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

    # -- housekeeping --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep(), name="edge-proxy-leases")

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(min(self.ttl / 3, self.idle_release))
            now = time.monotonic()
            for payer, lease in list(self._leases.items()):
                try:
                    if lease.used == 0 and now - lease.last_used > self.idle_release:
                        del self._leases[payer]
                        await self.backend.release(payer, lease.hold_id)
                    elif lease.total and lease.expires - now < self.ttl * 0.5:
                        async with lease.lock:
                            total = await asyncio.wait_for(
                                self.backend.hold(payer, lease.hold_id, 0, self.ttl), self.timeout)
                            if total is not None:
                                lease.total, lease.expires = total, time.monotonic() + self.ttl * 0.8
                except Exception as exc:  # housekeeping retries next round; holds expire on their own
                    log.warning("lease upkeep for %s failed: %s: %s", payer, type(exc).__name__, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for payer, lease in list(self._leases.items()):
            try:
                await asyncio.wait_for(self.backend.release(payer, lease.hold_id), self.timeout)
            except Exception as exc:  # the hold expires by itself after ttl
                log.warning("releasing the hold for %s failed: %s", payer, exc)
        self._leases.clear()
