"""The ledger's index on (merchant_id, request_id) is no longer kept (billing/ledger.py says why): a database made
before loses it when a store opens, on both databases, and the money still verifies. On PostgreSQL the drop is
best effort: while another transaction uses `transfers`, opening gives up on it after 2 s instead of waiting."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest

from edge_proxy.billing.reconcile import verify
from edge_proxy.log_sinks import open_log_sink
from edge_proxy.store import open_store
from edge_proxy.store.db import Database

from . import pg

OLD_INDEX = "CREATE INDEX IF NOT EXISTS transfers_by_request ON transfers (merchant_id, request_id)"


async def _has_old_index(db: Database) -> bool:
    if db.dialect == "sqlite":
        query = "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?"
    else:
        query = "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = ?"
    return (await db.fetchall(query, "transfers_by_request"))[0][0] == 1


async def _open(url: str) -> tuple[bool, bool]:
    """Whether the old index is there before and after a store opens on a database whose ledger had it."""
    store, sink = open_store(url), open_log_sink(url)
    await store.open()
    await sink.open()
    try:
        await store.create_merchant("m", 10**9)
        await store.db.execute(OLD_INDEX)  # the ledger as the previous version made it
        before = await _has_old_index(store.db)
        await store.close()
        await store.open()  # a gateway starting after the upgrade
        after = await _has_old_index(store.db)
        await store.close()
        await store.open()  # and another: nothing left to drop
        proof = await verify(store.db)
        assert proof["ok"], proof["problems"]
        return before, after
    finally:
        await sink.close()
        await store.close()


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_an_old_databases_index_is_dropped_when_a_store_opens(tmp_path, dialect):
    if dialect == "sqlite":
        assert asyncio.run(_open(f"sqlite:///{tmp_path}/ledger.db")) == (True, False)
        return
    url = asyncio.run(pg.create_database())
    try:
        assert asyncio.run(_open(url)) == (True, False)
    finally:
        asyncio.run(pg.drop_database(url))


async def _busy(url: str) -> bool:
    store = open_store(url)
    await store.open()
    await store.db.execute(OLD_INDEX)
    await store.close()
    other = await asyncpg.connect(url)
    try:
        async with other.transaction():
            await other.fetch("SELECT count(*) FROM transfers")  # holds a lock on the table until it ends
            await asyncio.wait_for(store.open(), 10)  # does not wait for it
            still = await _has_old_index(store.db)
        await store.close()
        return still
    finally:
        await other.close()


def test_on_postgresql_a_busy_table_keeps_the_index_until_a_later_start():
    url = asyncio.run(pg.create_database())
    try:
        assert asyncio.run(_busy(url)) is True
    finally:
        asyncio.run(pg.drop_database(url))
