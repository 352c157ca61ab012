"""Bill: turn a batch of priced request records into transfers, in the same transaction as their log rows.

A request answered with an error status (the provider's or the gateway's) is not charged; a stream cut
mid-way is charged for the usage that passed. Each record is billed once: the request log is keyed by
(merchant, request id) and only the rows its insert actually added move money, so a replayed or retried batch
never bills twice, and each billed request has exactly one set of transfers (charging.py says which), whose ids
are made from its request id. The balances, the workers' holds and the meter's volume change in that same
transaction.

A metered request is priced by one rule: the meter it was admitted under (its `meter_id`, recorded at admission),
at that meter's tiers when the log writer bills it, read afresh for each batch (BillingEngine.commit_tx). A meter
deleted meanwhile still prices what it admitted; one re-priced meanwhile prices at its new tiers, and what that
makes exceed the payer's balance is uncollected, as below.

A transfer never overdraws its payer (the ledger refuses it): a charge larger than what the payer holds, which only
a request that cost more than its reservation can cause, takes what is there, and the rest is recorded on the
record as `uncollected_nanos` (and logged), never as money that does not exist.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping

from ..metering.record import RequestRecord
from ..store.db import Tx
from . import ledger
from .accounts import Meter
from .charging import meter_charge, meter_units
from .holds import region_hold_id
from .ledger import REVENUE, Transfer
from .payer import Payer

log = logging.getLogger("edge_proxy.billing")
InsertRows = Callable[[Tx, list[RequestRecord]], Awaitable[list[RequestRecord]]]
Meters = Mapping[str, Meter | None]  # meter id -> the meter as it is now (deleted or not)


def consumed(r: RequestRecord) -> tuple[int, int]:
    """What a billed record took from (its payer's hold, its merchant's hold): charging.py's reservations."""
    if r.payer == "customer":
        return r.charge_nanos, max(0, r.operator_nanos - r.charge_nanos)
    if r.payer == "merchant":
        return r.operator_nanos, 0
    return 0, r.operator_nanos


def dues(records: list[RequestRecord], meters: Meters, fee_nanos: int) -> list[tuple[RequestRecord, Meter]]:
    """Set each record's charge and operator share as owed (before any cap); returns the metered records."""
    metered = []  # the records that add to a customer's volume on a meter, in order; some of them are charged
    for r in records:
        meter = meters.get(r.meter_id) if r.meter_id else None
        if r.free or not 0 < r.status_code < 400:  # a free endpoint, or a refused request, costs nothing
            r.charge_nanos = r.operator_nanos = 0
            continue
        if r.usage_source == "reported":  # usage that never passed through the gateway: the merchant paid its
            r.operator_nanos = 0          # provider itself, and the operator served nothing (POST /v1/requests)
        else:
            r.operator_nanos = fee_nanos if r.provider_key_type == "unmanaged" else (r.cost_nanos or 0)
        r.charge_nanos = r.operator_nanos if r.payer == "merchant" else 0
        if meter is not None and r.customer_id:
            metered.append((r, meter))
    return metered


