"""The journal's segments written through a shared memory mapping: the zero-filled space a segment is given ahead
is never read as entries, a segment an older version wrote with `os.write` replays the same, a torn copy and a
page a machine crash lost cost only the lines they touch, the window moves along a segment and across rotations
without losing a byte (fsync mode too), a disk that refuses the space is a refused write, and what a killed
process copied into its mapping is replayed."""
from __future__ import annotations

import errno
import logging
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_proxy.metering import journal as journal_module
from edge_proxy.metering.journal import Journal, split_lines
from edge_proxy.metering.opened import opened_line
from edge_proxy.metering.record import to_json_line

from .gateway_process import ROOT
from .test_journal import Captured, attempt, dead_worker, die, names, open_journal, record, replay


def refuse(fd: int, start: int, end: int) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def entries_of(path: Path) -> list[bytes]:
    return [line + b"\n" for line in split_lines(path.read_bytes(), path)]


def test_a_segment_is_given_its_space_ahead_and_readers_ignore_the_zeros_after_its_entries(tmp_path, caplog):
    lines = [to_json_line(record(f"req_{i}")) for i in range(5)]
    [segment] = dead_worker(tmp_path, lines, segment_bytes=1 << 20)
    data = segment.read_bytes()
    written = sum(map(len, lines))
    window = Journal(tmp_path, segment_bytes=1 << 20).window_bytes
    assert len(data) == window > written, "the file is as long as its first window, not as its entries"
    assert data[:written] == b"".join(lines) and data[written:] == bytes(len(data) - written)
    commit = Captured()
    with caplog.at_level(logging.WARNING):
        q = replay(tmp_path, commit)
    assert set(commit.records) == {f"req_{i}" for i in range(5)} and q.replayed == 5
    assert "torn" not in caplog.text, "the zeros are space not yet written, not a torn line"
    assert names(tmp_path) == [] and not Path(str(segment) + ".bad").exists()


def test_a_segment_an_older_version_wrote_with_os_write_replays(tmp_path):
    old = tmp_path / "journal-local-4242x0a0b0c-00000001.jnl"  # no zeros after its last line
    old.write_bytes(opened_line(attempt("req_A")) + to_json_line(record("req_A", output_tokens=4))
                    + opened_line(attempt("req_B")) + to_json_line(record("req_C")))
    commit = Captured()
    q = replay(tmp_path, commit)
    assert set(commit.records) == {"req_A", "req_B", "req_C"}
    assert commit.records["req_A"].output_tokens == 4 and commit.records["req_B"].error_reason == "gateway_crashed"
    assert (q.replayed, q.cut) == (2, 1) and names(tmp_path) == []


@pytest.mark.parametrize("mapped", [True, False], ids=["a mapped segment (zeros after)", "an older segment"])
def test_a_line_a_crash_tore_is_ignored_whether_zeros_follow_it_or_not(tmp_path, caplog, mapped):
    lines = [to_json_line(record("req_1")), opened_line(attempt("req_2"))]
    if mapped:
        [segment] = dead_worker(tmp_path, lines)
    else:
        segment = tmp_path / "journal-local-4242x0a0b0c-00000001.jnl"
        segment.write_bytes(b"".join(lines))
    with open(segment, "r+b") as f:  # the copy of req_2's final record was cut short by the crash
        f.seek(sum(map(len, lines)))
        f.write(to_json_line(record("req_2"))[:57])
    commit = Captured()
    with caplog.at_level(logging.WARNING):
        q = replay(tmp_path, commit)
    assert set(commit.records) == {"req_1", "req_2"} and commit.records["req_2"].error_reason == "gateway_crashed"
    assert q.cut == 1 and "torn line (57 bytes" in caplog.text
    assert not Path(str(segment) + ".bad").exists()


def test_a_page_a_machine_crash_lost_costs_only_the_lines_it_covered(tmp_path):
    lines = [to_json_line(record(f"req_{i}")) for i in range(6)]
    [segment] = dead_worker(tmp_path, lines)
    starts = [sum(map(len, lines[:i])) for i in range(7)]
    with open(segment, "r+b") as f:  # zeros where req_1 and the start of req_3 were: never written back
        f.seek(starts[1])
        f.write(bytes(starts[2] - starts[1]))
        f.seek(starts[3])
        f.write(bytes(20))
    commit = Captured()
    replay(tmp_path, commit)
    assert set(commit.records) == {"req_0", "req_2", "req_4", "req_5"}, "a whole line after the zeros is read"
    assert Path(str(segment) + ".bad").read_bytes() == lines[3][20:], "a line cut by them is kept aside"


