"""Integration: QuestDBSink against a real QuestDB server (session fixture ``questdb``).

Rows are counted over HTTP /exec (no PostgreSQL driver is installed). WAL tables apply
asynchronously, so every count waits -- polling with a deadline -- until the table's WAL
is fully applied and the expected rows are there, then checks rows == distinct event ids.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

from support.questdb import QuestDBServer, eventually
from questdb import QuestDBError, Sender, TimestampNanos
from tradewire.core.audit import (
    JournalFile,
    QuestDBSink,
    auth_attempt_event,
    fill_event,
    read_journal,
    request_event,
    transition_event,
)

TS = 1_764_000_000_000_000_000  # 2025-11-24, fixed: events carry their own time


def _sink(questdb: QuestDBServer, tmp_path, **kw) -> QuestDBSink:
    opts = dict(flush_interval_s=0.05, retry_initial_s=0.1, retry_max_s=0.5)
    opts.update(kw)
    return QuestDBSink(questdb.conf, spool_path=tmp_path / "spool.jsonl", **opts)


def _transitions(principal: str, n: int, start: int = 0, request_id: str = "req-1"):
    return [
        transition_event(
            request_id=request_id,
            principal=principal,
            mode="paper",
            stage="QUOTED",
            sequence=i,
            percent=i / 10,
            message=f"step {i}",
            ts_ns=TS + i * 1_000,  # distinct microseconds
        )
        for i in range(start, start + n)
    ]


def _iso_us(ts_ns: int) -> str:
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_ns // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _spool_empty(sink: QuestDBSink, timeout: float = 60) -> None:
    async def probe():
        return sink.stats().spooled == 0

    await eventually(probe, timeout=timeout, what="the spool to be replayed")


async def _reached(sink: QuestDBSink, timeout: float = 30) -> None:
    async def probe():
        return sink.health()[0]

    await eventually(probe, timeout=timeout, what="the sink to reach QuestDB")


async def test_rows_land_exactly_once_in_all_four_tables(questdb, tmp_path, principal):
    n = 50
    events = {
        "tw_requests": [
            request_event(
                method="SubmitSwap",
                protocol="grpc",
                principal=principal,
                request_id=f"req-{i}",
                correlation_id=f"corr-{i}",
                code="OK",
                latency_us=100 + i,
                ts_ns=TS + i * 1_000,
            )
            for i in range(n)
        ],
        "tw_auth_attempts": [
            auth_attempt_event(
                method="SubmitSwap",
                protocol="http",
                principal=principal,
                key_prefix="tw_ab12",
                peer="127.0.0.1:40000",
                outcome="success" if i % 2 else "failure",
                reason=None if i % 2 else "BAD_SIGNATURE",
                correlation_id=f"corr-{i}",
                request_id=f"call-{i}",
                ts_ns=TS + i * 1_000,
            )
            for i in range(n)
        ],
        "tw_transitions": _transitions(principal, n),
        "tw_fills": [
            fill_event(
                request_id=f"req-{i}",
                principal=principal,
                mode="live",
                input_mint="So11111111111111111111111111111111111111112",
                output_mint="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
                amount_in=2**64 - 1 - i,
                amount_out=1_500_000 + i,
                fee_lamports=5_000 + i,
                signature=f"sig{i}",
                slot=1_000 + i,
                ts_ns=TS + i * 1_000,
            )
            for i in range(n)
        ],
    }
    sink = _sink(questdb, tmp_path)
    await sink.start()
    for table_events in zip(*events.values()):
        for ev in table_events:
            sink.emit(ev)
    await sink.flush()
    s = sink.stats()
    assert (s.rows_written_total, s.spooled, s.write_errors_total, s.dropped) == (4 * n, 0, 0, 0)
    await sink.close()

    for table in events:
        assert await questdb.settled_counts(table, principal, n) == (n, n), table

    # values survive as written: u64 amounts as exact strings, the event's own timestamp
    fill = events["tw_fills"][7]
    rows = await questdb.query(
        "SELECT amount_in, amount_out, fee_lamports, signature, slot, mode, ts FROM tw_fills "
        f"WHERE principal = '{principal}' AND event_id = '{fill.event_id}'"
    )
    assert rows == [
        [str(2**64 - 8), "1500007", 5007, "sig7", 1007, "live", _iso_us(fill.ts_ns)]
    ]
    rows = await questdb.query(
        f"SELECT count() FROM tw_auth_attempts WHERE principal = '{principal}' "
        "AND outcome = 'failure' AND reason = 'BAD_SIGNATURE'"
    )
    assert rows == [[n // 2]]


async def test_replaying_the_same_events_twice_leaves_one_row_each(questdb, tmp_path, principal):
    events = _transitions(principal, 200)
    for attempt in range(2):  # two sinks (a restart), the same events
        sink = _sink(questdb, tmp_path / f"s{attempt}")
        await sink.start()
        for ev in events:
            sink.emit(ev)
        await sink.flush()
        await sink.close()
    assert await questdb.settled_counts("tw_transitions", principal, 200) == (200, 200)

    sink = _sink(questdb, tmp_path / "s2")  # and once more, in one batch with new rows
    await sink.start()
    for ev in events + _transitions(principal, 10, start=200):
        sink.emit(ev)
    await sink.close()
    assert await questdb.settled_counts("tw_transitions", principal, 210) == (210, 210)


async def test_signals_reaching_the_writer_mid_write_are_not_an_outage(questdb, tmp_path, principal):
    # A signal delivered to the worker thread inside the client's socket call fails it with
    # EINTR (py-spy's samples do this 100+ times a second); every row must still go straight in.
    sink = _sink(questdb, tmp_path, flush_interval_s=0.01)
    previous = signal.signal(signal.SIGUSR2, lambda *_: None)  # a handler, so the signal interrupts
    stop = threading.Event()

    def interrupt_the_writer() -> None:
        while not stop.wait(0.005):  # 200 a second, a profiler's rate
            thread = sink._worker._thread
            if thread is not None and thread.ident is not None:
                signal.pthread_kill(thread.ident, signal.SIGUSR2)

    interrupter = threading.Thread(target=interrupt_the_writer, daemon=True)
    await sink.start()
    interrupter.start()
    try:
        for batch in range(20):
            for ev in _transitions(principal, 500, start=batch * 500):
                sink.emit(ev)
            await sink.flush()
    finally:
        stop.set()
        interrupter.join()
        stats = sink.stats()
        # Only once the writer thread has ended: a signal sent to it that it has not been
        # scheduled to take yet would otherwise meet the default action, which ends the process.
        await sink.close()
        writer = sink._worker._thread
        if writer is not None:
            writer.join(10)
            assert not writer.is_alive()
        signal.signal(signal.SIGUSR2, previous)
    assert (stats.write_errors_total, stats.spooled_total, stats.rows_written_total) == (0, 0, 10_000)
    assert await questdb.settled_counts("tw_transitions", principal, 10_000) == (10_000, 10_000)


async def test_rows_a_killed_process_left_in_its_write_ahead_file_are_replayed_once(questdb, tmp_path, principal):
    events = _transitions(principal, 300)
    first = _sink(questdb, tmp_path, flush_interval_s=60)  # nothing goes out before the "kill"
    await first.start()
    for ev in events[:200]:
        first.emit(ev)
    await first._ahead._journal.flush()  # what a process killed 20 ms later has on disk
    first._task.cancel()  # dropped without close(): as if SIGKILLed (its writer stops with it)
    await asyncio.gather(first._task, return_exceptions=True)
    first._worker.shutdown(wait=False)
    # (the file may also hold rows QuestDB has: those 100 went in another way)
    sender_side = _sink(questdb, tmp_path / "other", write_ahead=False)
    await sender_side.start()
    for ev in events[:100]:
        sender_side.emit(ev)
    await sender_side.close()

    second = _sink(questdb, tmp_path)
    await second.start()
    for ev in events[200:]:
        second.emit(ev)
    await _spool_empty(second)
    await second.close()
    assert await questdb.settled_counts("tw_transitions", principal, 300) == (300, 300)


async def test_questdb_stopped_mid_run_then_restarted_ends_with_the_same_counts(
    questdb, tmp_path, principal
):
    sink = _sink(questdb, tmp_path)
    await sink.start()
    first = _transitions(principal, 100)
    for ev in first:
        sink.emit(ev)
    await sink.flush()
    assert await questdb.settled_counts("tw_transitions", principal, 100) == (100, 100)

    await asyncio.to_thread(questdb.stop)
    try:
        second = _transitions(principal, 100, start=100)
        t0 = time.perf_counter()
        for ev in second:
            sink.emit(ev)
        assert time.perf_counter() - t0 < 0.5  # the request path does not notice
        await sink.flush()  # durable in the spool
        s = sink.stats()
        assert s.healthy is False and s.spooled == 100
        up, why = sink.health()  # found by a write, or by the idle check before it
        assert not up and "not answering since" in why and "100 row(s) spooled locally" in why
        spooled = sorted(
            [e for p in tmp_path.iterdir() if p.name.startswith("spool.jsonl") for e in read_journal(p)],
            key=lambda e: e.ts_ns,
        )
        assert spooled == second
    finally:
        await asyncio.to_thread(questdb.start)

    await _spool_empty(sink)  # replayed by the sink on its own once QuestDB answers
    third = _transitions(principal, 50, start=200)
    for ev in third:
        sink.emit(ev)
    await sink.flush()
    s = sink.stats()
    assert s.healthy and s.replayed_total >= 100 and s.dropped == 0
    await sink.close()
    assert await questdb.settled_counts("tw_transitions", principal, 250) == (250, 250)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".replay")]


async def test_full_queue_spills_to_the_spool_and_still_lands_once(questdb, tmp_path, principal):
    sink = _sink(questdb, tmp_path, queue_max=10, batch_size=10)
    await sink.start()
    events = _transitions(principal, 500)
    t0 = time.perf_counter()
    for ev in events:  # no await in between: the queue cannot drain, the rest must spill
        sink.emit(ev)
    assert time.perf_counter() - t0 < 0.5
    s = sink.stats()
    assert (s.queue_depth, s.spilled_total, s.dropped) == (10, 490, 0)
    await sink.flush()
    await _spool_empty(sink)
    await sink.close()
    assert await questdb.settled_counts("tw_transitions", principal, 500) == (500, 500)
    assert sink.stats().replayed_total == 490


async def test_a_replay_interrupted_by_a_crash_is_redone_without_duplicates(
    questdb, tmp_path, principal
):
    events = _transitions(principal, 300)
    # before the "crash", the replay had written the first half of the segment
    sink = _sink(questdb, tmp_path / "before")
    await sink.start()
    for ev in events[:150]:
        sink.emit(ev)
    await sink.close()
    # what the crash left behind: the whole segment, and newer rows in the spool itself
    spool = tmp_path / "spool.jsonl"
    JournalFile(spool.with_name("spool.jsonl.00000000000000000001.replay")).append(events, fsync=True)
    newer = _transitions(principal, 50, start=300)
    JournalFile(spool).append(newer, fsync=True)

    sink = _sink(questdb, tmp_path)
    await sink.start()
    assert sink.stats().spooled == 350
    await _spool_empty(sink)
    await sink.close()
    assert await questdb.settled_counts("tw_transitions", principal, 350) == (350, 350)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == []  # spool consumed


class _RejectingSender:
    """Delegates to the real Sender, but answers a flush holding ``poison`` with a real
    rejection error captured from the server."""

    def __init__(self, real: Sender, poison: bytes, error: QuestDBError) -> None:
        self._real, self._poison, self._error = real, poison, error

    def flush(self, buf, clear=True, transactional=False):
        if self._poison in bytes(buf):
            raise self._error
        return self._real.flush(buf, clear=clear, transactional=transactional)

    def __getattr__(self, name):
        return getattr(self._real, name)


async def test_a_row_questdb_refuses_is_isolated_and_kept(questdb, tmp_path, principal):
    # a genuine rejection from this server: a string into a LONG column of a scratch table
    await questdb.query(
        "CREATE TABLE IF NOT EXISTS tw_test_scratch (n LONG, ts TIMESTAMP) "
        "TIMESTAMP(ts) PARTITION BY DAY WAL"
    )

    def capture() -> QuestDBError:
        with Sender.from_conf(questdb.conf, auto_flush=False) as s:
            buf = s.new_buffer()
            buf.row("tw_test_scratch", columns={"n": "not a number"}, at=TimestampNanos(TS))
            try:
                s.flush(buf, transactional=True)
            except QuestDBError as exc:
                return exc
        raise AssertionError("the server accepted a string for a LONG column")

    error = await asyncio.to_thread(capture)
    assert '"code":"invalid"' in str(error)

    events = _transitions(principal, 20)
    poison = events[7]
    sink = _sink(questdb, tmp_path)
    await sink.start()
    await _reached(sink)  # the writer task made its sender
    sink._sender = _RejectingSender(sink._sender, poison.event_id.encode(), error)  # type: ignore[assignment]
    for ev in events:
        sink.emit(ev)
    await sink.flush()
    s = sink.stats()
    assert (s.rows_written_total, s.rejected_total, s.spooled, s.healthy) == (19, 1, 0, True)
    assert s.write_errors_total >= 1
    await sink.close()
    assert await questdb.settled_counts("tw_transitions", principal, 19) == (19, 19)
    kept = list(read_journal(sink.rejected_path))
    assert kept == [poison]
    assert "cast error" in sink.rejected_path.read_text()
