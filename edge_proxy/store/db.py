"""One small async database interface over SQLite and PostgreSQL, so every query is written once.

SQL uses `?` placeholders; the PostgreSQL side rewrites them to `$n`. Types used: TEXT, BIGINT (64-bit
integers; SQLite maps it to INTEGER), DOUBLE PRECISION.

SQLite runs on one dedicated thread with one connection per process (WAL, so other processes read while one
writes); an asyncio lock keeps a transaction's statements together. PostgreSQL uses an asyncpg pool.

A transaction may carry notes (`note(tx, ...)`): once it has committed, and only then, the database hands them to
its `commit_listeners` (the key-event watcher uses this to drop a revoked key from its own cache at once).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:  # imported where a SQLite database is used: a worker on PostgreSQL does without it
    import sqlite3

log = logging.getLogger("edge_proxy")

CommitListener = Callable[[list[str]], None]
Row = tuple[Any, ...]  # one result row, whichever the driver
_T = TypeVar("_T")


class Tx(Protocol):
    dialect: str  # "sqlite" | "postgres"

    async def execute(self, sql: str, *args: Any) -> int: ...
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    async def fetchone(self, sql: str, *args: Any) -> Row | None: ...
    async def fetchall(self, sql: str, *args: Any) -> list[Row]: ...


class Database(Tx, Protocol):
    commit_listeners: list[CommitListener]  # called with a transaction's notes after it commits

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def executescript(self, script: str) -> None: ...
    def transaction(self) -> AbstractAsyncContextManager[Tx]: ...
    async def peek(self, sql: str, *args: Any) -> Row | None: ...


async def fetch_row(tx: Tx, sql: str, *args: Any) -> Row:
    """The row of a query that always answers one (an aggregate, an upsert's RETURNING)."""
    row = await tx.fetchone(sql, *args)
    if row is None:
        raise LookupError(f"no row from a query that always answers one: {sql[:80]}")
    return row


def note(tx: Tx, *subjects: str) -> None:
    """Tell the database's commit listeners about `subjects` once this transaction has committed (never if it
    rolls back)."""
    if not isinstance(tx, _NotedTx):
        raise TypeError("note() takes a transaction from Database.transaction()")
    tx.notes.extend(subjects)


def _tell(listeners: list[CommitListener], notes: list[str]) -> None:
    for listener in listeners:
        try:
            listener(notes)
        except Exception:  # the transaction has committed: a listener's bug must not turn it into an error
            log.exception("a commit listener failed on %d notes", len(notes))


class _NotedTx:
    notes: list[str]


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db`, `sqlite:////absolute/path.db` or `sqlite://:memory:`."""
    rest = url[len("sqlite://"):]
    if rest.startswith("/"):
        rest = rest[1:]
    return rest or ":memory:"


class SQLiteDB:
    dialect = "sqlite"

    def __init__(self, url: str, *, on_loop: bool = False) -> None:
        """`on_loop`: run each statement on the event loop's own thread, for a process whose loop serves
        nothing while the database works (the log writer process): handing every statement to the SQLite thread
        and back cost that process about a quarter of its CPU per record (bench/RESULTS.md). It yields the CPU
        after each statement (see _call)."""
        import sqlite3  # with a process's first SQLite database (`serve`: before the fork); never on PostgreSQL
        self._sqlite3 = sqlite3
        self.path = sqlite_path(url)
        self._conn: sqlite3.Connection | None = None
        self._peek_conn: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-proxy-sqlite")
        self._on_loop = on_loop
        self._lock = asyncio.Lock()
        self.commit_listeners: list[CommitListener] = []

    def _connect(self) -> None:
        conn = self._sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        self._conn = conn

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._on_loop:
            try:
                return fn(*args)
            finally:
                # Let a runnable process on this core (a worker) in between statements: run back to back, a
                # batch's statements held a worker's request behind them and the c=1 p99.9 rose from ~5 to ~7 ms
                # (bench/tail_probe.py; the thread handoffs used to make these pauses).
                os.sched_yield()
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def open(self) -> None:
        if self._conn is None:
            await self._call(self._connect)

    async def close(self) -> None:
        if self._peek_conn is not None:
            self._peek_conn.close()
            self._peek_conn = None
        if self._conn is not None:
            await self._call(self._conn.close)
            self._conn = None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise self._sqlite3.OperationalError("database is not open")
        return self._conn

    # statements outside a transaction take the lock so they never land inside another task's transaction
    async def execute(self, sql: str, *args: Any) -> int:
        async with self._lock:
            count: int = await self._call(lambda: self._c().execute(sql, args).rowcount)
            return count

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self._lock:
            await self._call(lambda: self._c().executemany(sql, rows))

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        async with self._lock:
            row: Row | None = await self._call(lambda: self._c().execute(sql, args).fetchone())
            return row

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        async with self._lock:
            rows: list[Row] = await self._call(lambda: self._c().execute(sql, args).fetchall())
            return rows

    async def executescript(self, script: str) -> None:
        async with self._lock:
            await self._call(lambda: self._c().executescript(script))

    async def peek(self, sql: str, *args: Any) -> Row | None:
        """One row of a small read that runs often (the key-event poll, the webhook loop's next due time), read
        here on the calling thread from a read-only connection of its own: no hand-off to the SQLite thread and
        back, no wait for the store's lock. In WAL mode a read does not wait for writers; where it would have to
        (SQLITE_BUSY), it raises at once instead of holding the event loop (busy_timeout 0)."""
        conn = self._peek_conn
        if conn is None:
            if self._conn is None:
                raise self._sqlite3.OperationalError("database is not open")
            if self.path == ":memory:":  # a private database: only the store's own connection sees it
                return await self.fetchone(sql, *args)
            conn = self._sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0.0)
            conn.execute("PRAGMA query_only=1")
            self._peek_conn = conn
        row: Row | None = conn.execute(sql, args).fetchone()
        return row

    def _end_abandoned(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._lock:
            try:
                await self._call(lambda: self._c().execute("BEGIN IMMEDIATE"))
            except BaseException:
                # Cancelled (a caller's timeout) while BEGIN waits for another process's lock: the thread still
                # takes it when it can, and nothing would ever end that transaction, so every other writer would
                # find the database locked for good. The thread runs one job at a time, in order: end it there.
                if self._on_loop:  # nothing ran elsewhere: BEGIN itself failed, or took the lock and is here
                    self._end_abandoned()
                else:
                    self._thread.submit(self._end_abandoned)
                raise
            tx = _SQLiteTx(self)
            try:
                yield tx
            except BaseException:
                await self._call(lambda: self._c().execute("ROLLBACK"))
                raise
            await self._call(lambda: self._c().execute("COMMIT"))
        if tx.notes:
            _tell(self.commit_listeners, tx.notes)


class _SQLiteTx(_NotedTx):
    dialect = "sqlite"

    def __init__(self, db: SQLiteDB) -> None:
        self._db = db
        self.notes = []

    async def execute(self, sql: str, *args: Any) -> int:
        count: int = await self._db._call(lambda: self._db._c().execute(sql, args).rowcount)
        return count

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._db._call(lambda: self._db._c().executemany(sql, rows))

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._db._call(lambda: self._db._c().execute(sql, args).fetchone())
        return row

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        rows: list[Row] = await self._db._call(lambda: self._db._c().execute(sql, args).fetchall())
        return rows


_QMARK = re.compile(r"\?")


def _pg(sql: str, cache: dict[str, str] = {}) -> str:  # noqa: B006 - a deliberate memo of translated SQL
    out = cache.get(sql)
    if out is None:
        counter = iter(range(1, 10_000))
        out = cache[sql] = _QMARK.sub(lambda _: f"${next(counter)}", sql)
    return out


def _rowcount(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class _PgOps:
    _conn: Any  # an asyncpg connection or pool: asyncpg ships no type information

    async def execute(self, sql: str, *args: Any) -> int:
        return _rowcount(await self._conn.execute(_pg(sql), *args))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(_pg(sql), rows)

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        row = await self._conn.fetchrow(_pg(sql), *args)
        return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        return [tuple(r) for r in await self._conn.fetch(_pg(sql), *args)]


class _PgTx(_PgOps, _NotedTx):
    dialect = "postgres"

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.notes = []


class PostgresDB(_PgOps):
    dialect = "postgres"

    def __init__(self, url: str, application_name: str = "edge_proxy") -> None:
        self.url = url
        self.application_name = application_name
        self._pool: Any = None  # asyncpg.Pool (asyncpg ships no type information)
        self.commit_listeners: list[CommitListener] = []

    async def open(self) -> None:
        import asyncpg
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=8, command_timeout=10, timeout=5,
                server_settings={"application_name": self.application_name})

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def _conn(self) -> Any:
        if self._pool is None:
            raise ConnectionError("database is not open")
        return self._pool  # a pool runs single statements on any free connection

    async def executescript(self, script: str) -> None:
        await self._conn.execute(script)

    async def peek(self, sql: str, *args: Any) -> Row | None:
        """One row of a small, frequent read (see SQLiteDB.peek): asyncpg runs on the event loop already."""
        return await self.fetchone(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        if self._pool is None:
            await self.open()
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                tx = _PgTx(conn)
                yield tx
        if tx.notes:
            _tell(self.commit_listeners, tx.notes)


def open_database(url: str, application_name: str = "edge_proxy", *, sqlite_on_loop: bool = False) -> Database:
    """`sqlite_on_loop`: see SQLiteDB (PostgreSQL's client is asynchronous already)."""
    from ..errors import MissingDriver, SettingsError
    if url.startswith("sqlite:"):
        return SQLiteDB(url, on_loop=sqlite_on_loop)
    if url.startswith(("postgresql://", "postgres://")):
        try:  # here, before any worker starts, rather than as a traceback at the first connection
            import asyncpg  # noqa: F401
        except ImportError:
            raise MissingDriver("EDGE_PROXY_DATABASE_URL: PostgreSQL needs the asyncpg driver, which is not "
                                "installed: pip install 'edge-proxy[postgres]'") from None
        return PostgresDB(url, application_name)
    raise SettingsError(f"EDGE_PROXY_DATABASE_URL: unsupported scheme in {url.split(':', 1)[0]!r}; "
                        "use sqlite:///path.db or postgresql://...")