async def settle(tx: Tx, records: list[RequestRecord], meters: Meters,
                 insert_log_rows: InsertRows, fee_nanos: int = 0) -> tuple[list[RequestRecord], list[Transfer]]:
    """Bill the records and write their log rows; returns the ones logged (and so billed) now, not before, and
    the transfers that moved their money. `meters` maps a record's meter_id -> Meter; `insert_log_rows(tx, records)`
    returns the records whose rows it added; `fee_nanos` is the BYOK fee per request."""
    if not records:
        return [], []
    metered = dues(records, meters, fee_nanos)
    volume = await _meter_volume(tx, {(m.meter_id, r.customer_id) for r, m in metered if r.customer_id})
    counted = _charge_in_order(metered, volume)  # each metered record's units, in order
    new = await insert_log_rows(tx, records)
    metered_new = metered
    if len(new) < len(records):  # some were logged before (a replay), or are in this batch twice
        kept = {id(r) for r in new}
        metered_new = [(r, m) for r, m in metered if id(r) in kept]
    if len(metered_new) < len(metered):
        # Some records were logged before (a replay): their units are already in meter_usage, so price the
        # new ones again without counting the old ones twice, and store the charge that is really made.
        before = [(r.charge_nanos, r.charge_rate) for r, _ in metered_new]
        counted = _charge_in_order(metered_new, volume)
        for (r, _), old in zip(metered_new, before):
            if (r.charge_nanos, r.charge_rate) != old:
                await tx.execute("UPDATE requests SET charge_nanos = ?, charge_rate = ? WHERE merchant_id = ? "
                                 "AND request_id = ?", r.charge_nanos, r.charge_rate, r.merchant_id, r.request_id)
    transfers = await _transfers(tx, new)
    await ledger.post(tx, transfers)
    holds = _holds_used(new)
    units: dict[tuple[str, str], int] = defaultdict(int)
    for (r, meter), n in zip(metered_new, counted):  # `counted` is metered_new's (the same records as metered's
        if r.customer_id:                             # when every metered one is new)
            units[(meter.meter_id, r.customer_id)] += n
    if holds:
        await tx.executemany("UPDATE holds SET amount_nanos = CASE WHEN amount_nanos > ? THEN amount_nanos - ? "
                             "ELSE 0 END WHERE hold_id = ?", [(a, a, h) for h, a in sorted(holds.items())])
    if units:
        await tx.executemany("INSERT INTO meter_usage VALUES (?, ?, ?) ON CONFLICT (meter_id, payer_id) DO UPDATE "
                             "SET units = meter_usage.units + excluded.units",
                             [(m, p, n) for (m, p), n in sorted(units.items())])
    return new, transfers


def _holds_used(new: list[RequestRecord]) -> dict[str, int]:
    """What the records billed now took from each hold: their worker's own (SQL mode) and their region's lease
    on the same payer (Redis mode)."""
    took: dict[tuple[str | None, str | None, str, str], int] = defaultdict(int)  # (hold, region, payer) -> nanos
    for r in new:
        payer_took, merchant_took = consumed(r)
        if payer_took:
            if r.payer == "customer" and r.customer_id:
                took[(r.hold_id, r.region, "customer", r.customer_id)] += payer_took
            elif r.payer == "merchant":
                took[(r.hold_id, r.region, "merchant", r.merchant_id)] += payer_took
        if merchant_took:
            took[(r.merchant_hold_id, r.region, "merchant", r.merchant_id)] += merchant_took
    holds: dict[str, int] = defaultdict(int)
    for (hold_id, region, kind, ident), amount in took.items():
        if hold_id:
            holds[hold_id] += amount
        holds[region_hold_id(region or "default", Payer(kind, ident))] += amount
    return holds


async def _transfers(tx: Tx, new: list[RequestRecord]) -> list[Transfer]:
    """The transfers of the records billed now, in order, each capped at what its payer holds by then (the
    balances are locked for this transaction on PostgreSQL; SQLite's writer lock serializes batches)."""
    billed = [r for r in new if r.charge_nanos or r.operator_nanos]
    if not billed:
        return []
    merchants = {mid: Payer("merchant", mid) for mid in {r.merchant_id for r in billed}}
    customers = {cid: Payer("customer", cid) for cid in {r.customer_id for r in billed if r.payer == "customer"}
                 if cid}
    held = await ledger.balances(tx, [*merchants.values(), *customers.values()], lock=True)
    # what each payer holds by now, by its id
    wallet = {mid: held.get(p, 0) for mid, p in merchants.items()}
    balance = {cid: held.get(p, 0) for cid, p in customers.items()}
    out: list[Transfer] = []
    for r in billed:
        mid, rid = r.merchant_id, r.request_id
        charge, operator = r.charge_nanos, r.operator_nanos
        short = 0
        if charge and r.payer == "customer" and r.customer_id:
            cid = r.customer_id
            pay = charge if charge <= balance[cid] else balance[cid]
            short = charge - pay
            balance[cid] -= pay
            wallet[mid] += pay
            if pay:
                out.append(Transfer(f"{mid}:{rid}:charge", customers[cid], merchants[mid], pay, "charge", mid, rid))
            r.charge_nanos = pay
        if operator:
            pay = operator if operator <= wallet[mid] else wallet[mid]
            short += operator - pay
            wallet[mid] -= pay
            kind = "fee" if r.provider_key_type == "unmanaged" else "provider_cost"
            if pay:
                out.append(Transfer(f"{mid}:{rid}:{kind}", merchants[mid], REVENUE, pay, kind, mid, rid))
            r.operator_nanos = pay
            if r.payer == "merchant":
                r.charge_nanos = pay
        if short:
            r.uncollected_nanos = short
            log.warning("request %s cost %d nanos more than its payer held: recorded as uncollected", rid, short)
            await tx.execute("UPDATE requests SET charge_nanos = ?, operator_nanos = ?, uncollected_nanos = ? "
                             "WHERE merchant_id = ? AND request_id = ?", r.charge_nanos, r.operator_nanos, short,
                             mid, rid)
        elif r.charge_nanos != charge or r.operator_nanos != operator:  # unreachable: nothing capped, so unchanged
            raise AssertionError(rid)
    return out


