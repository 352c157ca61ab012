"""Data access for a merchant's customers, meters and webhooks (the tables in billing/schema.py).

Everything here is merchant-scoped: every read and write names the merchant, so one merchant can never see or
touch another's rows. Rows are soft-deleted (`deleted_at`) and a deleted row reads as absent.

`customer(db, merchant_id, customer_id)` and `meter_by_slug(db, merchant_id, slug)` are what the balance engine
reads; the REST resources and the CLI use the rest. Balances are never written here: only through
`Balances.credit` (billing/balances.py), which also records the ledger row.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from ..store import key_events
from ..store.base import new_id
from ..clock import now_iso
from ..store.db import Database, Row, Tx

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class Tier(msgspec.Struct, frozen=True, gc=False):
    start: int       # the payer's units on the meter from which this rate applies
    rate: Decimal    # fixed: USD per unit of tier_type; percentage: percent of provider cost


class Meter(msgspec.Struct, frozen=True):
    meter_id: str
    merchant_id: str
    meter_slug: str
    name: str
    rate_type: str   # fixed | percentage
    tier_type: str   # tokens_1m | characters_1m | minutes | requests
    tiers: list[Tier]  # sorted by start; the first starts at 0
    created_at: str


class Customer(msgspec.Struct, frozen=True):
    customer_id: str
    merchant_id: str
    reference_id: str | None
    name: str | None
    email: str | None
    phone: str | None
    metadata: dict[str, str]
    balance_nanos: int
    autopay_threshold_nanos: int | None
    autopay_amount_nanos: int | None
    created_at: str


class Credit(msgspec.Struct, frozen=True):
    credit_id: str
    amount_nanos: int
    source: str      # opening | api | dashboard | cli | ...
    created_at: str


class Webhook(msgspec.Struct, frozen=True):
    webhook_id: str
    merchant_id: str
    name: str
    url: str
    secret: str
    created_at: str


# -- paging ----------------------------------------------------------------------------------------------------
async def page(db: Database, table: str, id_column: str, columns: str, merchant_id: str,
               cursor: tuple[str, ...] | None, limit: int, extra_where: str = "deleted_at IS NULL") -> list[Row]:
    """Up to `limit + 1` rows of one merchant, newest first, after `cursor` = (created_at, id).

    `table`, `id_column`, `columns` and `extra_where` are constants from this package, never user input."""
    where, args = f"merchant_id = ? AND {extra_where}", [merchant_id]
    if cursor is not None:  # a row comparison: the index range starts at the cursor
        where += f" AND (created_at, {id_column}) < (?, ?)"
        args += [cursor[0], cursor[1]]
    return await db.fetchall(f"SELECT {columns} FROM {table} WHERE {where} "
                             f"ORDER BY created_at DESC, {id_column} DESC LIMIT ?", *args, limit + 1)


def is_unique_violation(exc: BaseException) -> bool:
    """A duplicate key from either backend (sqlite3.IntegrityError or asyncpg.UniqueViolationError)."""
    return type(exc).__name__ in ("IntegrityError", "UniqueViolationError")


# -- customers -------------------------------------------------------------------------------------------------
_CUSTOMER_COLUMNS = ("customer_id, merchant_id, reference_id, name, email, phone, metadata, balance_nanos, "
                     "autopay_threshold_nanos, autopay_amount_nanos, created_at")
CUSTOMER_FIELDS = ("reference_id", "name", "email", "phone", "metadata", "autopay_threshold_nanos",
                   "autopay_amount_nanos")


def _customer(row: Row) -> Customer:
    return Customer(row[0], row[1], row[2], row[3], row[4], row[5], _decode(row[6]) if row[6] else {}, int(row[7]),
                    None if row[8] is None else int(row[8]), None if row[9] is None else int(row[9]), row[10])


async def customer(db: Database | Tx, merchant_id: str, customer_id: str) -> Customer | None:
    """One live customer of this merchant, or None."""
    row = await db.fetchone(f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE customer_id = ? AND merchant_id = ? "
                            "AND deleted_at IS NULL", customer_id, merchant_id)
    return _customer(row) if row else None


async def create_customer(db: Database, merchant_id: str, fields: dict[str, Any]) -> Customer:
    """A new customer with a zero balance; fields: any of CUSTOMER_FIELDS (metadata as a dict)."""
    customer_id = new_id("cus")
    meta = fields.get("metadata")
    async with db.transaction() as tx:  # read back in the same transaction: a delete just after cannot make it None
        await tx.execute(
            "INSERT INTO customers (customer_id, merchant_id, reference_id, name, email, phone, metadata, "
            "balance_nanos, autopay_threshold_nanos, autopay_amount_nanos, autopay_armed, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, 1, ?)",
            customer_id, merchant_id, fields.get("reference_id"), fields.get("name"), fields.get("email"),
            fields.get("phone"), _encode(meta).decode() if meta else None, fields.get("autopay_threshold_nanos"),
            fields.get("autopay_amount_nanos"), now_iso())
        created = await customer(tx, merchant_id, customer_id)
    if created is None:
        raise LookupError(f"customer {customer_id} vanished inside the transaction that wrote it")
    return created


async def list_customers(db: Database, merchant_id: str, cursor: tuple[str, ...] | None, limit: int) -> list[Customer]:
    rows = await page(db, "customers", "customer_id", _CUSTOMER_COLUMNS, merchant_id, cursor, limit)
    return [_customer(r) for r in rows]


async def update_customer(db: Database, merchant_id: str, customer_id: str,
                          fields: dict[str, Any]) -> Customer | None:
    """Set the given CUSTOMER_FIELDS (None clears one). Changing autopay re-arms it; setting it to what it already
    is does not (a PATCH that repeats it while a top-up is under way would owe a second customer.autopay event)."""
    sets: list[str] = []
    args: list[object] = []
    for name in CUSTOMER_FIELDS:
        if name in fields:
            value = fields[name]
            if name == "metadata":
                value = _encode(value).decode() if value else None
            sets.append(f"{name} = ?")
            args.append(value)
    same = [(f"coalesce({name}, -1) = coalesce(CAST(? AS BIGINT), -1)", fields[name])
            for name in ("autopay_threshold_nanos", "autopay_amount_nanos") if name in fields]
    if same:   # the right-hand sides read the row as it was before this UPDATE
        sets.append(f"autopay_armed = CASE WHEN {' AND '.join(c for c, _ in same)} THEN autopay_armed ELSE 1 END")
        args += [v for _, v in same]
    if sets:
        changed = await db.execute(f"UPDATE customers SET {', '.join(sets)} WHERE customer_id = ? AND "
                                   "merchant_id = ? AND deleted_at IS NULL", *args, customer_id, merchant_id)
        if changed != 1:
            return None
    return await customer(db, merchant_id, customer_id)


async def delete_customer(db: Database, merchant_id: str, customer_id: str) -> bool:
    """Delete a customer; its forward tokens stop working on every worker within a second (a key event)."""
    return await _delete(db, "customers", "customer_id", merchant_id, customer_id)


async def _delete(db: Database, table: str, id_column: str, merchant_id: str, row_id: str) -> bool:
    """Soft-delete one of the merchant's rows that forward tokens name, and record it as a key event."""
    async with db.transaction() as tx:
        if await tx.execute(f"UPDATE {table} SET deleted_at = ? WHERE {id_column} = ? AND merchant_id = ? AND "
                            "deleted_at IS NULL", now_iso(), row_id, merchant_id) != 1:
            return False
        await key_events.record(tx, row_id)
    return True


