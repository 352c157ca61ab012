"""Nothing is lost: the log queue and the request log under real faults."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import sqlite3
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from edge_proxy.log_sinks import open_log_sink
from edge_proxy.log_sinks.spill import SpillDir
from edge_proxy.metering.log_queue import LogQueue
from edge_proxy.metering.record import RequestRecord, now_iso

from .gateway_process import GatewayProcess, base_env

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def record(i: int, merchant: str = "mer_test") -> RequestRecord:
    return RequestRecord(request_id=f"req_fault_{i:06d}", created_at=now_iso(), merchant_id=merchant,
                         provider="openai", model="gpt-4o-mini", input_tokens=10, output_tokens=5)


def count_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM requests").fetchone()[0]


def run(coro):
    return asyncio.run(coro)


# -- the queue against a real SQLite file -----------------------------------------------------------------

def test_a_locked_store_is_retried_then_spilled_then_replayed(tmp_path):
    db = tmp_path / "log.db"

    async def scenario():
        sink = open_log_sink(f"sqlite:///{db}")
        await sink.open()
        q = LogQueue(sink, SpillDir(tmp_path / "spill"), batch_size=10, max_age=0.01,
                     spill_after=0.3, replay_every=0.1)
        q.start()
        # another process-like connection takes the write lock and keeps it
        blocker = sqlite3.connect(db, isolation_level=None, timeout=0.1)
        blocker.execute("PRAGMA busy_timeout=0")
        blocker.execute("BEGIN EXCLUSIVE")
        await sink.db.execute("PRAGMA busy_timeout=50")
        for i in range(25):
            q.put(record(i))
        await asyncio.sleep(1.0)
        assert q.write_failures > 0
        assert q.spilled == 25 and q.written == 0
        assert SpillDir(tmp_path / "spill").pending() >= 1
        blocker.execute("ROLLBACK")
        blocker.close()
        deadline = time.monotonic() + 5
        while q.replayed < 25 and time.monotonic() < deadline:  # the idle writer retries the spill by itself
            await asyncio.sleep(0.05)
        await q.stop()
        await sink.close()
        return q

    q = run(scenario())
    assert q.replayed == 25
    with sqlite3.connect(db) as conn:
        ids = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
    assert {f"req_fault_{i:06d}" for i in range(25)} <= ids
    assert SpillDir(tmp_path / "spill").pending() == 0


def test_a_full_queue_spills_instead_of_dropping(tmp_path):
    db = tmp_path / "log.db"

    async def scenario():
        sink = open_log_sink(f"sqlite:///{db}")
        await sink.open()
        q = LogQueue(sink, SpillDir(tmp_path / "spill"), max_size=10, batch_size=5,
                     max_age=0.01)
        # no writer running yet: the queue fills, the rest overflows to disk
        for i in range(30):
            q.put(record(i))
        await asyncio.sleep(0.05)
        assert q.spilled == 20 and q.dropped == 0
        q.start()  # the writer replays spilled segments when it starts, then writes the queue
        await q.stop()
        await sink.close()
        return q

    q = run(scenario())
    assert (q.written, q.replayed) == (10, 20)
    assert count_rows(db) == 30
    assert SpillDir(tmp_path / "spill").pending() == 0


def test_replaying_a_spilled_segment_twice_never_duplicates(tmp_path):
    db = tmp_path / "log.db"
    spill = SpillDir(tmp_path / "spill")
    segment = spill.write([record(i) for i in range(7)])
    copy = segment.read_bytes()

    async def replay_once():
        sink = open_log_sink(f"sqlite:///{db}")
        await sink.open()
        q = LogQueue(sink, spill)
        await q._replay()
        await sink.close()
        return q.replayed

    assert run(replay_once()) == 7
    (spill.path / segment.name).write_bytes(copy)  # the same segment again (a crash before it was deleted)
    assert run(replay_once()) == 7
    assert count_rows(db) == 7
    assert spill.pending() == 0


def test_a_corrupt_spill_line_is_kept_aside_not_lost(tmp_path):
    spill = SpillDir(tmp_path / "spill")
    segment = spill.write([record(1)])
    with open(segment, "ab") as fh:
        fh.write(b"{not a record\n")
    [claimed] = spill.claim()
    assert [r.request_id for r in spill.read(claimed)] == ["req_fault_000001"]
    assert Path(str(claimed) + ".bad").read_bytes() == b"{not a record\n"


# -- a real gateway under load ----------------------------------------------------------------------------

def _load(gw: GatewayProcess, n: int, workers: int = 8, codes: list[int] | None = None) -> list[str]:
    """n requests from several threads; returns the request ids of the ones answered 200."""
    def one(_):
        try:
            r = httpx.post(gw.url + "/providers/openai/v1/chat/completions", json=CHAT,
                           headers={"Authorization": f"Bearer {gw.secret_key}"}, timeout=10)
        except httpx.TransportError:
            return None
        if codes is not None:
            codes.append(r.status_code)
        return r.headers.get("x-lava-request-id") if r.status_code == 200 else None
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return [rid for rid in pool.map(one, range(n)) if rid]


def test_sigterm_under_load_drains_the_queue_before_exit(fake, tmp_path):
    env = base_env(tmp_path / "g.db", fake.url, {"EDGE_PROXY_LOG_FLUSH_SECONDS": "30",
                                                  "EDGE_PROXY_LOG_BATCH_SIZE": "100000"})
    gw = GatewayProcess(env, workers=2).start(tmp_path)
    answered: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(_load, gw, 400)
        time.sleep(0.5)
        gw.stop(signal.SIGTERM)
        answered = future.result(timeout=60)
    assert answered, "some requests must have been answered before shutdown"
    with sqlite3.connect(tmp_path / "g.db") as conn:
        logged = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
    spilled = {r.request_id for seg in (tmp_path / "spill").glob("*.jsonl") for r in SpillDir.read(seg)}
    assert set(answered) <= logged | spilled
    assert not (set(answered) - logged), "with the store up, the drain writes everything"


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
        while not list((tmp_path / "spill").glob("*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list((tmp_path / "spill").glob("*.jsonl")), "records must be on disk while PostgreSQL is down"
    finally:
        private_postgres.start_server()
    after = _load(gw, 10)  # traffic wakes the writer, which replays once the store answers
    have = _wait_pg(url, before + during + after, timeout=30)
    assert set(before + during + after) <= have


def test_a_segment_claimed_by_a_dead_worker_is_replayed(tmp_path):
    spill = SpillDir(tmp_path / "spill")
    segment = spill.write([record(1)])
    dead = segment.with_name(segment.name + ".replaying-999999999")  # no such pid
    segment.rename(dead)
    [claimed] = spill.claim()
    assert claimed.name.endswith(f".replaying-{os.getpid()}")
    assert [r.request_id for r in spill.read(claimed)] == ["req_fault_000001"]
