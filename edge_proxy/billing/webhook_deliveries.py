"""The `webhook_deliveries` table: every delivery still owed survives a restart, and each is sent by one worker
at a time, in SQLite and PostgreSQL alike.

An event becomes one row per webhook of its merchant (`enqueue`, which can run inside the transaction that
caused the event). A worker `claim`s due rows: one UPDATE ... RETURNING counts the attempt and leases the row
until `claimed_until`, so no other worker or gateway takes it meanwhile (PostgreSQL also skips rows another
claim has locked; the outer WHERE re-checks the lease, so a row is never claimed twice). `record` writes the
outcome only if the attempt count is still the claimant's (a claim that outlived its lease writes nothing).
A worker that dies mid-delivery leaves its lease to expire, and the row is due again: at least once.
"""
from __future__ import annotations

from typing import Any

from dataclasses import dataclass

import msgspec

from ..clock import now_iso
from ..store.base import new_id
from ..store.db import Database, Tx

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
MAX_BACKOFF = 3600.0
_NO_CAP = 1 << 62
_encode = msgspec.json.encode


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker holds: what to send, where (None when its webhook was deleted), and its attempt."""

    delivery_id: str
    event_id: str
    event_type: str
    body: bytes
    attempts: int   # this attempt's number, counted when claimed
    url: str | None
    secret: str | None


async def enqueue(tx: Tx, merchant_id: str, event_type: str, data: dict[str, Any], now: float) -> tuple[str, int]:
    """Owe an event to every live webhook of the merchant: (event id, how many deliveries)."""
    event_id = new_id("evt")
    body = _encode({"id": event_id, "type": event_type, "created_at": int(now), "data": data}).decode()
    hooks = await tx.fetchall("SELECT webhook_id FROM webhooks WHERE merchant_id = ? AND deleted_at IS NULL",
                              merchant_id)
    stamp = now_iso()
    await tx.executemany(
        "INSERT INTO webhook_deliveries (delivery_id, webhook_id, merchant_id, event_id, event_type, body, status, "
        "attempts, next_attempt_at, claimed_until, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, 0, ?, ?)",
        [(new_id("dlv"), webhook_id, merchant_id, event_id, event_type, body, PENDING, now, stamp, stamp)
         for (webhook_id,) in hooks])
    return event_id, len(hooks)


async def claim(db: Database, now: float, lease: float, limit: int, *, per_merchant: int | None = None
                ) -> list[Claimed]:
    """Up to `limit` due deliveries, each leased to this caller until now + lease, oldest due first; with
    `per_merchant`, none of a merchant that already has that many in flight (on any worker), so one merchant's
    receiver that never answers holds at most that many slots while the others' deliveries go on (two claims at
    the same instant may each take a merchant's share: a bound per claimant; a row is still never taken twice)."""
    # rank each merchant's due rows after the ones it has leased; the ranking sits a level below the row lock
    # (PostgreSQL allows none beside a window function), and the outer WHERE re-checks the lease
    lock = " FOR UPDATE SKIP LOCKED" if db.dialect == "postgres" else ""
    due = ("SELECT delivery_id FROM webhook_deliveries WHERE delivery_id IN (SELECT delivery_id FROM ("
           "SELECT d.delivery_id, row_number() OVER (PARTITION BY d.merchant_id ORDER BY d.next_attempt_at, "
           "d.delivery_id) + coalesce(b.busy, 0) AS n FROM webhook_deliveries d LEFT JOIN (SELECT merchant_id, "
           "count(*) AS busy FROM webhook_deliveries WHERE status = 'pending' AND claimed_until > ? GROUP BY "
           "merchant_id) b ON b.merchant_id = d.merchant_id WHERE d.status = 'pending' AND d.next_attempt_at <= ? "
           f"AND d.claimed_until <= ?) ranked WHERE n <= ?) ORDER BY next_attempt_at LIMIT ?{lock}")
    args = (now, now, now, _NO_CAP if per_merchant is None else per_merchant, limit)
    rows = await db.fetchall(
        f"UPDATE webhook_deliveries SET attempts = attempts + 1, claimed_until = ? WHERE delivery_id IN ({due}) "
        "AND status = 'pending' AND claimed_until <= ? "
        "RETURNING delivery_id, webhook_id, event_id, event_type, body, attempts",
        now + lease, *args, now)
    if not rows:
        return []
    ids = sorted({r[1] for r in rows})
    hooks = {r[0]: (r[1], r[2]) for r in await db.fetchall(
        f"SELECT webhook_id, url, secret FROM webhooks WHERE deleted_at IS NULL AND webhook_id IN "
        f"({', '.join('?' * len(ids))})", *ids)}
    out = []
    for delivery_id, webhook_id, event_id, event_type, body, attempts in rows:
        url, secret = hooks.get(webhook_id, (None, None))
        out.append(Claimed(delivery_id, event_id, event_type, body.encode(), int(attempts), url, secret))
    return out


async def record(db: Database, claimed: Claimed, ok: bool, status: int | None, error: str | None, now: float,
                 *, max_attempts: int, backoff: float, give_up: bool = False) -> str:
    """Write an attempt's outcome; a failure is due again after a doubling wait, or failed for good after the
    last attempt (or at once with give_up). Returns the delivery's new status."""
    if ok:
        new_status, due = DELIVERED, now
    elif give_up or claimed.attempts >= max_attempts:
        new_status, due = FAILED, now
    else:
        new_status, due = PENDING, now + min(MAX_BACKOFF, backoff * 2 ** (claimed.attempts - 1))
    await db.execute(
        "UPDATE webhook_deliveries SET status = ?, last_status = ?, last_error = ?, next_attempt_at = ?, "
        "claimed_until = 0, updated_at = ? WHERE delivery_id = ? AND attempts = ?",
        new_status, status, error[:1000] if error else None, due, now_iso(), claimed.delivery_id, claimed.attempts)
    return new_status


async def release(db: Database, claimed: Claimed) -> None:
    """Give back a claim whose attempt never ran to its end (shutdown): due again now, the attempt uncounted."""
    await db.execute("UPDATE webhook_deliveries SET attempts = attempts - 1, claimed_until = 0 WHERE delivery_id = ? "
                     "AND attempts = ? AND status = 'pending'", claimed.delivery_id, claimed.attempts)


async def next_due(db: Database, now: float) -> float | None:
    """When the earliest owed delivery is due (its lease's end, if one holds it), or None when none is owed."""
    row = await db.peek("SELECT min(CASE WHEN claimed_until > next_attempt_at THEN claimed_until "
                        "ELSE next_attempt_at END) FROM webhook_deliveries WHERE status = 'pending'")
    return float(row[0]) if row and row[0] is not None else None


async def recent_deliveries(db: Database, merchant_id: str, webhook_id: str, limit: int) -> list[dict[str, Any]]:
    """A webhook's latest deliveries, newest first, for the dashboard: what was sent, how it went, what is next."""
    rows = await db.fetchall(
        "SELECT delivery_id, event_id, event_type, status, attempts, last_status, last_error, next_attempt_at, "
        "created_at, updated_at FROM webhook_deliveries WHERE merchant_id = ? AND webhook_id = ? "
        "ORDER BY created_at DESC, delivery_id DESC LIMIT ?", merchant_id, webhook_id, limit)
    return [{"delivery_id": r[0], "event_id": r[1], "event_type": r[2], "status": r[3], "attempts": int(r[4]),
             "last_status": r[5], "last_error": r[6],
             "next_attempt_at": float(r[7]) if r[3] == PENDING else None,
             "created_at": r[8], "updated_at": r[9]} for r in rows]
