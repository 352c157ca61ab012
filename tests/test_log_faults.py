"""Nothing is lost: the log queue and the request log under real faults."""
from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import sqlite3
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from edge_proxy.log_sinks import open_log_sink
from edge_proxy.metering.journal import Journal
from edge_proxy.metering.log_queue import LogQueue
from edge_proxy.metering.record import RequestRecord, from_json_line, now_iso, to_json_line

from .gateway_process import GatewayProcess, base_env
from .processes import wait_until

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def record(i: int, merchant: str = "mer_test") -> RequestRecord:
    return RequestRecord(request_id=f"req_fault_{i:06d}", created_at=now_iso(), merchant_id=merchant,
                         provider="openai", model="gpt-4o-mini", input_tokens=10, output_tokens=5)


def count_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM requests").fetchone()[0]


def run(coro):
    return asyncio.run(coro)


def sink_commit(sink):
    """The queue's commit step, writing log rows only (the gateway's also bills them, in the writer process)."""
    async def commit(request_ids: list[str], lines: list[bytes]) -> None:
        await sink.write([from_json_line(line) for line in lines])
    return commit


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal-*.jnl"))


# -- the queue against a real SQLite file -----------------------------------------------------------------

def test_a_locked_store_is_retried_then_parked_in_the_journal_then_replayed(tmp_path):
    db = tmp_path / "log.db"

    async def scenario():
        sink = open_log_sink(f"sqlite:///{db}")
        await sink.open()
        journal = Journal(tmp_path / "journal")
        journal.open()
        q = LogQueue(journal, sink_commit(sink), batch_size=10, max_age=0.01, spill_after=0.3, replay_every=0.1)
        q.start()
        # another process-like connection takes the write lock and keeps it
        blocker = sqlite3.connect(db, isolation_level=None, timeout=0.1)
        blocker.execute("PRAGMA busy_timeout=0")
        blocker.execute("BEGIN EXCLUSIVE")
        await sink.db.execute("PRAGMA busy_timeout=50")
        for i in range(25):
            q.put(record(i))
        await asyncio.sleep(1.0)
        assert q.write_failures > 0 and q.failing_for() > 0.3
        assert q.spilled == 25 and q.written == 0 and q.depth == 0  # out of memory, in the journal
        assert journal.backlog()
        blocker.execute("ROLLBACK")
        blocker.close()
        deadline = time.monotonic() + 5
        while q.replayed < 25 and time.monotonic() < deadline:  # the parked writer tries the store by itself
            await asyncio.sleep(0.05)
        assert q.failing_for() == 0
        await q.stop()
        await sink.close()
        return q

    q = run(scenario())
    assert q.replayed == 25
    with sqlite3.connect(db) as conn:
        ids = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
    assert {f"req_fault_{i:06d}" for i in range(25)} <= ids
    assert segments(tmp_path / "journal") == []


def test_a_full_queue_leaves_memory_for_the_journal_instead_of_dropping(tmp_path):
    db = tmp_path / "log.db"

    async def scenario():
        sink = open_log_sink(f"sqlite:///{db}")
        await sink.open()
        journal = Journal(tmp_path / "journal")
        journal.open()
        q = LogQueue(journal, sink_commit(sink), max_size=10, batch_size=5, max_age=0.01)
        # no writer running yet: the queue fills, then every record waits in the journal
        for i in range(30):
            q.put(record(i))
        assert q.spilled == 30 and q.dropped == 0 and q.depth == 0
        q.start()  # the writer finds the store answering and replays the journal's backlog
        deadline = time.monotonic() + 5
        while q.replayed < 30 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        q.put(record(30))  # memory again
        await q.stop()
        await sink.close()
        return q

    q = run(scenario())
    assert (q.written, q.replayed) == (1, 30)
    assert count_rows(db) == 31
    assert segments(tmp_path / "journal") == []


