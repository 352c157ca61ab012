"""The per-worker balance leases (billing/leases.py) against a real SQLite store: requests are admitted from
the lease without waiting for the store, the lease is topped up in the background before it runs dry, a busy
payer gets a bigger chunk, a payer running low is not asked about on every request, and the lease never
counts more money than the store holds for it."""
from __future__ import annotations

import asyncio

import pytest

from edge_proxy.billing.holds import SQLHolds
from edge_proxy.billing.leases import Leases
from edge_proxy.billing.payer import Payer
from edge_proxy.errors import InsufficientBalance
from edge_proxy.store import open_store

AMOUNT = 1_000  # nano-dollars reserved per request


class CountingHolds(SQLHolds):
    """The real SQL holds, counting the calls and optionally slowed down (a store busy writing a batch)."""

    def __init__(self, db, delay: float = 0.0) -> None:
        super().__init__(db)
        self.calls = 0
        self.delay = delay

    async def hold(self, payer, hold_id, add, ttl):
        self.calls += 1
        held = await super().hold(payer, hold_id, add, ttl)
        if self.delay:  # the answer is slow to come back: the store may have moved on meanwhile
            await asyncio.sleep(self.delay)
        return held


def run(tmp_path, scenario, balance: int = 10**12, delay: float = 0.0, **lease_options):
    async def main():
        store = open_store(f"sqlite:///{tmp_path}/leases.db")
        await store.open()
        try:
            merchant, _ = await store.create_merchant("m", balance)
            holds = CountingHolds(store.db, delay)
            leases = Leases(holds, **lease_options)
            return await scenario(leases, holds, Payer("merchant", merchant.merchant_id), store.db)
        finally:
            await store.close()
    return asyncio.run(main())


async def held_in_store(db, lease) -> int:
    row = await db.fetchone("SELECT amount_nanos FROM holds WHERE hold_id = ?", lease.hold_id)
    return int(row[0]) if row else 0


async def settle_tasks():
    for _ in range(5):
        await asyncio.sleep(0.01)


def test_first_request_grows_the_lease_by_a_chunk_and_the_next_are_local(tmp_path):
    async def scenario(leases, holds, payer, db):
        lease = await leases.reserve(payer, AMOUNT)
        assert holds.calls == 1
        assert lease.total == 16 * AMOUNT and await held_in_store(db, lease) == 16 * AMOUNT
        for _ in range(7):  # up to half the chunk: no store call, not even in the background
            await leases.reserve(payer, AMOUNT)
        await settle_tasks()
        assert holds.calls == 1 and leases.local_hits == 7
    run(tmp_path, scenario, chunk=16)


LOCAL = [  # id, what is asked of reserve_local after one reserve of AMOUNT with chunk=4, admitted from the lease
    ("a request the lease has room for is admitted from it", lambda leases, payer, lease: (payer, AMOUNT), True),
    ("the last of the lease is admitted", lambda leases, payer, lease: (payer, 3 * AMOUNT), True),
    ("more than the lease has left goes to the store", lambda leases, payer, lease: (payer, 3 * AMOUNT + 1), False),
    ("a plain (kind, id) tuple finds the payer's lease, as the billing engine looks it up",
     lambda leases, payer, lease: ((payer.kind, payer.id), AMOUNT), True),
    ("another payer's lease is not this one's", lambda leases, payer, lease: (Payer("customer", "cus_x"), 1), False),
    ("nothing to reserve is not a reservation", lambda leases, payer, lease: (payer, 0), False),
    ("an expired lease goes to the store",
     lambda leases, payer, lease: (setattr(lease, "expires", 0.0), (payer, AMOUNT))[1], False),
]


@pytest.mark.parametrize("ask,admitted", [(a, ok) for _, a, ok in LOCAL], ids=[i for i, _, _ in LOCAL])
def test_reserve_local_admits_only_what_the_lease_covers_and_never_calls_the_store(tmp_path, ask, admitted):
    async def scenario(leases, holds, payer, db):
        lease = await leases.reserve(payer, AMOUNT)
        used, calls = lease.used, holds.calls
        who, amount = ask(leases, payer, lease)
        got = leases.reserve_local(who, amount)
        assert holds.calls == calls
        if admitted:
            assert got is lease and lease.used == used + amount <= lease.total
        else:
            assert got is None and lease.used == used
    run(tmp_path, scenario, chunk=4)


