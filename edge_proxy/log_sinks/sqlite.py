"""The embedded request log: the `requests` table in the gateway's SQLite file.

Every call runs on one dedicated thread with its own connection, so a batch write or a usage query never
blocks the event loop.
"""
from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from ..metering.record import RequestRecord
from ..store.sqlite import sqlite_path
from . import sql
from .sql import Filters, Where

_ph = lambda i: "?"  # noqa: E731


def _json_text(column: str, key_mark: str) -> str:
    return f"json_extract({column}, '$.\"' || {key_mark} || '\"')"


class SQLiteLogSink:
    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-proxy-log")
        self._db: sqlite3.Connection | None = None
        self._insert = sql.insert_sql(_ph)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=10000")
        db.executescript(sql.create_table())
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    async def write(self, records: list[RequestRecord]) -> None:
        await self._run(self._write, [sql.to_row(r) for r in records])

    def _write(self, rows: list[tuple]) -> None:
        db = self._db
        if db is None:
            raise sqlite3.OperationalError("log sink is not open")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(self._insert, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def get(self, merchant_id: str, request_id: str) -> RequestRecord | None:
        where = Where(_ph, _json_text)
        where.add("merchant_id = {}", merchant_id)
        where.add("request_id = {}", request_id)
        rows = await self._run(self._query, f"SELECT {', '.join(sql.COLUMNS)} FROM requests WHERE {where.sql}",
                               where.args)
        return sql.from_row(rows[0]) if rows else None

    async def list(self, filters: Filters, cursor: tuple[str, str] | None, limit: int) -> list[RequestRecord]:
        query, args = sql.list_sql(Where(_ph, _json_text).filters(filters), cursor, limit)
        return [sql.from_row(r) for r in await self._run(self._query, query, args)]

    async def usage(self, filters: Filters) -> list[tuple]:
        query, args = sql.usage_sql(Where(_ph, _json_text).filters(filters))
        return await self._run(self._query, query, args)

    def _query(self, query: str, args: list) -> list[tuple]:
        if self._db is None:
            raise sqlite3.OperationalError("log sink is not open")
        return self._db.execute(query, args).fetchall()
