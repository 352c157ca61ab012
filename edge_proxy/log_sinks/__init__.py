"""Where request records end up: SQLite (embedded default), PostgreSQL, and the spill file in between."""
from __future__ import annotations

from typing import Protocol

from ..errors import SettingsError
from ..metering.record import RequestRecord
from .sql import Filters


class LogSink(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def write(self, records: list[RequestRecord]) -> None: ...
    async def get(self, merchant_id: str, request_id: str) -> RequestRecord | None: ...
    async def list(self, filters: Filters, cursor: tuple[str, str] | None, limit: int) -> list[RequestRecord]: ...
    async def usage(self, filters: Filters) -> list[tuple]: ...


def open_log_sink(url: str) -> LogSink:
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteLogSink
        return SQLiteLogSink(url)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresLogSink
        return PostgresLogSink(url)
    raise SettingsError(f"EDGE_PROXY_DATABASE_URL: unsupported scheme in {url.split(':', 1)[0]!r}")


__all__ = ["Filters", "LogSink", "open_log_sink"]