def test_the_lease_is_topped_up_in_the_background_so_a_slow_store_never_holds_a_request(tmp_path):
    async def scenario(leases, holds, payer, db):
        loop = asyncio.get_running_loop()
        lease = await leases.reserve(payer, AMOUNT)
        for _ in range(50):  # the lease learns the payer's rate: a request every millisecond or so
            await leases.reserve(payer, AMOUNT)
            await asyncio.sleep(0.001)
        calls, waited = holds.calls, 0
        for _ in range(300):
            started = loop.time()
            await leases.reserve(payer, AMOUNT)
            waited += loop.time() - started > 0.01  # the store answers after 20 ms
            await asyncio.sleep(0.001)               # requests keep arriving while a top-up is out
        assert waited == 0
        assert holds.calls > calls  # it was topped up meanwhile, in the background
        await settle_tasks()
        assert lease.used == 351 * AMOUNT <= lease.total == await held_in_store(db, lease)
    run(tmp_path, scenario, chunk=16, delay=0.02)


def test_a_busy_payer_gets_a_chunk_sized_to_its_rate(tmp_path):
    async def scenario(leases, holds, payer, db):
        lease = await leases.reserve(payer, AMOUNT)
        for _ in range(400):
            await leases.reserve(payer, AMOUNT)
            await asyncio.sleep(0)
        await settle_tasks()
        assert lease.target > 16 * AMOUNT  # grew past the plain chunk
        assert lease.target <= 64 * AMOUNT  # and not past max_chunk
        assert holds.calls < 400 / 16
    run(tmp_path, scenario, chunk=16, max_chunk=64)


def test_a_payer_running_low_is_not_asked_about_on_every_request(tmp_path):
    async def scenario(leases, holds, payer, db):
        admitted = 0
        with pytest.raises(InsufficientBalance):
            for _ in range(100):
                await leases.reserve(payer, AMOUNT)
                admitted += 1
                await settle_tasks()
        assert admitted == 20  # exactly the balance: 20 requests' worth
        # a top-up the balance cannot cover lowers the lease's aim, so the next one waits for half of that to
        # be used: a handful of background calls, not one per request (the requests that find the lease
        # empty still ask the store themselves: that is what keeps the balance exact)
        assert leases.refills <= 4
    run(tmp_path, scenario, balance=20 * AMOUNT, chunk=16)


def test_charges_committed_while_a_top_up_is_out_are_not_counted_twice(tmp_path):
    async def scenario(leases, holds, payer, db):
        lease = await leases.reserve(payer, AMOUNT)
        # the log writer charges a request (the store's hold shrinks) after the top-up was applied in the store
        # but before its answer is back
        top_up = asyncio.ensure_future(leases._hold(lease, 4 * AMOUNT))
        await asyncio.sleep(0.005)
        await db.execute("UPDATE holds SET amount_nanos = amount_nanos - ? WHERE hold_id = ?", AMOUNT,
                         lease.hold_id)
        leases.finished(lease, AMOUNT, AMOUNT)
        total = await top_up
        assert total <= await held_in_store(db, lease)  # never more than the store holds for this worker
    run(tmp_path, scenario, chunk=16, delay=0.02)


def test_billing_reserve_holds_a_reservation_of_the_quote():
    """BillingEngine.reserve builds its Reservation by tuple.__new__: the same type and fields as Reservation(...),
    for a customer and its merchant, a merchant alone, and a quote of nothing (leases with room: no store)."""
    import time

    from edge_proxy.billing.charging import Billing, Quote
    from edge_proxy.billing.engine import NOTHING, BillingEngine, Reservation
    from edge_proxy.billing.leases import Lease

    leases = Leases(None)  # type: ignore[arg-type]  # leases with room never call the store
    made = {}
    for payer in (Payer("customer", "cus_1"), Payer("merchant", "mer_1")):
        lease = made[payer] = leases._leases[payer] = Lease(payer, f"hold_{payer.kind}")
        lease.total, lease.expires = 10**6, time.monotonic() + 10**6
    engine = BillingEngine(None, None, leases, None)  # type: ignore[arg-type]

    async def scenario():
        held = await engine.reserve("req_1", Billing("customer", "cus_1", merchant_id="mer_1"), Quote(5, 1_000, 300))
        assert type(held) is Reservation
        assert held == Reservation(made[Payer("customer", "cus_1")], 1_000, made[Payer("merchant", "mer_1")], 300)
        alone = await engine.reserve("req_2", Billing("merchant", "mer_1", merchant_id="mer_1"), Quote(5, 700, 0))
        assert type(alone) is Reservation and alone == Reservation(made[Payer("merchant", "mer_1")], 700, None, 0)
        assert await engine.reserve("req_3", Billing("merchant", "mer_1", merchant_id="mer_1"), Quote(0, 0, 0)) \
            is NOTHING
        assert engine.inflight == {"req_1": held, "req_2": alone}

    asyncio.run(scenario())