def dead_segment(directory: Path, records: list[RequestRecord]) -> Path:
    """A segment as a worker that died leaves it: written, never committed, its lock gone with the process."""
    journal = Journal(directory)
    journal.open()
    for r in records:
        journal.append(r.request_id, to_json_line(r))
    [segment] = [s.path for s in journal.segments]
    journal.close()  # closes the file: the flock goes, as it does when a process dies
    return segment


async def replay_dead(db: Path, directory: Path) -> LogQueue:
    sink = open_log_sink(f"sqlite:///{db}")
    await sink.open()
    q = LogQueue(Journal(directory), sink_commit(sink))
    await q._replay_dead()
    await sink.close()
    return q


def test_replaying_a_dead_workers_segment_twice_never_duplicates(tmp_path):
    db = tmp_path / "log.db"
    segment = dead_segment(tmp_path / "journal", [record(i) for i in range(7)])
    copy = segment.read_bytes()
    assert run(replay_dead(db, tmp_path / "journal")).replayed == 7
    assert not segment.exists()
    segment.write_bytes(copy)  # the same segment again (a crash after its commit, before it was deleted)
    assert run(replay_dead(db, tmp_path / "journal")).replayed == 7
    assert count_rows(db) == 7
    assert segments(tmp_path / "journal") == []


def test_a_corrupt_journal_line_is_kept_aside_not_lost(tmp_path):
    segment = dead_segment(tmp_path / "journal", [record(1)])
    with open(segment, "ab") as fh:
        fh.write(b"{not a record\n")
        fh.write(to_json_line(record(2)))
    q = run(replay_dead(tmp_path / "log.db", tmp_path / "journal"))
    assert q.replayed == 2
    assert Path(str(segment) + ".bad").read_bytes() == b"{not a record\n"


def test_a_spill_segment_of_an_older_version_is_replayed(tmp_path):
    directory = tmp_path / "journal"
    directory.mkdir()
    dead = directory / "spill-999999999-1-1.jsonl.replaying-999999999"  # claimed by a replayer that died
    dead.write_bytes(to_json_line(record(1)))
    (directory / "spill-999999999-2-1.jsonl").write_bytes(to_json_line(record(2)))
    q = run(replay_dead(tmp_path / "log.db", directory))
    assert q.replayed == 2 and count_rows(tmp_path / "log.db") == 2
    assert list(directory.iterdir()) == []


# -- a real gateway under load ----------------------------------------------------------------------------

def _load(gw: GatewayProcess, n: int, workers: int = 8, codes: list[int] | None = None,
          answered: list[str] | None = None) -> list[str]:
    """n requests from several threads; returns the request ids of the ones answered 200 (also appended to
    `answered` as they come, for a test that acts in the middle of the load)."""
    answered = [] if answered is None else answered

    def one(_):
        try:
            r = httpx.post(gw.url + "/providers/openai/v1/chat/completions", json=CHAT,
                           headers={"Authorization": f"Bearer {gw.secret_key}"}, timeout=10)
        except httpx.TransportError:
            return
        if codes is not None:
            codes.append(r.status_code)
        if r.status_code == 200:
            answered.append(r.headers["x-lava-request-id"])
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    return answered


def test_sigterm_under_load_drains_the_queue_before_exit(fake, tmp_path):
    env = base_env(tmp_path / "g.db", fake.url, {"EDGE_PROXY_LOG_FLUSH_SECONDS": "30",
                                                  "EDGE_PROXY_LOG_BATCH_SIZE": "100000"})
    gw = GatewayProcess(env, workers=2).start(tmp_path)
    answered: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(_load, gw, 400, answered=answered)
        # SIGTERM in the middle of the load: once answers come (a fixed sleep on a busy machine came before any)
        wait_until(lambda: len(answered) >= 20, 30, "20 answers before SIGTERM", 0.02)
        gw.stop(signal.SIGTERM)
        future.result(timeout=60)
    with sqlite3.connect(tmp_path / "g.db") as conn:
        logged = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
    assert not (set(answered) - logged), "with the store up, the drain writes everything"
    assert segments(tmp_path / "spill") == [], "a drained worker leaves no journal behind"