Volume = dict[tuple[str, str | None], int]  # (meter, payer) -> units so far; None: no customer (see below)


def _charge_in_order(metered: list[tuple[RequestRecord, Meter]], volume: Volume) -> list[int]:
    """Price each record a customer pays at the tier its volume has reached, counting the records before it in
    this batch: the same charges as if each had been billed on its own, in order. Returns each record's units on
    its meter, in order (settle adds them to meter_usage)."""
    # A record without a customer (tracked on the meter, charged to nobody) counts under None, only in this batch.
    running = dict(volume)
    rates: dict[tuple[str, int], str] = {}  # (meter, tier start) -> the charge_rate text: one Decimal format each
    counted = []
    for r, meter in metered:
        key = (meter.meter_id, r.customer_id)
        units_before = running.get(key, 0)
        tokens = r.input_tokens + r.output_tokens
        characters = r.input_characters + r.output_characters
        seconds = r.input_seconds + r.output_seconds
        units = meter_units(meter, tokens, characters, seconds)
        counted.append(units)
        running[key] = units_before + units
        if r.payer != "customer":  # disable_billing: tracked on the meter, charged to nobody
            continue
        charge, tier = meter_charge(meter, r.cost_nanos or 0, tokens, characters, seconds, units_before)
        r.charge_nanos = charge
        rate = rates.get((meter.meter_id, tier.start))
        if rate is None:
            rate = rates[(meter.meter_id, tier.start)] = (f"{meter.rate_type}|{meter.tier_type}|{tier.start}|"
                                                          f"{format(tier.rate, 'f')}")
        r.charge_rate = rate
    return counted


async def _meter_volume(tx: Tx, pairs: set[tuple[str, str]]) -> Volume:
    """Each (meter, payer)'s units so far: one query per meter and up to 500 payers, not one per record."""
    by_meter: dict[str, list[str]] = defaultdict(list)
    for meter_id, payer_id in pairs:
        by_meter[meter_id].append(payer_id)
    volume: Volume = {}
    for meter_id, payers in by_meter.items():
        for i in range(0, len(payers), 500):
            chunk = payers[i:i + 500]
            rows = await tx.fetchall(f"SELECT payer_id, units FROM meter_usage WHERE meter_id = ? AND payer_id IN "
                                     f"({', '.join('?' * len(chunk))})", meter_id, *chunk)
            volume.update(((meter_id, payer_id), int(units)) for payer_id, units in rows)
    return volume


async def disarm_autopay(tx: Tx, customer_ids: set[str]) -> list[tuple[str, str, int, int, int]]:
    """Customers that just fell below their autopay threshold, each reported once until a credit re-arms it.
    Returns (customer_id, merchant_id, balance, threshold, amount)."""
    fired = []
    ids = sorted(customer_ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        fired += await tx.fetchall(
            "UPDATE customers SET autopay_armed = 0 WHERE customer_id IN (" + ", ".join("?" * len(chunk)) + ") "
            "AND autopay_armed = 1 AND autopay_threshold_nanos IS NOT NULL AND balance_nanos < "
            "autopay_threshold_nanos RETURNING customer_id, merchant_id, balance_nanos, autopay_threshold_nanos, "
            "coalesce(autopay_amount_nanos, 0)", *chunk)
    return [tuple(row) for row in sorted(fired)]
