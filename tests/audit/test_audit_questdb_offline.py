"""QuestDBSink with no QuestDB listening: everything goes to the spool, nothing blocks or raises."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from support.questdb import eventually, free_ports
from tradewire.core.audit import (
    AuditSink,
    JournalFile,
    JournalSink,
    QuestDBSink,
    open_audit_sink,
    read_journal,
    transition_event,
)
from tradewire.core.audit.questdb_sink import parse_conf

TS = 1_764_000_000_000_000_000


def _events(n: int, start: int = 0):
    return [
        transition_event(
            request_id="req-off",
            principal="offline",
            mode="paper",
            stage="ROUTED",
            sequence=i,
            percent=1.0,
            ts_ns=TS + i,
        )
        for i in range(start, start + n)
    ]


def _dead_conf() -> str:
    (port,) = free_ports(1)  # nothing listens there
    return f"http::addr=127.0.0.1:{port};"


def test_parse_conf():
    assert parse_conf("http::addr=127.0.0.1:9000;") == ("http", {"addr": "127.0.0.1:9000"})
    assert parse_conf("https::addr=h:1;username=u;password=a;;b;") == (
        "https",
        {"addr": "h:1", "username": "u", "password": "a;b"},
    )
    with pytest.raises(ValueError):
        parse_conf("addr=127.0.0.1:9000")
    with pytest.raises(ValueError):
        QuestDBSink("tcp::addr=127.0.0.1:9009;", spool_path="/tmp/x")


def test_factory_picks_the_backend(tmp_path):
    assert isinstance(open_audit_sink(questdb_conf=None, journal_path=tmp_path / "a.jsonl"), JournalSink)
    sink = open_audit_sink(questdb_conf=_dead_conf(), journal_path=tmp_path / "a.jsonl")
    assert isinstance(sink, QuestDBSink) and isinstance(sink, AuditSink)
    assert sink.spool_path == tmp_path / "a.spool.jsonl"


async def test_unreachable_questdb_spools_everything(tmp_path):
    sink = QuestDBSink(
        _dead_conf(), spool_path=tmp_path / "spool.jsonl", flush_interval_s=0.05, retry_initial_s=30
    )
    await sink.start()  # does not fail: it starts degraded
    assert sink.stats().healthy is False
    events = _events(300)
    t0 = time.perf_counter()
    for ev in events:
        sink.emit(ev)
    assert time.perf_counter() - t0 < 0.5
    await sink.flush()  # returns once every row is fsynced in the spool
    s = sink.stats()
    assert (s.spooled, s.spooled_total, s.rows_written_total, s.dropped) == (300, 300, 0, 0)
    assert s.write_errors_total == 0  # connection refused at start: counted as down, not per row
    assert list(read_journal(sink.spool_path)) == events
    await sink.close()
    assert list(read_journal(sink.spool_path)) == events  # kept for the next start


async def test_full_queue_spills_to_the_spool_without_blocking(tmp_path, caplog):
    sink = QuestDBSink(
        _dead_conf(),
        spool_path=tmp_path / "spool.jsonl",
        queue_max=5,
        batch_size=5,
        flush_interval_s=0.05,
        retry_initial_s=30,
    )
    await sink.start()
    events = _events(50)
    t0 = time.perf_counter()
    for ev in events:  # no await in between: the writer task cannot drain the queue
        sink.emit(ev)
    assert time.perf_counter() - t0 < 0.5
    s = sink.stats()
    assert (s.queue_depth, s.spilled_total, s.dropped) == (5, 45, 0)
    assert "queue full" in caplog.text  # visible, not silent
    await sink.flush()
    assert sorted(read_journal(sink.spool_path), key=lambda e: e.ts_ns) == events
    await sink.close()


async def test_leftover_spool_and_segments_are_counted_at_start(tmp_path):
    spool = tmp_path / "spool.jsonl"
    JournalFile(spool.with_name("spool.jsonl.00000000000000000001.replay")).append(
        _events(4), fsync=True
    )
    JournalFile(spool).append(_events(3, start=4), fsync=True)
    sink = QuestDBSink(_dead_conf(), spool_path=spool, retry_initial_s=30)
    await sink.start()
    assert sink.stats().spooled == 7
    assert await sink.replay_spool() is False  # still down: nothing lost, nothing removed
    await sink.close()
    # a failed attempt rotates nothing: the old segment, then the spool, oldest first
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "spool.jsonl",
        "spool.jsonl.00000000000000000001.replay",
    ]
    rows = [*read_journal(tmp_path / "spool.jsonl.00000000000000000001.replay"), *read_journal(spool)]
    assert rows == _events(7)  # oldest first, nothing lost


async def test_close_without_start_and_concurrent_close_keep_everything(tmp_path):
    sink = QuestDBSink(_dead_conf(), spool_path=tmp_path / "a.jsonl", retry_initial_s=30)
    events = _events(3)
    for ev in events:
        sink.emit(ev)  # before start(): queued
    await sink.close()
    assert list(read_journal(tmp_path / "a.jsonl")) == events
    assert sink.stats().queue_depth == 0

    sink = QuestDBSink(_dead_conf(), spool_path=tmp_path / "b.jsonl", retry_initial_s=30)
    await sink.start()
    for ev in events:
        sink.emit(ev)
    await asyncio.gather(sink.close(), sink.close())
    late = _events(1, start=99)[0]
    sink.emit(late)  # after close: straight to the spool file
    assert list(read_journal(tmp_path / "b.jsonl")) == events + [late]


async def test_health_says_why_rows_are_not_written_and_how_many_wait(tmp_path):
    conf = _dead_conf()
    sink = QuestDBSink(conf, spool_path=tmp_path / "spool.jsonl", flush_interval_s=0.05, retry_initial_s=30)
    where = re.escape(f"QuestDB at {conf[len('http::addr='):-1]}")
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"  # UTC
    up, why = sink.health()
    assert not up and re.fullmatch(
        rf"{where} not reached yet \(since {stamp}\); 0 row\(s\) spooled locally meanwhile", why
    ), why
    await sink.start()
    for ev in _events(3):
        sink.emit(ev)
    await sink.flush()

    async def refused():
        return "not answering" in sink.health()[1]

    await eventually(refused, what="the first attempt to fail")
    up, why = sink.health()
    assert not up and re.fullmatch(
        rf"{where} not answering since {stamp} \(connect: .*\); "
        r"3 row\(s\) spooled locally, replayed when it is back",
        why,
    ), why
    await sink.close(timeout=1.0)

    journal = JournalSink(tmp_path / "audit.jsonl")
    await journal.start()
    assert journal.health() == (True, f"journal {tmp_path / 'audit.jsonl'}")
    await journal.close(timeout=1.0)
