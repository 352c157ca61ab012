"""The journal's rules, in-process: rotation, deletion after commit, claims by flock, replay of a dead worker's
segments (its opened attempts without a final record billed as cut), torn lines, and reservations that stay held
while the store is down."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_proxy.billing.engine import Reservation
from edge_proxy.log_sinks import open_log_sink
from edge_proxy.metering.journal import Journal, store_id
from edge_proxy.metering.log_queue import LogQueue
from edge_proxy.metering.opened import opened_line
from edge_proxy.metering.record import RequestRecord, from_json_line, now_iso, to_json_line

from .gateway_process import ROOT
from .inprocess import InProcess
from .test_log_faults import sink_commit

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def record(rid: str, **fields) -> RequestRecord:
    return RequestRecord(**{"request_id": rid, "created_at": now_iso(), "merchant_id": "mer_j", "provider": "openai",
                            "model": "gpt-4o-mini", "status_code": 200, "input_tokens": 10, "output_tokens": 5,
                            **fields})


def attempt(rid: str, body_bytes: int = 401, **principal) -> SimpleNamespace:
    """An Exchange as `opened_line` reads it, right before its attempt is sent."""
    who = {"merchant_id": "mer_j", "customer_id": "cus_1", "meter_slug": "chat", "provider_key": None,
           "spend_key": SimpleNamespace(spend_key_id="spk_1"), "billing": SimpleNamespace(payer_kind="customer"),
           **principal}
    return SimpleNamespace(
        request_id=rid, principal=SimpleNamespace(**who), metadata={"n": "7"},
        reservation=Reservation(SimpleNamespace(hold_id="w1:customer:cus_1"), 12345,  # type: ignore[arg-type]
                                SimpleNamespace(hold_id="w1:merchant:mer_j"), 678),  # type: ignore[arg-type]
        svc=SimpleNamespace(settings=SimpleNamespace(region="eu")),
        attempt=SimpleNamespace(provider=SimpleNamespace(name="openai"), model="gpt-4o-mini", stream=True,
                                target=SimpleNamespace(path="/v1/chat/completions?api-version=1"),
                                body=b"x" * body_bytes, free=False))


class Captured:
    """A commit step that keeps what it was given (and can be told to fail its next calls)."""

    def __init__(self) -> None:
        self.records: dict[str, RequestRecord] = {}
        self.calls = 0
        self.fail_calls: set[int] = set()

    async def __call__(self, request_ids: list[str], lines: list[bytes]) -> None:
        self.calls += 1
        if self.calls in self.fail_calls:
            raise sqlite3.OperationalError("database is locked")
        for line in lines:
            r = from_json_line(line)
            self.records[r.request_id] = r


def open_journal(path: Path, **kw) -> Journal:
    j = Journal(path, **kw)
    j.open()
    return j


def die(j: Journal) -> None:
    """The worker dies: its files close and its mappings go, and their flocks with them (a mapping holds its file
    open)."""
    for seg in j.segments:
        seg.unmap()
        os.close(seg.fd)


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("journal-*.jnl"))


def price(r: RequestRecord) -> None:
    r.cost_nanos, r.priced = r.input_tokens * 1000, True


# -- a live worker's segments ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fsync", [False, True], ids=["page cache", "fsync"])
def test_segments_rotate_by_size_and_each_goes_once_its_records_are_committed(tmp_path, fsync):
    j = open_journal(tmp_path, segment_bytes=4096, fsync=fsync)
    segs = [j.append(f"req_{i}", to_json_line(record(f"req_{i}"))) for i in range(60)]
    made = len(set(map(id, segs)))
    assert made >= 3 and len(names(tmp_path)) == made  # rotated, every segment still waiting for its commit
    first = [s for s in segs if s is segs[0]]
    j.committed(first[:-1])
    assert len(names(tmp_path)) == made, "a segment stays while one record of it is uncommitted"
    j.committed(first[-1:])
    assert len(names(tmp_path)) == made - 1
    j.committed(s for s in segs if s is not segs[0])
    assert names(tmp_path) == [j.current.path.name]  # the segment appended to stays
    j.close()
    assert names(tmp_path) == []


def test_with_a_sync_interval_what_was_written_reaches_the_disk_that_often(tmp_path):
    async def scenario() -> None:
        j = open_journal(tmp_path, sync_every=0.02)
        syncing = asyncio.get_running_loop().create_task(j.keep_synced())
        seg = j.append("req_1", to_json_line(record("req_1")))
        assert seg is not None and seg.synced == 0
        deadline = time.monotonic() + 5
        while seg.synced < seg.size and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        syncing.cancel()
        assert seg.synced == seg.size

    asyncio.run(scenario())


def test_the_record_that_fills_a_segment_stays_on_disk_until_it_is_committed(tmp_path):
    j = open_journal(tmp_path, segment_bytes=4096)
    for i in range(100):  # each committed at once: the segment a record fills has nothing else pending
        seg = j.append(f"req_{i}", to_json_line(record(f"req_{i}")))
        assert seg is not None and seg.path.exists(), f"req_{i} is not on disk before its commit"
        j.committed([seg])
    assert len(names(tmp_path)) == 1


def test_a_segment_with_an_opened_entry_stays_until_that_attempts_final_record_is_journaled(tmp_path):
    j = open_journal(tmp_path, segment_bytes=4096)
    j.opened("req_A", opened_line(attempt("req_A")))
    first = j.current
    segs = []
    while j.current is first:  # fill and rotate the segment holding the opened entry
        segs.append(j.append(f"req_{len(segs)}", to_json_line(record(f"req_{len(segs)}"))))
    j.committed(segs)
    assert first.path.exists(), "its attempt is still in flight: the opened entry is all a crash would leave"
    j.append("req_A", to_json_line(record("req_A")))  # the attempt ends, in a later segment
    assert not first.path.exists()


def test_a_live_workers_segments_cannot_be_claimed_and_a_killed_ones_can(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from edge_proxy.metering.journal import Journal, store_id
        from edge_proxy.metering.record import RequestRecord, to_json_line
        j = Journal({str(tmp_path)!r}, segment_bytes=4096)
        j.open()
        for i in range(120):
            j.append(f"req_{{i}}", to_json_line(RequestRecord(request_id=f"req_{{i}}", created_at="t", merchant_id="m")))
        print("ready", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n"
        assert len(names(tmp_path)) >= 2
        assert Journal(tmp_path).claim_dead() == [], "a live worker's segments are locked"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        [claim] = Journal(tmp_path).claim_dead()
        assert [p.name for p in claim.paths] == names(tmp_path)
        assert Journal(tmp_path).claim_dead() == [], "a claimed worker is locked by its claimer"
        claim.release()
    finally:
        child.kill()
        child.wait()


def test_two_flushers_of_one_batch_take_each_record_off_its_segment_once(tmp_path):
    """A shutdown's drain can run beside a writer task that outlived its cancellation: both commit the same
    batch (idempotent), and each record must still leave memory, and its segment's count, once."""
    async def scenario() -> None:
        j = open_journal(tmp_path)
        gate = asyncio.Event()

        async def slow_commit(request_ids: list[str], lines: list[bytes]) -> None:
            await gate.wait()
        q = LogQueue(j, slow_commit, batch_size=10)
        for i in range(10):
            q.put(record(f"req_{i}"))
        first, second = asyncio.ensure_future(q._flush_one()), asyncio.ensure_future(q._flush_one())
        await asyncio.sleep(0)
        gate.set()
        assert await first and await second
        assert q.depth == 0 and j.current is not None and j.current.pending == 0

    asyncio.run(scenario())


