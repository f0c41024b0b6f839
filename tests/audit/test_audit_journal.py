"""Unit tests: the local append-only journal (the embedded audit sink and the spool format)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import orjson
import pytest

from tradewire.core.audit import AuditSink, JournalFile, JournalSink, read_journal, transition_event

TS = 1_764_000_000_000_000_000


def _events(n: int, principal: str = "alice", start: int = 0):
    return [
        transition_event(
            request_id="req-1",
            principal=principal,
            mode="paper",
            stage="QUOTED",
            sequence=i,
            percent=float(i),
            message=f"step {i}",
            ts_ns=TS + i,
        )
        for i in range(start, start + n)
    ]


async def test_journal_sink_writes_and_reads_back_in_order(tmp_path):
    sink = JournalSink(tmp_path / "audit.jsonl")
    assert isinstance(sink, AuditSink)
    await sink.start()
    events = _events(500)
    t0 = time.perf_counter()
    for ev in events:
        sink.emit(ev)
    emit_s = time.perf_counter() - t0
    await sink.flush()
    assert list(sink.iter_events()) == events
    s = sink.stats()
    assert (s.backend, s.rows_written_total, s.queue_depth, s.dropped) == ("journal", 500, 0, 0)
    assert emit_s < 0.5  # emit only hands over; the writer thread does the I/O
    await sink.close()
    # the format is one JSON record per line
    lines = (tmp_path / "audit.jsonl").read_bytes().splitlines()
    assert len(lines) == 500
    assert orjson.loads(lines[0])["event_id"] == events[0].event_id


async def test_journal_appends_across_restarts(tmp_path):
    path = tmp_path / "audit.jsonl"
    for part in range(3):
        sink = JournalSink(path, fsync="always")
        await sink.start()
        for ev in _events(10, start=part * 10):
            sink.emit(ev)
        await sink.close()
    assert [e.columns["sequence"] for e in read_journal(path)] == list(range(30))


async def test_torn_last_line_is_skipped_and_terminated(tmp_path, caplog):
    path = tmp_path / "audit.jsonl"
    first = _events(2)
    JournalFile(path).append(first, fsync=True)
    with open(path, "ab") as fh:  # a crash mid-write leaves half a record
        fh.write(b'{"v":1,"table":"tw_transi')
    assert list(read_journal(path)) == first  # the unterminated line is not returned

    sink = JournalSink(path)
    await sink.start()
    more = _events(2, start=2)
    for ev in more:
        sink.emit(ev)
    await sink.close()
    caplog.set_level(logging.ERROR, logger="tradewire.audit")
    jf = JournalFile(path)
    assert list(jf.iter_events()) == first + more  # new records start on their own line
    assert jf.corrupt.count == 1  # ... and the torn one is reported, not hidden
    assert "not a valid audit record" in caplog.text


async def test_emit_from_other_threads_and_after_close(tmp_path):
    sink = JournalSink(tmp_path / "audit.jsonl")
    await sink.start()
    events = _events(200)
    threads = [
        threading.Thread(target=lambda chunk=events[i::4]: [sink.emit(e) for e in chunk])
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    await sink.close()
    late = _events(1, start=1000)[0]
    sink.emit(late)  # after close: written through, not lost, no exception
    got = list(read_journal(tmp_path / "audit.jsonl"))
    assert sorted(got, key=lambda e: e.columns["sequence"]) == events + [late]


async def test_emit_never_raises(tmp_path):
    sink = JournalSink(tmp_path / "audit.jsonl")
    await sink.start()
    sink.emit("not an event")  # type: ignore[arg-type]  -- logged, not raised
    await sink.close()
    assert list(sink.iter_events()) == []


async def test_flush_is_durable_with_interval_policy(tmp_path):
    sink = JournalSink(tmp_path / "a.jsonl", fsync="interval", fsync_interval_s=60)
    await sink.start()
    for ev in _events(5):
        sink.emit(ev)
    await sink.flush()  # flush() fsyncs whatever the policy
    assert not sink.file.unsynced
    assert len(list(sink.iter_events())) == 5
    await sink.close()
    with pytest.raises(ValueError):
        JournalSink(tmp_path / "b.jsonl", fsync="sometimes")  # type: ignore[arg-type]


async def test_flush_does_not_block_the_event_loop(tmp_path):
    sink = JournalSink(tmp_path / "a.jsonl", fsync="always")
    await sink.start()
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    for ev in _events(2000):
        sink.emit(ev)
    await sink.flush()
    task.cancel()
    await sink.close()
    assert ticks > 0  # the loop kept running while the writer thread wrote


async def test_events_emitted_within_the_batch_window_are_written_in_one_call(tmp_path, monkeypatch):
    # One write (one wake-up of the writer, one hand-off of the GIL) per window, not per event.
    writes: list[int] = []
    append_bytes = JournalFile.append_bytes
    monkeypatch.setattr(JournalFile, "append_bytes",
                        lambda self, data, *, fsync: (writes.append(data.count(b"\n")), append_bytes(self, data, fsync=fsync)))
    sink = JournalSink(tmp_path / "audit.jsonl", batch_window_s=5)
    await sink.start()

    def paced_emits() -> None:  # a trade's events come a little apart: the emitter lets go of the GIL
        for ev in _events(20):
            sink.emit(ev)
            time.sleep(0.001)

    await asyncio.to_thread(paced_emits)
    await sink.flush()
    await sink.close()
    assert writes == [20]
    assert [ev.columns["sequence"] for ev in read_journal(tmp_path / "audit.jsonl")] == list(range(20))


async def test_flush_cuts_the_batch_window_short(tmp_path):
    sink = JournalSink(tmp_path / "audit.jsonl", batch_window_s=60)
    await sink.start()
    sink.emit(_events(1)[0])
    await asyncio.wait_for(sink.flush(), timeout=10)  # not the window's minute
    assert len(list(read_journal(tmp_path / "audit.jsonl"))) == 1
    await asyncio.wait_for(sink.close(), timeout=10)


@pytest.mark.parametrize("replaced", [False, True], ids=["renamed away", "renamed away and replaced"])
async def test_a_journal_rotated_from_outside_is_written_at_its_path_again(tmp_path, replaced):
    """logrotate's default: rename the file, optionally create a new one; the writer must follow
    the path, not keep writing into the renamed file (or a deleted one)."""
    path = tmp_path / "audit.jsonl"
    sink = JournalSink(path)
    await sink.start()
    sink.emit_all(_events(3))
    await sink.flush()
    path.rename(tmp_path / "audit.jsonl.1")
    if replaced:
        path.write_bytes(b"")
    sink.emit_all(_events(2, start=3))
    await sink.close()
    assert [e.columns["sequence"] for e in read_journal(tmp_path / "audit.jsonl.1")] == [0, 1, 2]
    assert [e.columns["sequence"] for e in read_journal(path)] == [3, 4]


def test_rotate_moves_content_atomically(tmp_path):
    jf = JournalFile(tmp_path / "spool.jsonl")
    assert jf.rotate(tmp_path / "seg1") is False  # nothing to move
    jf.append(_events(3), fsync=False)
    assert jf.rotate(tmp_path / "seg1") is True
    assert jf.size() == 0
    jf.append(_events(2, start=3), fsync=True)
    assert [e.columns["sequence"] for e in read_journal(tmp_path / "seg1")] == [0, 1, 2]
    assert [e.columns["sequence"] for e in jf.iter_events()] == [3, 4]
    jf.close()
