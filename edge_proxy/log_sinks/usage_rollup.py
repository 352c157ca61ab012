"""Usage per merchant, day, model, provider and customer, kept beside the request log so that usage over a
month reads a few hundred rows instead of scanning every request.

Exactly once: the billing transaction that inserts a batch's log rows adds the same rows here
(`BillingEngine.commit` calls `add` with the records `settle` added now, after their charges are final), so a
replayed or retried batch never counts twice, and the table always equals a GROUP BY of `requests`.
`rebuild` recomputes it from the log (at first start after an upgrade, when the table is new); a query the
rollup cannot answer (a meter or metadata filter, a range that is not whole days) falls back to the log.

Key columns hold '' for "none" (a primary key column cannot be NULL); reads turn '' back into None.
"""
from __future__ import annotations

from collections import defaultdict

from ..metering.record import RequestRecord
from ..store.db import Database, Tx
from .sql import TOKENS_SUM, USAGE_GROUPS, Filters

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_daily (
    merchant_id  TEXT NOT NULL,
    day          TEXT NOT NULL,
    model        TEXT NOT NULL,
    provider     TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    requests     BIGINT NOT NULL,
    tokens       BIGINT NOT NULL,
    cost_nanos   BIGINT NOT NULL,
    charge_nanos BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, day, model, provider, customer_id)
);
CREATE TABLE IF NOT EXISTS usage_daily_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_UPSERT = ("INSERT INTO usage_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (merchant_id, day, model, provider, customer_id) DO UPDATE SET "
           "requests = usage_daily.requests + excluded.requests, tokens = usage_daily.tokens + excluded.tokens, "
           "cost_nanos = usage_daily.cost_nanos + excluded.cost_nanos, "
           "charge_nanos = usage_daily.charge_nanos + excluded.charge_nanos")
_REBUILD = ("INSERT INTO usage_daily SELECT merchant_id, substr(created_at, 1, 10), coalesce(model, ''), "
            f"coalesce(provider, ''), coalesce(customer_id, ''), count(*), {TOKENS_SUM}, "
            "coalesce(sum(cost_nanos), 0), coalesce(sum(charge_nanos), 0) FROM requests "
            "GROUP BY merchant_id, substr(created_at, 1, 10), coalesce(model, ''), coalesce(provider, ''), "
            "coalesce(customer_id, '')")
_BUILT = "built"


async def add(tx: Tx, records: list[RequestRecord]) -> None:
    """Count records just inserted into the log, in the transaction that inserted them."""
    sums: dict[tuple[str, str, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in records:
        s = sums[(r.merchant_id, r.created_at[:10], r.model or "", r.provider or "", r.customer_id or "")]
        s[0] += 1
        s[1] += r.input_tokens + r.output_tokens
        s[2] += r.cost_nanos or 0
        s[3] += r.charge_nanos
    if sums:  # in key order, so two writers lock the rows they share in the same order (no deadlock)
        await tx.executemany(_UPSERT, [(*key, *s) for key, s in sorted(sums.items())])


async def ensure_built(db: Database) -> None:
    """Build the rollup from the log once (the first start with this table); later starts cost one read."""
    row = await db.fetchone("SELECT value FROM usage_daily_state WHERE name = ?", _BUILT)
    if row is None:
        await rebuild(db)


async def rebuild(db: Database) -> None:
    """Recompute the rollup from the whole log. Writers wait on the table lock meanwhile (PostgreSQL; SQLite's
    write lock does the same), so each of their batches is counted once: before the recompute or after it."""
    async with db.transaction() as tx:
        if db.dialect == "postgres":
            await tx.execute("LOCK TABLE usage_daily IN SHARE ROW EXCLUSIVE MODE")
        await tx.execute("DELETE FROM usage_daily")
        await tx.execute(_REBUILD)
        await tx.execute("DELETE FROM usage_daily_state WHERE name = ?", _BUILT)
        await tx.execute("INSERT INTO usage_daily_state VALUES (?, ?)", _BUILT, "1")


def query(filters: Filters, group: str | None) -> tuple[str, list[object]] | None:
    """The rollup's answer to a usage query (per day, or per day and USAGE_GROUPS column), in the log queries'
    row shape; None when the rollup cannot answer it (meter, metadata, model or status filters, or a range that
    does not start and end on whole days)."""
    if (filters.meter_id or filters.metadata or filters.model or filters.status
            or any(edge is not None and len(edge) != 10 for edge in (filters.start, filters.end))):
        return None
    where: list[str] = ["merchant_id = ?"]
    args: list[object] = [filters.merchant_id]
    for term, value in (("customer_id = ?", filters.customer_id), ("day >= ?", filters.start),
                        ("day < ?", filters.end)):
        if value:
            where.append(term)
            args.append(value)
    sums = "sum(requests), sum(tokens), sum(cost_nanos), sum(charge_nanos)"
    keys = "day" if group is None else f"day, {USAGE_GROUPS[group]}"
    return f"SELECT {keys}, {sums} FROM usage_daily WHERE {' AND '.join(where)} GROUP BY {keys} ORDER BY {keys}", args