# -- meters ----------------------------------------------------------------------------------------------------
_METER_COLUMNS = "meter_id, merchant_id, meter_slug, name, rate_type, tier_type, tiers, created_at"


def _meter(row: Row) -> Meter:
    tiers = [Tier(int(t["start"]), Decimal(t["rate"])) for t in _decode(row[6])]
    return Meter(row[0], row[1], row[2], row[3], row[4], row[5], tiers, row[7])


def _tiers_json(tiers: list[Tier]) -> str:
    return _encode([{"start": t.start, "rate": format(t.rate, "f")} for t in tiers]).decode()


async def meter(db: Database | Tx, merchant_id: str, meter_id: str, deleted: bool = False) -> Meter | None:
    """The merchant's live meter with this id; with `deleted`, a deleted one too (it prices what it admitted)."""
    live = "" if deleted else " AND deleted_at IS NULL"
    row = await db.fetchone(f"SELECT {_METER_COLUMNS} FROM meters WHERE meter_id = ? AND merchant_id = ?{live}",
                            meter_id, merchant_id)
    return _meter(row) if row else None


async def meter_by_slug(db: Database | Tx, merchant_id: str, slug: str) -> Meter | None:
    """The merchant's live meter with this slug, or None."""
    row = await db.fetchone(f"SELECT {_METER_COLUMNS} FROM meters WHERE merchant_id = ? AND meter_slug = ? AND "
                            "deleted_at IS NULL", merchant_id, slug)
    return _meter(row) if row else None


async def create_meter(db: Database, merchant_id: str, slug: str, name: str, rate_type: str, tier_type: str,
                       tiers: list[Tier]) -> Meter | None:
    """A new meter, or None when the merchant already has a live meter with this slug."""
    if await meter_by_slug(db, merchant_id, slug) is not None:
        return None
    meter_id = new_id("mtr")
    try:
        await db.execute("INSERT INTO meters VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)", meter_id, merchant_id, slug,
                         name, rate_type, tier_type, _tiers_json(tiers), now_iso())
    except Exception as exc:
        if is_unique_violation(exc):  # a concurrent create of the same slug won
            return None
        raise
    return await meter(db, merchant_id, meter_id)


