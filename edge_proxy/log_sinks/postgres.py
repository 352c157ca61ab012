"""The production request log: the `requests` table in PostgreSQL, written in batches through asyncpg.

The writer's connections carry application_name `edge_proxy_log_writer`, so an operator can find them.
"""
from __future__ import annotations

import asyncpg

from ..metering.record import RequestRecord
from . import sql
from .sql import Filters, Where

_ph = lambda i: f"${i}"  # noqa: E731
APPLICATION_NAME = "edge_proxy_log_writer"


def _json_text(column: str, key_mark: str) -> str:
    return f"(({column})::jsonb ->> {key_mark})"


class PostgresLogSink:
    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None
        self._insert = sql.insert_sql(_ph)

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=4, command_timeout=10, timeout=5,
            server_settings={"application_name": APPLICATION_NAME})
        async with self._pool.acquire() as conn:
            await conn.execute(sql.create_table(integer="BIGINT", real="DOUBLE PRECISION"))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _acquire(self):
        if self._pool is None:
            await self.open()
        return self._pool.acquire()

    async def write(self, records: list[RequestRecord]) -> None:
        rows = [sql.to_row(r) for r in records]
        async with await self._acquire() as conn:
            async with conn.transaction():
                await conn.executemany(self._insert, rows)

    async def get(self, merchant_id: str, request_id: str) -> RequestRecord | None:
        where = Where(_ph, _json_text)
        where.add("merchant_id = {}", merchant_id)
        where.add("request_id = {}", request_id)
        async with await self._acquire() as conn:
            row = await conn.fetchrow(f"SELECT {', '.join(sql.COLUMNS)} FROM requests WHERE {where.sql}", *where.args)
        return sql.from_row(tuple(row)) if row else None

    async def list(self, filters: Filters, cursor: tuple[str, str] | None, limit: int) -> list[RequestRecord]:
        query, args = sql.list_sql(Where(_ph, _json_text).filters(filters), cursor, limit)
        async with await self._acquire() as conn:
            return [sql.from_row(tuple(r)) for r in await conn.fetch(query, *args)]

    async def usage(self, filters: Filters) -> list[tuple]:
        query, args = sql.usage_sql(Where(_ph, _json_text).filters(filters))
        async with await self._acquire() as conn:
            return [(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in await conn.fetch(query, *args)]
