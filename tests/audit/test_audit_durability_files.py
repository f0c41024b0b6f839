"""Durability of the audit files (the journal, the spool, the write-ahead file) when what they are
given, or the disk under them, misbehaves: nothing is lost, nothing is written twice, and no line
is left that does not parse."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from support.questdb import eventually, free_ports
from tradewire.core.audit import JournalFile, JournalSink, QuestDBSink, admin_event, read_journal, transition_event
from tradewire.core.audit.journal import count_lines
from tradewire.core.audit.write_ahead import leftovers as write_ahead_leftovers

TS = 1_764_000_000_000_000_000


def _events(n: int, start: int = 0, message: str = "m") -> list:
    return [transition_event(request_id="req-1", principal="alice", mode="paper", stage="QUOTED", sequence=i,
                             percent=1.0, message=message, ts_ns=TS + i * 1_000) for i in range(start, start + n)]


def _undecodable(sequence: int):
    """A row holding text UTF-8 cannot: a lone surrogate, as Python decodes a file name's byte that
    is not UTF-8 (``os.fsdecode(b"caf\\xe9")``) -- a path an administration command records."""
    return admin_event(action="kill_switch_set", actor="root", host="h", store="file", target="live_kill_switch",
                       location=f"/data/caf\udce9-{sequence}/switch", ts_ns=TS + sequence * 1_000)


async def _written(sink: JournalSink, n: int) -> None:
    """Wait (polling, with a deadline) until ``n`` rows are in the file: flush() would wait for good
    on a writer that never gets there."""
    async def probe():
        return sink.stats().rows_written_total >= n

    await eventually(probe, timeout=15, what=f"{n} rows written")


def _lines(path) -> list[dict]:
    """Every line of a file, parsed (fails on one that does not parse)."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_a_row_with_text_utf8_cannot_hold_is_written_escaped_and_holds_up_no_other(tmp_path, caplog):
    # Before: encoding it raised in the writer thread, which kept the whole batch and retried it
    # for good -- that row and every one after it never written, flush() never returning.
    sink = JournalSink(tmp_path / "audit.jsonl")
    await sink.start()
    before, after = _events(3), _events(3, start=10)
    for ev in [*before, _undecodable(5), *after]:
        sink.emit(ev)
    await _written(sink, 7)
    await sink.close()
    rows = _lines(tmp_path / "audit.jsonl")
    assert [r["event_id"] for r in rows] == [e.event_id for e in [*before, _undecodable(5), *after]]
    assert rows[3]["columns"]["location"] == "/data/caf\\udce9-5/switch"  # the byte still told
    assert list(read_journal(tmp_path / "audit.jsonl"))[4:] == after
    assert "not valid UTF-8; written with it escaped" in caplog.text
    assert sink.stats().write_errors_total == 0