async def list_meters(db: Database, merchant_id: str, cursor: tuple[str, ...] | None, limit: int) -> list[Meter]:
    return [_meter(r) for r in await page(db, "meters", "meter_id", _METER_COLUMNS, merchant_id, cursor, limit)]


async def update_meter(db: Database, merchant_id: str, meter_id: str, name: str | None,
                       tiers: list[Tier] | None) -> Meter | None:
    sets: list[str] = []
    args: list[object] = []
    if name is not None:
        sets.append("name = ?")
        args.append(name)
    if tiers is not None:
        sets.append("tiers = ?")
        args.append(_tiers_json(tiers))
    if sets:
        async with db.transaction() as tx:
            if await tx.execute(f"UPDATE meters SET {', '.join(sets)} WHERE meter_id = ? AND merchant_id = ? "
                                "AND deleted_at IS NULL", *args, meter_id, merchant_id) != 1:
                return None
            if tiers is not None:  # the credentials holding the old price reserve at the new one within a second
                await key_events.record(tx, meter_id)
    return await meter(db, merchant_id, meter_id)


async def delete_meter(db: Database, merchant_id: str, meter_id: str) -> bool:
    """Delete a meter; the forward tokens naming it stop working on every worker within a second (a key event)."""
    return await _delete(db, "meters", "meter_id", merchant_id, meter_id)


# -- the wallet's ledger --------------------------------------------------------------------------------------
async def wallet_history(db: Database, merchant_id: str, cursor: tuple[str, ...] | None, limit: int) -> list[Credit]:
    """Up to `limit + 1` credits to the merchant's own wallet, newest first (the `credits` ledger)."""
    rows = await page(db, "credits", "credit_id", "credit_id, amount_nanos, source, created_at", merchant_id, cursor,
                      limit, extra_where="payer_kind = 'merchant'")
    return [Credit(r[0], int(r[1]), r[2], r[3]) for r in rows]


# -- webhooks --------------------------------------------------------------------------------------------------
_WEBHOOK_COLUMNS = "webhook_id, merchant_id, name, url, secret, created_at"


async def webhook(db: Database, merchant_id: str, webhook_id: str) -> Webhook | None:
    row = await db.fetchone(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE webhook_id = ? AND merchant_id = ? "
                            "AND deleted_at IS NULL", webhook_id, merchant_id)
    return Webhook(*row) if row else None


async def create_webhook(db: Database, merchant_id: str, name: str, url: str, secret: str,
                         most: int | None = None) -> Webhook | None:
    """A new webhook; None when the merchant already has `most` of them (counted and inserted in one
    transaction; on PostgreSQL the merchant's row is locked first, so concurrent creates cannot pass the cap)."""
    webhook_id = new_id("whk")
    async with db.transaction() as tx:
        if most is not None:
            if db.dialect == "postgres":
                await tx.fetchone("SELECT 1 FROM merchants WHERE merchant_id = ? FOR UPDATE", merchant_id)
            row = await tx.fetchone("SELECT count(*) FROM webhooks WHERE merchant_id = ? AND deleted_at IS NULL",
                                    merchant_id)
            if row and int(row[0]) >= most:
                return None
        await tx.execute("INSERT INTO webhooks VALUES (?, ?, ?, ?, ?, ?, NULL)", webhook_id, merchant_id, name,
                         url, secret, now_iso())
    return await webhook(db, merchant_id, webhook_id)


async def list_webhooks(db: Database, merchant_id: str, cursor: tuple[str, ...] | None, limit: int) -> list[Webhook]:
    rows = await page(db, "webhooks", "webhook_id", _WEBHOOK_COLUMNS, merchant_id, cursor, limit)
    return [Webhook(*r) for r in rows]


async def update_webhook(db: Database, merchant_id: str, webhook_id: str, name: str | None,
                         url: str | None) -> Webhook | None:
    sets: list[str] = []
    args: list[object] = []
    for column, value in (("name", name), ("url", url)):
        if value is not None:
            sets.append(f"{column} = ?")
            args.append(value)
    if sets:
        changed = await db.execute(f"UPDATE webhooks SET {', '.join(sets)} WHERE webhook_id = ? AND "
                                   "merchant_id = ? AND deleted_at IS NULL", *args, webhook_id, merchant_id)
        if changed != 1:
            return None
    return await webhook(db, merchant_id, webhook_id)


async def delete_webhook(db: Database, merchant_id: str, webhook_id: str) -> bool:
    return await db.execute("UPDATE webhooks SET deleted_at = ? WHERE webhook_id = ? AND merchant_id = ? AND "
                            "deleted_at IS NULL", now_iso(), webhook_id, merchant_id) == 1