@pytest.mark.parametrize("fsync", [False, True], ids=["page cache", "fsync (msync of each line's pages)"])
def test_the_window_moves_along_a_segment_and_across_rotations_without_losing_a_byte(tmp_path, fsync):
    j = Journal(tmp_path, segment_bytes=256 << 10, fsync=fsync)
    j.window_bytes = 16 << 10  # smaller than it is, so a segment takes many windows
    j.open()
    written: dict[str, list[bytes]] = {}
    windows: dict[str, set[int]] = {}
    longest = 0
    for i in range(3000):
        big = {"blob": "b" * (100 << 10)} if i == 150 else {"n": str(i)}  # one line longer than a window
        line = to_json_line(record(f"req_{i}", metadata=big))
        seg = j.append(f"req_{i}", line)
        assert seg is not None
        written.setdefault(seg.path.name, []).append(line)
        longest = max(longest, len(line))
        now = j.current  # the segment appended to next: seg, or a new one when seg is full
        assert now is not None and now.window is not None and now.window_at <= now.size <= now.window_end
        assert len(now.window) <= max(j.window_bytes, longest + 8192), "never more than a window (or a line) mapped"
        assert [s for s in j.segments if s.window is not None] == [now], "a rotated segment is unmapped"
        windows.setdefault(now.path.name, set()).add(now.window_at)
    assert len(written) >= 3 and min(len(w) for w in windows.values()) > 1
    assert j.errors == 0
    for name, lines in written.items():
        assert entries_of(tmp_path / name) == lines
    j.close()


def test_a_disk_that_refuses_a_windows_space_is_a_refused_write_and_the_opened_entry_stays_its_word(tmp_path):
    """A real refusal: the kernel's file size limit (RLIMIT_FSIZE) refuses the zeros of a segment's next window
    (EFBIG), as a full disk would (ENOSPC)."""
    j = open_journal(tmp_path, segment_bytes=1 << 20)
    limit = j.window_bytes + (64 << 10)  # a segment's second window crosses it; a new segment's first does not
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    finals: dict[str, bool] = {}  # request id -> its final record reached the journal
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        for i in range(10_000):
            rid = f"req_{i}"
            j.opened(rid, opened_line(attempt(rid)))
            finals[rid] = j.append(rid, to_json_line(record(rid))) is not None
            if j.errors:
                break
        first = j.segments[0]
        assert first.closed and first is not j.current, "the segment the disk refused is not written again"
        for k in range(i + 1, i + 6):  # the next write starts a new segment, from its first byte: the limit allows it
            rid = f"req_{k}"
            j.opened(rid, opened_line(attempt(rid)))
            finals[rid] = j.append(rid, to_json_line(record(rid))) is not None
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert j.errors == 1 and len(j.segments) == 2
    assert first.path.stat().st_size <= limit
    die(j)
    commit = Captured()
    replay(tmp_path, commit)
    assert set(commit.records) == set(finals), "every attempt is billed: by its final record or as cut"
    cut = {rid for rid, r in commit.records.items() if r.error_reason == "gateway_crashed"}
    assert cut == {rid for rid, journaled in finals.items() if not journaled}
    assert len(cut) <= 1


def test_a_disk_that_refuses_the_first_window_stops_the_start(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "_allocate", refuse)
    with pytest.raises(OSError, match="No space left"):
        Journal(tmp_path).open()
    assert list(tmp_path.iterdir()) == [], "no segment is left half made"


def test_a_segment_rotated_while_the_disk_refuses_is_a_refused_write(tmp_path, monkeypatch):
    j = open_journal(tmp_path, segment_bytes=4096)
    monkeypatch.setattr(journal_module, "_allocate", refuse)
    segs = [j.append(f"req_{i}", to_json_line(record(f"req_{i}"))) for i in range(40)]
    assert None in segs and j.errors >= 1, "past the first window, the disk's refusal is counted"
    assert not list(tmp_path.glob(".*.tmp")), "a segment the disk refused at its start is not left half made"
    monkeypatch.undo()
    seg = j.append("req_after", to_json_line(record("req_after")))
    assert seg is not None and seg is j.current and seg.path.exists(), "the disk takes writes again: a new segment"


def test_what_a_killed_process_copied_into_its_mapping_is_replayed(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from edge_proxy.metering.journal import Journal
        from edge_proxy.metering.record import RequestRecord, to_json_line
        j = Journal({str(tmp_path)!r})
        j.open()
        for i in range(40000):
            r = RequestRecord(request_id=f"req_{{i}}", created_at="t", merchant_id="m", input_tokens=i)
            j.append(r.request_id, to_json_line(r))
        print("ready", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        child.kill()
        child.wait()
    [segment] = names(tmp_path)
    assert len(split_lines((tmp_path / segment).read_bytes(), tmp_path)) == 40000
    assert (tmp_path / segment).stat().st_size > 2 << 20, "its window moved along the segment twice at least"
    commit = Captured()
    q = replay(tmp_path, commit)
    assert q.replayed == 40000 and all(commit.records[f"req_{i}"].input_tokens == i for i in range(40000))
    assert names(tmp_path) == []