def test_a_dead_workers_segments_are_replayed_only_into_their_own_database(tmp_path):
    j = open_journal(tmp_path, store=store_id("postgresql://u:old@db.internal:5432/gateway"))
    j.append("req_1", to_json_line(record("req_1")))
    die(j)
    assert Journal(tmp_path, store=store_id("sqlite:///other.db")).claim_dead() == []
    [claim] = Journal(tmp_path, store=store_id("postgresql://u:rotated@db.internal:5432/gateway")).claim_dead()
    claim.release()


# -- replaying a dead worker -------------------------------------------------------------------------------------

def dead_worker(path: Path, lines: list[bytes], segment_bytes: int = 16 << 20) -> list[Path]:
    j = open_journal(path, segment_bytes=segment_bytes)
    for line in lines:
        if line.startswith(b"["):
            j.opened(json.loads(line)[0], line)
        else:
            j.append(json.loads(line)["request_id"], line)
    made = [s.path for s in j.segments]
    die(j)
    return made


def replay(path: Path, commit, batch_size: int = 500) -> LogQueue:
    q = LogQueue(Journal(path), commit, price=price, batch_size=batch_size)
    asyncio.run(q._replay_dead())
    return q


def test_a_dead_workers_attempt_without_a_final_record_is_billed_as_cut_and_the_rest_as_written(tmp_path):
    dead_worker(tmp_path, [
        opened_line(attempt("req_A")), to_json_line(record("req_A", output_tokens=9)),  # finished
        opened_line(attempt("req_B", body_bytes=401)),                                   # in flight at the crash
        to_json_line(record("req_C")),                                                   # refused before sending
        opened_line(attempt("req_D")),
    ] + [to_json_line(record(f"req_pad_{i}")) for i in range(30)] + [
        to_json_line(record("req_D", output_tokens=3)),                                  # ended a segment later
    ], segment_bytes=4096)
    commit = Captured()
    q = replay(tmp_path, commit)
    got = commit.records
    assert set(got) == {"req_A", "req_B", "req_C", "req_D"} | {f"req_pad_{i}" for i in range(30)}
    assert (got["req_A"].output_tokens, got["req_D"].output_tokens) == (9, 3)
    cut = got["req_B"]
    assert (cut.outcome, cut.error_reason, cut.usage_source, cut.status_code) == (
        "error", "gateway_crashed", "estimated", 200)
    assert (cut.input_tokens, cut.output_tokens) == (100, 0)  # 401 body bytes / 4
    assert (cut.merchant_id, cut.customer_id, cut.meter_slug, cut.payer, cut.spend_key_id) == (
        "mer_j", "cus_1", "chat", "customer", "spk_1")
    assert (cut.hold_id, cut.reserved_nanos, cut.endpoint, cut.stream, cut.metadata) == (
        "w1:customer:cus_1", 12345, "/v1/chat/completions", True, {"n": "7"})
    assert (cut.merchant_hold_id, cut.merchant_reserved_nanos, cut.region, cut.free) == (
        "w1:merchant:mer_j", 678, "eu", False)
    assert cut.priced and cut.cost_nanos == 100_000  # priced before it is billed: never free
    assert (q.replayed, q.cut) == (33, 1)
    assert names(tmp_path) == []