def test_an_admin_command_run_on_an_undecodable_path_still_audits_its_change(tmp_path):
    # `tradewire keys create --db <a directory whose name is not UTF-8>/auth.db`: before, the key
    # was made, then the command died on a traceback, exit 1, and the change had no audit row.
    data_dir = os.fsencode(tmp_path) + b"/caf\xe9"
    command = [sys.executable, "-m", "tradewire.gateway.cli", "keys", "create", "--db", data_dir + b"/auth.db",
               "--owner", "erin", "--scopes", "read"]
    done = subprocess.run(command, capture_output=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    rows = _lines(Path(os.fsdecode(data_dir)) / "audit.jsonl")
    assert [(r["symbols"]["action"], r["columns"]["target"]) for r in rows] == [
        ("key_created", done.stdout.decode().strip()[:11])]
    assert rows[0]["columns"]["location"] == f"{tmp_path}/caf\\udce9/auth.db"


@contextmanager
def _disk_full_after(size: int) -> Iterator[None]:
    """Files of this process cannot grow past ``size`` bytes (a write past it fails EFBIG, after
    writing what fits): a disk that fills up, until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


async def test_a_disk_filling_up_mid_write_leaves_no_torn_or_repeated_row(tmp_path):
    # Before: the part of the batch that fitted stayed in the file, the retry wrote the batch again
    # after it -- its first rows twice, and one row glued onto the torn one: a line that does not
    # parse, which makes a spool's replay keep the whole segment aside as corrupt.
    path = tmp_path / "spool.jsonl"
    sink = JournalSink(path, fsync="always", batch_window_s=0.0)
    await sink.start()
    events = _events(200, message="x" * 100)
    per_row = len(orjson.dumps(events[0].to_record())) + 1
    with _disk_full_after(50 * per_row + per_row // 2):  # the 51st row is torn
        for ev in events:
            sink.emit(ev)

        async def failing():
            return sink.stats().write_errors_total >= 1

        await eventually(failing, what="a write to fail on the full disk")
    await _written(sink, len(events))  # room again: the retry writes the rest
    await sink.close()
    rows = _lines(path)
    assert [r["event_id"] for r in rows] == [e.event_id for e in events]


async def test_a_spool_that_cannot_be_written_is_said_in_health_and_the_error_count(tmp_path):
    # Before: health() said the rows were "spooled locally" while they were only in memory, and
    # tradewire_audit_write_errors_total stayed flat: nothing but log lines told of it.
    (port,) = free_ports(1)  # QuestDB down: every row goes to the spool
    sink = QuestDBSink(f"http::addr=127.0.0.1:{port};", spool_path=tmp_path / "spool.jsonl",
                       flush_interval_s=0.01, retry_initial_s=30, write_ahead=False)
    await sink.start()
    with _disk_full_after(0):
        for ev in _events(5):
            sink.emit(ev)

        async def told():
            up, why = sink.health()
            return not up and sink.stats().write_errors_total >= 1 and "cannot be written" in why and why

        why = await eventually(told, what="the failing spool to show")
        assert "5 row(s) held in memory" in why, why

    async def written():
        return sink.health()[1].endswith("spooled locally, replayed when it is back")

    await eventually(written, what="the spool to be written once there is room")
    await sink.close()
    assert list(read_journal(tmp_path / "spool.jsonl")) == _events(5)
    assert "cannot be written" not in sink.health()[1]


async def test_a_write_ahead_file_that_cannot_be_cut_holds_up_no_batch(tmp_path, monkeypatch):
    # Before: the cut's OSError went up into the writer loop after the batch had been taken from
    # the queue -- the batch was gone (neither in QuestDB nor the spool) and flush() never returned.
    (port,) = free_ports(1)  # QuestDB down: every batch goes to the spool
    sink = QuestDBSink(f"http::addr=127.0.0.1:{port};", spool_path=tmp_path / "spool.jsonl",
                       flush_interval_s=0.01, retry_initial_s=30)
    await sink.start()

    def read_only(dest):
        raise OSError(errno.EROFS, "Read-only file system", str(dest))

    monkeypatch.setattr(sink._ahead._journal.file, "rotate", read_only)  # the rename the cut is
    events = _events(50)
    for ev in events:
        sink.emit(ev)

    async def delivered():
        return sink.stats().queue_depth == 0

    await eventually(delivered, timeout=10, what="the batch to be delivered (here: spooled)")
    await sink.flush()
    assert list(read_journal(tmp_path / "spool.jsonl")) == events
    monkeypatch.undo()
    await sink.close()
    assert not (tmp_path / "spool.jsonl.ahead").exists()


async def test_rows_a_killed_run_left_ahead_are_replayed_by_a_run_that_does_not_write_ahead(tmp_path):
    # A gateway killed, then restarted with `[audit] write_ahead = false` (to save its CPU). Before:
    # only a sink writing ahead itself looked for the files a killed one left: the rows stayed there.
    left = tmp_path / "spool.jsonl.ahead"
    JournalFile(left).append(_events(3), fsync=False)
    JournalFile(left.with_name(left.name + ".01795000000000000000")).append(_events(2, start=3), fsync=False)
    (port,) = free_ports(1)
    sink = QuestDBSink(f"http::addr=127.0.0.1:{port};", spool_path=tmp_path / "spool.jsonl",
                       retry_initial_s=30, write_ahead=False)
    await sink.start()
    assert sink.stats().spooled == 5  # in the spool's replay, sent once QuestDB answers
    await sink.close()
    replay = sorted(tmp_path.glob("spool.jsonl.*.replay"))
    assert sorted((e for p in replay for e in read_journal(p)), key=lambda e: e.ts_ns) == _events(5)
    assert not left.exists()


async def test_rows_the_spool_could_not_take_keep_their_write_ahead_copy_for_the_next_start(tmp_path):
    # QuestDB down and the disk full when the gateway stops. Before: the write-ahead segment of the
    # batch was deleted once the batch was handed to the spool -- which could not write it -- and
    # close() deleted the rest: the rows, on disk before the disk filled up, were lost at exit.
    (port,) = free_ports(1)
    conf = f"http::addr=127.0.0.1:{port};"
    sink = QuestDBSink(conf, spool_path=tmp_path / "spool.jsonl", flush_interval_s=60, retry_initial_s=30)
    await sink.start()
    sink._spool._close_timeout_s = 0.5  # (how long close() waits for a spool that cannot be written)
    events = _events(10)
    for ev in events:
        sink.emit(ev)

    async def written_ahead():
        return count_lines(tmp_path / "spool.jsonl.ahead") == 10

    await eventually(written_ahead, what="the write-ahead file to hold the rows")
    with _disk_full_after(0):
        await sink.close()  # the batch goes to a spool that cannot be written
    kept = [e for p in write_ahead_leftovers(tmp_path / "spool.jsonl.ahead") for e in read_journal(p)]
    assert kept == events

    again = QuestDBSink(conf, spool_path=tmp_path / "spool.jsonl", retry_initial_s=30)
    await again.start()
    assert again.stats().spooled == 10  # in its replay, sent once QuestDB answers
    await again.close()


async def test_a_disk_that_takes_nothing_holds_the_close_no_longer_than_it_is_given(tmp_path):
    # Before: a full disk held a QuestDB sink's close 30 s on its spool (and 30 s more joining
    # the writer), far past the shutdown's deadline, whatever timeout the close was given.
    (port,) = free_ports(1)  # QuestDB down: every row goes to the spool
    sink = QuestDBSink(f"http::addr=127.0.0.1:{port};", spool_path=tmp_path / "spool.jsonl",
                       flush_interval_s=0.01, retry_initial_s=30)
    await sink.start()
    with _disk_full_after(0):
        for ev in _events(5):
            sink.emit(ev)
        async def failing():
            return sink.stats().write_errors_total >= 1

        await eventually(failing, what="the spool's writes to fail")
        started = time.monotonic()
        await sink.close(timeout=0.5)
        took = time.monotonic() - started
    assert took < 5, f"close took {took:.1f}s"
