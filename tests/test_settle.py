"""Billing a batch (billing/settle.py) against a real store, on both databases: a customer's records in one batch
are priced at the volume tier each one reaches in order, exactly as if each had been billed on its own, and a
replayed batch charges only the records it really adds, at the tier they really reach."""
from __future__ import annotations

import asyncio
from decimal import Decimal

from edge_proxy.billing import accounts, ledger
from edge_proxy.billing.payer import Payer
from edge_proxy.billing.settle import settle
from edge_proxy.log_sinks import open_log_sink
from edge_proxy.metering.record import RequestRecord, now_iso
from edge_proxy.store import open_store

from . import pg

CENT = 10_000_000  # nano-dollars


def record(i: int, merchant_id: str, customer_id: str, meter_id: str, status: int = 200) -> RequestRecord:
    return RequestRecord(request_id=f"req_settle_{i}", created_at=now_iso(), merchant_id=merchant_id,
                         provider="openai", model="gpt-4o-mini", input_tokens=10, output_tokens=5,
                         status_code=status, payer="customer", customer_id=customer_id, meter_slug="per-call",
                         meter_id=meter_id)


class Books:
    """A store with one merchant, one customer holding $1 and a requests meter with the given tiers."""

    def __init__(self, url: str, tiers: list[accounts.Tier]) -> None:
        self.url, self.tiers = url, tiers

    async def __aenter__(self) -> Books:
        self.store, self.sink = open_store(self.url), open_log_sink(self.url)
        await self.store.open()
        await self.sink.open()
        merchant, _ = await self.store.create_merchant("m", 100 * CENT)
        self.mid = merchant.merchant_id
        self.cus = (await accounts.create_customer(self.store.db, self.mid, {})).customer_id
        async with self.store.db.transaction() as tx:  # the merchant funds its customer with $1
            await ledger.post(tx, [ledger.Transfer("t_fund", Payer("merchant", self.mid), Payer("customer", self.cus),
                                                   100 * CENT, "credit", self.mid)])
        self.meter = await accounts.create_meter(self.store.db, self.mid, "per-call", "Calls", "fixed", "requests",
                                                 self.tiers)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.sink.close()
        await self.store.close()

    def records(self, *ids: int, status: int = 200) -> list[RequestRecord]:
        return [record(i, self.mid, self.cus, self.meter.meter_id, status) for i in ids]

    async def bill(self, records: list[RequestRecord]) -> list[RequestRecord]:
        async with self.sink.db.transaction() as tx:
            return (await settle(tx, records, {self.meter.meter_id: self.meter}, self.sink.insert_new))[0]

    async def state(self) -> tuple[int, int]:
        """(the customer's balance, their units on the meter)"""
        balance = (await accounts.customer(self.store.db, self.mid, self.cus)).balance_nanos
        row = await self.store.db.fetchone("SELECT units FROM meter_usage WHERE meter_id = ? AND payer_id = ?",
                                           self.meter.meter_id, self.cus)
        return balance, int(row[0])

    async def stored_charge(self, i: int) -> int:
        return (await self.sink.get(self.mid, f"req_settle_{i}")).charge_nanos


async def _scenario(url: str) -> None:
    # 1 cent a request for the first 4 requests, half a cent from the 5th on
    async with Books(url, [accounts.Tier(0, Decimal("0.01")), accounts.Tier(4, Decimal("0.005"))]) as b:
        # one batch crossing the tier boundary; a refused request in it costs nothing and counts no volume
        first = b.records(1, 2) + b.records(3, status=429) + b.records(4, 5, 6)
        assert await b.bill(first) == first
        assert [r.charge_nanos for r in first] == [CENT, CENT, 0, CENT, CENT, CENT // 2]
        assert [await b.stored_charge(i) for i in range(1, 7)] == [CENT, CENT, 0, CENT, CENT, CENT // 2]
        assert await b.state() == (100 * CENT - 4 * CENT - CENT // 2, 5)

        # a replay of 5 and 6 with one new request (sent twice): only 7 is charged, at the tier 5 requests reach
        again = b.records(5, 6, 7, 7)
        assert await b.bill(again) == [again[2]]
        assert again[2].charge_nanos == CENT // 2 and await b.stored_charge(7) == CENT // 2
        assert await b.state() == (100 * CENT - 5 * CENT, 6)


async def _replay_moves_the_tier(url: str) -> None:
    """A replayed record is already in meter_usage: a new record after it in the batch must not count it again."""
    async with Books(url, [accounts.Tier(0, Decimal("0.01")), accounts.Tier(3, Decimal("0.005"))]) as b:
        await b.bill(b.records(1, 2))
        new = await b.bill(b.records(1, 2, 3))
        assert [r.request_id for r in new] == ["req_settle_3"]
        assert new[0].charge_nanos == CENT and await b.stored_charge(3) == CENT  # 2 requests before it, not 4
        assert await b.state() == (100 * CENT - 3 * CENT, 3)


def test_settle_prices_a_batch_in_order_on_sqlite(tmp_path):
    asyncio.run(_scenario(f"sqlite:///{tmp_path}/settle.db"))
    asyncio.run(_replay_moves_the_tier(f"sqlite:///{tmp_path}/replay.db"))


def test_settle_prices_a_batch_in_order_on_postgres():
    for scenario in (_scenario, _replay_moves_the_tier):
        url = asyncio.run(pg.create_database())
        try:
            asyncio.run(scenario(url))
        finally:
            asyncio.run(pg.drop_database(url))