@pytest.fixture
def pg_gateway(fake, tmp_path, private_postgres):
    """A gateway on a database of the session's private PostgreSQL, which these tests stop and kill."""
    url = private_postgres.create_database()
    gw = GatewayProcess(base_env(tmp_path / "unused.db", fake.url, {
        "EDGE_PROXY_DATABASE_URL": url, "EDGE_PROXY_LOG_SPILL_AFTER": "1"})).start(tmp_path)
    yield gw, url
    gw.stop()
    private_postgres.ensure_running()
    private_postgres.drop_database(url)


async def _pg_ids(url: str) -> set[str]:
    import asyncpg
    conn = await asyncpg.connect(url)
    try:
        return {r[0] for r in await conn.fetch("SELECT request_id FROM requests")}
    finally:
        await conn.close()


def _wait_pg(url: str, ids: list[str], timeout: float = 20) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        have = run(_pg_ids(url))
        if set(ids) <= have or time.monotonic() > deadline:
            return have
        time.sleep(0.2)


def test_killing_the_writers_connection_loses_nothing(pg_gateway, private_postgres):
    gw, url = pg_gateway
    first = _load(gw, 50)
    _wait_pg(url, first)
    assert private_postgres.terminate("edge_proxy_log_writer") >= 1
    second = _load(gw, 50)
    have = _wait_pg(url, first + second)
    assert set(first + second) <= have


@pytest.mark.parametrize("how", ["pg_ctl stop", "kill -9"])
def test_stopping_postgresql_spills_and_replays_everything(pg_gateway, private_postgres, tmp_path, how):
    gw, url = pg_gateway
    before = _load(gw, 20)
    _wait_pg(url, before)
    if how == "kill -9":
        private_postgres.kill_server()
    else:
        private_postgres.stop_server()
    try:
        # The principal is cached and the worker still holds part of the wallet (its lease), so requests go on
        # until that is spent; past it no money can be reserved, and the answer is a fast, clear 503.
        codes: list[int] = []
        during = _load(gw, 60, codes=codes)
        assert set(codes) <= {200, 503}, codes
        deadline = time.monotonic() + 15
        while _metric(gw, "edge_proxy_log_records_spilled_total") == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _metric(gw, "edge_proxy_log_records_spilled_total") > 0, "records wait in the journal, not memory"
    finally:
        private_postgres.start_server()
    after = _load(gw, 10)  # traffic wakes the writer, which replays once the store answers
    have = _wait_pg(url, before + during + after, timeout=30)
    assert set(before + during + after) <= have


def _metric(gw: GatewayProcess, name: str) -> float:
    text = httpx.get(gw.url + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_a_transaction_abandoned_while_waiting_for_the_lock_does_not_keep_the_database_locked(tmp_path):
    """A caller's timeout (a lease top-up's, say) cancels a transaction whose BEGIN is still waiting for another
    process's lock; when the thread gets the lock later, the transaction must end, or no one else can write."""
    from edge_proxy.store.db import SQLiteDB

    async def scenario() -> None:
        db = SQLiteDB(f"sqlite:///{tmp_path / 's.db'}")
        await db.open()
        await db.execute("CREATE TABLE t (x INTEGER)")
        blocker = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")

        async def write() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(write(), 0.2)
        blocker.execute("ROLLBACK")
        await asyncio.sleep(0.3)  # the abandoned BEGIN gets the lock now
        await db.execute("SELECT 1")  # the thread's queue has run past the abandoned transaction
        other = sqlite3.connect(tmp_path / "s.db", isolation_level=None, timeout=0.5)
        other.execute("INSERT INTO t VALUES (2)")  # "database is locked" if the abandoned transaction stayed open
        other.close()
        blocker.close()
        await db.close()

    run(scenario())