def test_a_torn_last_line_is_ignored_and_every_whole_line_replayed(tmp_path, caplog):
    [segment] = dead_worker(tmp_path, [to_json_line(record("req_1")), opened_line(attempt("req_2"))])
    with open(segment, "ab") as f:
        f.write(to_json_line(record("req_2"))[:57])  # the process died in the middle of this write
    commit = Captured()
    with caplog.at_level(logging.WARNING):
        q = replay(tmp_path, commit)
    assert set(commit.records) == {"req_1", "req_2"}
    assert commit.records["req_2"].error_reason == "gateway_crashed"  # its final record never made it whole
    assert q.cut == 1 and "torn line" in caplog.text
    assert not Path(str(segment) + ".bad").exists() and not segment.exists()


def test_a_replay_that_fails_midway_gives_the_worker_back_and_a_second_one_bills_nothing_twice(tmp_path):
    db = tmp_path / "log.db"
    journal = tmp_path / "journal"
    dead_worker(journal, [to_json_line(record(f"req_{i}")) for i in range(7)])

    async def replay_into_sqlite(fail_calls: set[int]) -> LogQueue:
        sink = open_log_sink(f"sqlite:///{db}")
        await sink.open()
        write = sink_commit(sink)
        calls = [0]

        async def commit(request_ids, lines):
            calls[0] += 1
            if calls[0] in fail_calls:
                raise sqlite3.OperationalError("database is locked")
            await write(request_ids, lines)
        q = LogQueue(Journal(journal), commit, batch_size=3)
        await q._replay_dead()
        await sink.close()
        return q

    first = asyncio.run(replay_into_sqlite({2}))  # the first batch lands, the second fails
    assert first.replayed == 0 and first.write_failures == 1
    assert len(names(journal)) == 1, "the segment stays, unlocked, for the next try"
    second = asyncio.run(replay_into_sqlite(set()))
    assert second.replayed == 7 and names(journal) == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT request_id) FROM requests").fetchone() == (7, 7)


