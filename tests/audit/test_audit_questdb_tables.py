"""Integration: the audit tables on a QuestDB that lost them, or holds them in the wrong shape.

A server that comes back empty gets the right tables before a row goes in; a table ILP made up
(no DEDUP, designated timestamp ``timestamp``) is set aside, made anew, and its rows copied back;
a table the sink cannot fix is a refusal -- logged once, reported by health(), rows spooled --
not an outage retried in silence. Each test has this module's server (``own_questdb``) to
itself: it empties or reconfigures it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from operator import attrgetter

from support.questdb import eventually
from questdb import Sender, TimestampNanos
from tradewire.core.audit import (
    TABLES,
    AuditEvent,
    QuestDBSink,
    auth_attempt_event,
    fill_event,
    read_journal,
    request_event,
    transition_event,
)

TS = 1_764_000_000_000_000_000
RIGHT = {name: ["ts", True, True] for name in TABLES}  # designated timestamp, WAL, DEDUP


def _sink(server, tmp_path, **kw) -> QuestDBSink:
    opts = dict(flush_interval_s=0.05, retry_initial_s=0.1, retry_max_s=0.5)
    opts.update(kw)
    return QuestDBSink(server.conf, spool_path=tmp_path / "spool.jsonl", **opts)


def _one_per_table(principal: str) -> list[AuditEvent]:
    return [
        request_event(method="ExecuteTrade", protocol="grpc", principal=principal, request_id="r1",
                      correlation_id="c1", code="OK", latency_us=120, ts_ns=TS),
        auth_attempt_event(method="ExecuteTrade", protocol="grpc", principal=principal, key_prefix="tw_ab12",
                           peer="127.0.0.1:4000", outcome="success", correlation_id="c1", request_id="r1",
                           ts_ns=TS),
        transition_event(request_id="r1", principal=principal, mode="paper", stage="QUOTED", sequence=1,
                         percent=10.0, message="quoted", ts_ns=TS),
        fill_event(request_id="r1", principal=principal, mode="paper",
                   input_mint="So11111111111111111111111111111111111111112",
                   output_mint="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", amount_in=10, amount_out=20,
                   fee_lamports=5000, signature=None, slot=None, ts_ns=TS),
    ]


def _write_over_ilp(server, events: list[AuditEvent]) -> None:
    """What a plain ILP writer (the sink before it checked) leaves in a server without the
    tables: tables QuestDB makes up from the rows."""
    with Sender.from_conf(server.conf, auto_flush=False) as sender:
        for ev in events:
            buf = sender.new_buffer()
            buf.row(ev.table, symbols=dict(ev.symbols), columns={**ev.columns, "event_id": ev.event_id},
                    at=TimestampNanos(ev.ts_ns))
            sender.flush(buf, transactional=True)


async def _shapes(server) -> dict[str, list]:
    rows = await server.query("SELECT table_name, designatedTimestamp, walEnabled, dedup FROM tables() "
                              "WHERE table_name LIKE 'tw_%' AND table_name NOT LIKE '%_aside_%'")
    return {name: shape for name, *shape in rows}


async def _drop_every_table(server) -> None:
    for (name,) in await server.query("SELECT table_name FROM tables()"):
        await server.query(f"DROP TABLE '{name}'")


async def _emit_all(sink: QuestDBSink, principal: str) -> list[AuditEvent]:
    """One event per table, emitted and flushed (to QuestDB or the spool); the events."""
    events = _one_per_table(principal)
    for ev in events:
        sink.emit(ev)
    await sink.flush()
    return events


async def _settled_everywhere(server, events: list[AuditEvent]) -> None:
    """Each event is in its table exactly once."""
    principal = events[0].symbols["principal"]
    for ev in events:
        assert await server.settled_counts(ev.table, principal, 1) == (1, 1), ev.table


async def _healthy(sink: QuestDBSink, timeout: float = 30) -> None:
    async def probe():
        return sink.stats().healthy

    await eventually(probe, timeout=timeout, what="the sink to take rows")


async def test_a_server_back_empty_gets_the_right_tables_before_a_row_goes_in(
    own_questdb, tmp_path, principal
):
    # retry_max_s long: no idle check runs while the server restarts, only the check before a write
    sink = _sink(own_questdb, tmp_path, retry_max_s=300)
    await sink.start()
    await _healthy(sink)
    await asyncio.to_thread(own_questdb.restart_empty)
    try:
        events = await _emit_all(sink, principal)
        assert await _shapes(own_questdb) == RIGHT
        await _settled_everywhere(own_questdb, events)
        assert sink.health() == (True, f"QuestDB at 127.0.0.1:{own_questdb.http_port}")
    finally:
        await sink.close()


async def test_a_table_ilp_made_up_is_set_aside_made_anew_and_its_rows_copied_back(
    own_questdb, tmp_path, principal, caplog
):
    await _drop_every_table(own_questdb)
    earlier = _one_per_table(principal + "-earlier")[::3]  # tw_requests and tw_fills
    await asyncio.to_thread(_write_over_ilp, own_questdb, earlier)
    for ev in earlier:
        await own_questdb.settled_counts(ev.table, principal + "-earlier", 1)
    assert (await _shapes(own_questdb))["tw_fills"] == ["timestamp", True, False]

    sink = _sink(own_questdb, tmp_path)
    await sink.start()
    try:
        events = await _emit_all(sink, principal)
        assert await _shapes(own_questdb) == RIGHT
        await _settled_everywhere(own_questdb, events)
        await _settled_everywhere(own_questdb, earlier)  # copied back into the right tables
        assert sink.health()[0] and sink.stats().spooled == 0, sink.health()
    finally:
        await sink.close()

    aside = [name for (name,) in await own_questdb.query(
        "SELECT table_name FROM tables() WHERE table_name LIKE '%_aside_%' ORDER BY table_name")]
    assert [name.split("_aside_")[0] for name in aside] == ["tw_fills", "tw_requests"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in aside:  # each named, with what was wrong and where its rows are
        [said] = [w for w in warnings if f"renamed it to {name}" in w]
        assert "designated timestamp is 'timestamp'" in said and "copied its 1 audit row(s) back" in said


async def test_a_table_the_sink_cannot_fix_is_a_refusal_logged_once_not_an_outage(
    own_questdb, tmp_path, principal, caplog
):
    caplog.set_level(logging.DEBUG, logger="tradewire.audit")
    await _drop_every_table(own_questdb)
    await asyncio.to_thread(_write_over_ilp, own_questdb, _one_per_table(principal + "-earlier")[3:])
    # every name tw_fills could be set aside to in the next minute is taken: QuestDB refuses the RENAME
    now = int(time.time())
    blockers = [f"tw_fills_aside_{datetime.fromtimestamp(t, UTC):%Y%m%dT%H%M%SZ}"
                for t in range(now - 1, now + 60)]
    for name in blockers:
        await own_questdb.query(f"CREATE TABLE {name} (x INT)")

    sink = _sink(own_questdb, tmp_path, retry_max_s=0.2)
    await sink.start()
    try:
        events = await _emit_all(sink, principal)

        async def tried_again():  # the first attempt and three more, each saying why
            return len([r for r in caplog.records if "tw_fills" in r.getMessage()]) >= 4

        await eventually(tried_again, timeout=30, what="the sink to try again")
        table = attrgetter("table")
        assert sorted(read_journal(sink.spool_path), key=table) == sorted(events, key=table)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "not an outage" in errors[0], errors
        assert not [r for r in caplog.records if "unavailable" in r.getMessage()]
        up, why = sink.health()
        assert not up and "refuses the audit rows since" in why, why
        assert "table tw_fills could not be fixed (its designated timestamp is 'timestamp', not 'ts')" in why
        assert "renaming it aside was refused: cannot rename table, new name is already in use" in why
        assert "4 row(s) spooled locally" in why

        for name in blockers:  # someone fixes it: the sink gets on by itself, nothing lost
            await own_questdb.query(f"DROP TABLE {name}")
        await _healthy(sink)

        async def spool_empty():
            return sink.stats().spooled == 0

        await eventually(spool_empty, what="the spool to be replayed")
        assert await _shapes(own_questdb) == RIGHT
        await _settled_everywhere(own_questdb, events)
    finally:
        await sink.close()


async def test_rows_for_a_table_gone_since_the_check_are_written_when_questdb_creates_no_tables(
    own_questdb, tmp_path, principal
):
    await asyncio.to_thread(own_questdb.restart_empty, QDB_LINE_AUTO_CREATE_NEW_TABLES="false")
    # a check before each write would hide what this is about: the write itself finds the table gone
    sink = _sink(own_questdb, tmp_path, verify_interval_s=300, retry_max_s=300)
    await sink.start()
    try:
        await _healthy(sink)
        await own_questdb.query("DROP TABLE tw_transitions")
        events = await _emit_all(sink, principal)
        s = sink.stats()
        assert (s.rows_written_total, s.rejected_total, s.spooled) == (4, 0, 0)
        assert await _shapes(own_questdb) == RIGHT
        await _settled_everywhere(own_questdb, events)
        assert not sink.rejected_path.exists() or not sink.rejected_path.read_text()
    finally:
        await sink.close()
        await asyncio.to_thread(own_questdb.restart_empty)
