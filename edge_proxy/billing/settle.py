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
    for r in records:
        meter = meters.get((r.merchant_id, r.meter_slug)) if r.meter_slug else None
        if meter is not None:
            r.meter_id = meter.meter_id
        if not 0 < r.status_code < 400:  # a request the provider or the gateway refused costs nothing
            r.charge_nanos = 0
        elif r.payer == "customer" and meter is not None:
            row = await tx.fetchone("SELECT units FROM meter_usage WHERE meter_id = ? AND payer_id = ?",
                                    meter.meter_id, r.customer_id)
            charge, tier = meter_charge(meter, r.cost_nanos or 0, r.input_tokens + r.output_tokens,
                                        r.input_characters + r.output_characters,
                                        r.input_seconds + r.output_seconds, int(row[0]) if row else 0)
            r.charge_nanos = charge
            r.charge_rate = f"{meter.rate_type}|{meter.tier_type}|{tier.start}|{format(tier.rate, 'f')}"
    new = await insert_log_rows(tx, records)
    debits: dict[Payer, int] = defaultdict(int)
    holds: dict[str, int] = defaultdict(int)
    units: dict[tuple[str, str], int] = defaultdict(int)
    for r in new:
        payer = payer_of(r)
        if payer is not None and r.charge_nanos:
            debits[payer] += r.charge_nanos
            if r.hold_id:
                holds[r.hold_id] += r.charge_nanos
        meter = meters.get((r.merchant_id, r.meter_slug)) if r.meter_slug else None
        if meter is not None and r.customer_id:
            units[(meter.meter_id, r.customer_id)] += meter_units(
                meter, r.input_tokens + r.output_tokens, r.input_characters + r.output_characters,
                r.input_seconds + r.output_seconds)
    for payer, amount in debits.items():
        await tx.execute(f"UPDATE {payer.table} SET balance_nanos = balance_nanos - ? WHERE {payer.key_column} = ?",
                         amount, payer.id)
    for hold_id, amount in holds.items():
        await tx.execute("UPDATE holds SET amount_nanos = CASE WHEN amount_nanos > ? THEN amount_nanos - ? ELSE 0 "
                         "END WHERE hold_id = ?", amount, amount, hold_id)
    for (meter_id, payer_id), n in units.items():
        await tx.execute("INSERT INTO meter_usage VALUES (?, ?, ?) ON CONFLICT (meter_id, payer_id) DO UPDATE SET "
                         "units = meter_usage.units + excluded.units", meter_id, payer_id, n)
    return new


async def disarm_autopay(tx: Tx, customer_ids: set[str]) -> list[tuple[str, str, int, int, int]]:
    """Customers that just fell below their autopay threshold, each reported once until a credit re-arms it.
    Returns (customer_id, merchant_id, balance, threshold, amount)."""
    fired = []
    for cid in customer_ids:
        changed = await tx.execute(
            "UPDATE customers SET autopay_armed = 0 WHERE customer_id = ? AND autopay_armed = 1 AND "
            "autopay_threshold_nanos IS NOT NULL AND balance_nanos < autopay_threshold_nanos", cid)
        if changed == 1:
            row = await tx.fetchone("SELECT customer_id, merchant_id, balance_nanos, autopay_threshold_nanos, "
                                    "coalesce(autopay_amount_nanos, 0) FROM customers WHERE customer_id = ?", cid)
            fired.append(tuple(row))
    return fired
