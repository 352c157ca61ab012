"""Bill: turn a batch of priced request records into charges, in the same transaction as their log rows.

A request answered with an error status (the provider's or the gateway's) is not charged; a stream cut
mid-way is charged for the usage that passed. Each record is charged once: the request log is keyed by
(merchant, request id) and only the rows its insert actually added move money, so a replayed or retried batch
never charges twice, and the log itself is the ledger of every charge. The payer's balance, the worker's hold
and the meter's volume counter change in that same transaction.
"""
from __future__ import annotations

from collections import defaultdict

from ..metering.record import RequestRecord
from ..store.db import Tx
from .accounts import Meter
from .charging import meter_charge, meter_units
from .payer import Payer


def payer_of(r: RequestRecord) -> Payer | None:
    if r.payer == "customer" and r.customer_id:
        return Payer("customer", r.customer_id)
    if r.payer == "merchant":
        return Payer("merchant", r.merchant_id)
    return None


async def settle(tx: Tx, records: list[RequestRecord], meters: dict, insert_log_rows) -> list[RequestRecord]:
    """Charge the records and write their log rows; returns the ones logged (and so charged) now, not before.
    `meters` maps (merchant, slug) -> Meter; `insert_log_rows(tx, records)` returns the records whose rows it added."""
    if not records:
        return []
    metered = []  # the records that add to a customer's volume on a meter, in order; some of them are charged
    for r in records:
        meter = meters.get((r.merchant_id, r.meter_slug)) if r.meter_slug else None
        if meter is not None:
            r.meter_id = meter.meter_id
        if not 0 < r.status_code < 400:  # a request the provider or the gateway refused costs nothing
            r.charge_nanos = 0
        elif meter is not None and r.customer_id:
            metered.append((r, meter))
    volume = await _meter_volume(tx, {(m.meter_id, r.customer_id) for r, m in metered})
    _charge_in_order(metered, volume)
    new = await insert_log_rows(tx, records)
    kept = {id(r) for r in new}
    metered_new = [(r, m) for r, m in metered if id(r) in kept]
    if len(metered_new) < len(metered):
        # Some records were logged before (a replay): their units are already in meter_usage, so price the
        # new ones again without counting the old ones twice, and store the charge that is really made.
        before = [(r.charge_nanos, r.charge_rate) for r, _ in metered_new]
        _charge_in_order(metered_new, volume)
        for (r, _), old in zip(metered_new, before):
            if (r.charge_nanos, r.charge_rate) != old:
                await tx.execute("UPDATE requests SET charge_nanos = ?, charge_rate = ? WHERE merchant_id = ? "
                                 "AND request_id = ?", r.charge_nanos, r.charge_rate, r.merchant_id, r.request_id)
    debits: dict[Payer, int] = defaultdict(int)
    holds: dict[str, int] = defaultdict(int)
    units: dict[tuple[str, str], int] = defaultdict(int)
    for r in new:
        payer = payer_of(r)
        if payer is not None and r.charge_nanos:
            debits[payer] += r.charge_nanos
            if r.hold_id:
                holds[r.hold_id] += r.charge_nanos
    for r, meter in metered_new:
        units[(meter.meter_id, r.customer_id)] += _units(meter, r)
    # One statement per table for the whole batch, rows in key order, so that two workers billing at once take
    # their row locks in the same order (PostgreSQL) and a batch costs a few round trips, not a few per payer.
    by_table: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for payer, amount in sorted(debits.items()):
        by_table[(payer.table, payer.key_column)].append((amount, payer.id))
    for (table, column), rows in by_table.items():
        await tx.executemany(f"UPDATE {table} SET balance_nanos = balance_nanos - ? WHERE {column} = ?", rows)
    if holds:
        await tx.executemany("UPDATE holds SET amount_nanos = CASE WHEN amount_nanos > ? THEN amount_nanos - ? "
                             "ELSE 0 END WHERE hold_id = ?", [(a, a, h) for h, a in sorted(holds.items())])
    if units:
        await tx.executemany("INSERT INTO meter_usage VALUES (?, ?, ?) ON CONFLICT (meter_id, payer_id) DO UPDATE "
                             "SET units = meter_usage.units + excluded.units",
                             [(m, p, n) for (m, p), n in sorted(units.items())])
    return new


def _units(meter: Meter, r: RequestRecord) -> int:
    return meter_units(meter, r.input_tokens + r.output_tokens, r.input_characters + r.output_characters,
                       r.input_seconds + r.output_seconds)


def _charge_in_order(metered: list[tuple[RequestRecord, Meter]], volume: dict[tuple[str, str], int]) -> None:
    """Price each record a customer pays at the tier its volume has reached, counting the records before it in
    this batch: the same charges as if each had been billed on its own, in order."""
    running = dict(volume)
    for r, meter in metered:
        key = (meter.meter_id, r.customer_id)
        units_before = running.get(key, 0)
        running[key] = units_before + _units(meter, r)
        if r.payer != "customer":  # disable_billing: tracked on the meter, charged to nobody
            continue
        charge, tier = meter_charge(meter, r.cost_nanos or 0, r.input_tokens + r.output_tokens,
                                    r.input_characters + r.output_characters, r.input_seconds + r.output_seconds,
                                    units_before)
        r.charge_nanos = charge
        r.charge_rate = f"{meter.rate_type}|{meter.tier_type}|{tier.start}|{format(tier.rate, 'f')}"


async def _meter_volume(tx: Tx, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Each (meter, payer)'s units so far: one query per meter and up to 500 payers, not one per record."""
    by_meter: dict[str, list[str]] = defaultdict(list)
    for meter_id, payer_id in pairs:
        by_meter[meter_id].append(payer_id)
    volume = {}
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