# -- the store is down: records wait in the journal and keep their reservations ------------------------------------

def test_a_record_that_cannot_be_committed_keeps_its_reservation_until_it_is(tmp_path):
    async def scenario() -> None:
        async with InProcess(tmp_path, None, {"EDGE_PROXY_LOG_SPILL_AFTER": "0.2",
                                              "EDGE_PROXY_PROVIDER_KEY_OPENAI": "sk-test",
                                              "EDGE_PROXY_UPSTREAM_OPENAI": "http://127.0.0.1:9/v1"}) as gw:
            svc = gw.svc
            first = await gw.call("POST", "/providers/openai/v1/chat/completions", body=CHAT, key=gw.secret_key)
            assert first.status == 502  # nothing listens upstream: billed 0, but reserved and logged all the same
            await gw.drain()
            assert svc.billing.inflight == {}
            await svc.log_sink.db.execute("PRAGMA busy_timeout=20")
            blocker = sqlite3.connect(tmp_path / "edge-proxy.db", isolation_level=None, timeout=0.1)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                answer = await gw.call("POST", "/providers/openai/v1/chat/completions", body=CHAT,
                                       key=gw.secret_key)
                rid = answer.header("x-lava-request-id")
                deadline = time.monotonic() + 5
                while svc.log_queue.spilled == 0 and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                assert svc.log_queue.spilled == 1 and svc.log_queue.depth == 0  # out of memory, in the journal
                assert rid in svc.billing.inflight, "its reservation stays held while it is not committed"
                assert svc.log_queue.failing_for() > 0.2
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            deadline = time.monotonic() + 10
            while rid in svc.billing.inflight and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert rid not in svc.billing.inflight and svc.log_queue.failing_for() == 0
            assert await svc.log_sink.get(gw.merchant_id, rid) is not None

    asyncio.run(scenario())


def test_a_journal_directory_that_cannot_be_written_stops_the_start(tmp_path):
    (tmp_path / "file").write_text("")

    async def scenario() -> None:
        gw = InProcess(tmp_path, None, {"EDGE_PROXY_SPILL_DIR": str(tmp_path / "file" / "journal")})
        with pytest.raises(Exception, match="EDGE_PROXY_SPILL_DIR"):
            await gw.__aenter__()
        await gw.app.stop()

    asyncio.run(scenario())


def test_an_opened_line_holds_every_field_in_order(monkeypatch):
    """opened_line unpacks the reservation once: each field still in its place, with both holds, with none (a quote
    of nothing), and for a merchant with its own key and no spend key."""
    from edge_proxy.billing.engine import NOTHING
    from edge_proxy.metering import opened
    monkeypatch.setattr(opened.time, "time", lambda: 1767225600.5)
    assert opened_line(attempt("req_O")) == (
        b'["req_O",1767225600.5,"mer_j","cus_1","chat","customer","managed","spk_1","w1:customer:cus_1",12345,'
        b'"w1:merchant:mer_j",678,"openai","gpt-4o-mini","/v1/chat/completions?api-version=1",true,401,false,"eu",'
        b'{"n":"7"}]\n')
    ex = attempt("req_P", body_bytes=3, customer_id=None, meter_slug=None, provider_key="sk-own", spend_key=None,
                 billing=None)
    ex.reservation = NOTHING
    assert opened_line(ex) == (
        b'["req_P",1767225600.5,"mer_j",null,null,"merchant","unmanaged",null,null,0,null,0,"openai","gpt-4o-mini",'
        b'"/v1/chat/completions?api-version=1",true,3,false,"eu",{"n":"7"}]\n')
    ex.reservation = Reservation(SimpleNamespace(hold_id="w1:merchant:mer_j"), 9)  # type: ignore[arg-type]
    assert b',"w1:merchant:mer_j",9,null,0,' in opened_line(ex)
