"""Where request records end up: the `requests` table (SQLite or PostgreSQL), written by the log writer process.

The writer's connections carry application_name `edge_proxy_log_writer` on PostgreSQL, so an operator can
find them.
"""
from __future__ import annotations

import sys
from typing import Any

import msgspec

from ..metering.record import RequestRecord
from ..store.db import Database, Tx, open_database
from . import owners, sql, usage_rollup
from .sql import Filters, Where

APPLICATION_NAME = "edge_proxy_log_writer"
Rows = list[tuple[Any, ...]]  # (a name outside the class: SQLLogSink.list shadows `list` in its body)
_encode = msgspec.json.encode
_ph = lambda i: "?"  # noqa: E731 - the Database rewrites ? for PostgreSQL


class SQLLogSink:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Rows per INSERT. SQLite binds every value of a statement in one hold of the GIL, on its own thread,
        # while the event loop waits: 50 rows keep that near half a millisecond (100 rows are a tenth cheaper per
        # row and stall twice as long). PostgreSQL takes a batch as one JSON text (sql.INSERT_JSON_SQL).
        self._rows_per_insert = 1000 if db.dialect == "postgres" else 50
        if db.dialect == "postgres":
            self._json = lambda col, key: f"(({col})::jsonb ->> {key})"
        else:
            self._json = lambda col, key: f"json_extract({col}, '$.\"' || {key} || '\"')"

    async def open(self) -> None:
        await self.db.open()
        await self.db.executescript(sql.create_table() + usage_rollup.SCHEMA + owners.SCHEMA)
        await self._add_missing_columns()
        await usage_rollup.ensure_built(self.db)

    async def _add_missing_columns(self) -> None:
        """A table made by an older version gains the record's newer fields (NULL in old rows, read as 0)."""
        dialect = self.db.dialect
        have = {row[0] for row in await self.db.fetchall(sql.existing_columns_sql(dialect))}
        for name in sql.COLUMNS:
            if name in have:
                continue
            try:
                await self.db.execute(sql.add_column_sql(name, dialect))
            except Exception as exc:  # sqlite3 is loaded if this database is SQLite (store/db.py)
                sqlite3 = sys.modules.get("sqlite3")
                if not (sqlite3 is not None and isinstance(exc, sqlite3.OperationalError)
                        and "duplicate column" in str(exc)):  # not another worker adding it first
                    raise

    async def close(self) -> None:
        await self.db.close()

    async def write(self, records: list[RequestRecord], tx: Tx | None = None) -> None:
        """Insert records, unbilled; a request id already present is left as it is (replays are idempotent).
        The usage rollup counts the rows added, as BillingEngine.commit does."""
        if tx is not None:
            await usage_rollup.add(tx, await self.insert_new(tx, records))
            return
        async with self.db.transaction() as tx:
            await usage_rollup.add(tx, await self.insert_new(tx, records))

    async def insert_new(self, tx: Tx, records: list[RequestRecord]) -> list[RequestRecord]:
        """Insert records, and own the responses they made (owners.py); returns those whose rows were added now.
        A record already in the log (a replay), or a second record with the same (merchant, request id) in this
        batch, is left out."""
        new = await self._insert_rows(tx, records)
        await owners.add(tx, new)
        return new

    async def _insert_rows(self, tx: Tx, records: list[RequestRecord]) -> list[RequestRecord]:
        if await self._insert_all_new(tx, records):
            return list(records)
        rows: Rows = []
        for i in range(0, len(records), self._rows_per_insert):
            rows += await tx.fetchall(*self._insert(records[i:i + self._rows_per_insert], returning=True))
        if len(rows) == len(records):  # a row added for each record: none was there, none is here twice
            return list(records)
        return _first_of_each(records, {(row[1], row[0]) for row in rows})

    async def _insert_all_new(self, tx: Tx, records: list[RequestRecord]) -> bool:
        """Insert the records without RETURNING (on SQLite it costs about a fifth of the insert; on PostgreSQL
        the writer decodes a row per record), and keep them only if every one added a row, the usual case.
        Otherwise (a replay, or a request twice in the batch) the inserts are undone, and insert_new does them
        again with RETURNING to learn which rows are new."""
        await tx.execute("SAVEPOINT log_rows")
        added = 0
        for i in range(0, len(records), self._rows_per_insert):
            added += await tx.execute(*self._insert(records[i:i + self._rows_per_insert], returning=False))
        if added != len(records):
            await tx.execute("ROLLBACK TO SAVEPOINT log_rows")
        await tx.execute("RELEASE SAVEPOINT log_rows")
        return added == len(records)

    def _insert(self, chunk: list[RequestRecord], *, returning: bool) -> tuple[Any, ...]:
        """The statement and arguments that insert `chunk`: on PostgreSQL the records as one JSON text, on
        SQLite one row of values each."""
        if self.db.dialect == "postgres":
            return sql.INSERT_JSON_SQL if returning else sql.INSERT_JSON_QUIET_SQL, _encode(chunk).decode()
        return sql.insert_many_sql(len(chunk), returning), *sql.sqlite_params(chunk)

    def _where(self) -> Where:
        return Where(_ph, self._json)

    async def get(self, merchant_id: str, request_id: str) -> RequestRecord | None:
        where = self._where()
        where.add("merchant_id = {}", merchant_id)
        where.add("request_id = {}", request_id)
        row = await self.db.fetchone(f"SELECT {', '.join(sql.COLUMNS)} FROM requests WHERE {where.sql}", *where.args)
        return sql.from_row(row) if row else None

    async def list(self, filters: Filters, cursor: tuple[str, ...] | None, limit: int) -> list[RequestRecord]:
        query, args = sql.list_sql(self._where().filters(filters), cursor, limit)
        return [sql.from_row(r) for r in await self.db.fetchall(query, *args)]

    async def usage(self, filters: Filters) -> Rows:
        """Per day: (day, requests, tokens, cost, charge), ordered by day; from the rollup when it can answer."""
        query, args = usage_rollup.query(filters, None) or sql.usage_sql(self._where().filters(filters))
        return [(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in await self.db.fetchall(query, *args)]

    async def usage_by(self, filters: Filters, group: str) -> Rows:
        """Per day and per model, provider or customer (sql.USAGE_GROUPS): (day, value or None, requests, tokens,
        cost, charge), ordered by day; from the rollup when it can answer."""
        query, args = usage_rollup.query(filters, group) or sql.usage_by_sql(self._where().filters(filters), group)
        return [(r[0], r[1] or None, int(r[2]), int(r[3]), int(r[4]), int(r[5]))
                for r in await self.db.fetchall(query, *args)]


LogSink = SQLLogSink


def open_log_sink(url: str) -> SQLLogSink:
    return SQLLogSink(open_database(url, APPLICATION_NAME))


__all__ = ["APPLICATION_NAME", "Filters", "LogSink", "SQLLogSink", "open_log_sink"]


def _first_of_each(records: list[RequestRecord], keys: set[tuple[str, str]]) -> list[RequestRecord]:
    """The records whose (merchant, request id) is in `keys`, each key once (its first record)."""
    out = []
    for r in records:
        key = (r.merchant_id, r.request_id)
        if key in keys:
            keys.discard(key)
            out.append(r)
    return out
