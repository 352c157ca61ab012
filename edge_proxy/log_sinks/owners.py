"""Who owns each OpenAI response (and its output items) created on the operator's managed key.

On the managed key every merchant's stored responses live in the operator's one OpenAI project, so OpenAI would let
anyone with that key continue any of them. The gateway keeps the owner of each: the merchant a response was made
for, and the customer when a customer's forward token made it. The rows ride the request log's batch
(`SQLLogSink.insert_new` adds them in the same transaction as the log rows), so a replayed batch adds nothing twice
and a response is owned exactly when its request is logged.
Ids are OpenAI's and unique, so the first owner is the only one; nothing ever changes an owner.
"""
from __future__ import annotations

from ..metering.record import RequestRecord
from ..store.db import Database, Tx

SCHEMA = """
CREATE TABLE IF NOT EXISTS response_owners (
    object_id   TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    customer_id TEXT
);
"""
_ADD = ("INSERT INTO response_owners (object_id, merchant_id, customer_id) VALUES (?, ?, ?) "
        "ON CONFLICT (object_id) DO NOTHING")
_OWNER = "SELECT merchant_id, customer_id FROM response_owners WHERE object_id = ?"
Owner = tuple[str, str | None]  # (merchant, customer): a customer's forward token made it, else the merchant


def owned_ids(record: RequestRecord) -> list[str]:
    """The ids a logged request made its merchant the owner of: its response and output items, on the managed key
    only (a BYOK answer is stored in the merchant's own project)."""
    if record.response_id is None or record.provider_key_type != "managed":
        return []
    return [record.response_id, *(record.output_item_ids or "").split()]


async def add(tx: Tx, records: list[RequestRecord]) -> None:
    """Own the ids of records just added to the log (the ones `insert_new` returns)."""
    rows = [(object_id, r.merchant_id, r.customer_id) for r in records for object_id in owned_ids(r)]
    if rows:
        await tx.executemany(_ADD, rows)


async def owner(db: Database, object_id: str) -> Owner | None:
    """The merchant (and customer) that owns a response or item id, None when no logged request made it. Raises
    when the store does not answer (the caller refuses the request)."""
    row = await db.peek(_OWNER, object_id)
    return (row[0], row[1]) if row else None
