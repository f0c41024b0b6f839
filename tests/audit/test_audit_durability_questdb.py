"""Durability of the audit trail in a real QuestDB: rows whose text is hostile or unusual land
once each, as written, and forge nothing; rows keep landing exactly once through many restarts
of the server, clean or killed, mid-burst."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import time

import httpx

from support.questdb import QuestDBServer, eventually
from tradewire.core.audit import QuestDBSink, fill_event, read_journal, request_event, transition_event

TS = 1_764_000_000_000_000_000


def _sink(server: QuestDBServer, tmp_path, **kw) -> QuestDBSink:
    opts = dict(flush_interval_s=0.05, retry_initial_s=0.1, retry_max_s=0.5)
    opts.update(kw)
    return QuestDBSink(server.conf, spool_path=tmp_path / "spool.jsonl", **opts)


async def _query(server: QuestDBServer, sql: str) -> list[list]:
    """``server.query``, taking the control characters QuestDB's JSON leaves unescaped (a NUL)."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
        resp = await client.get("/exec", params={"query": sql})
    body = json.loads(resp.text, strict=False)
    assert resp.status_code == 200 and "error" not in body, body
    return body.get("dataset", [])


async def _rows_by_id(server: QuestDBServer, table: str, where: str, expected: int) -> dict[str, list]:
    """The rows of ``table`` matching ``where``, by event id, once the WAL is applied and there
    are ``expected`` of them; a doubled row fails."""

    async def probe():
        if not await server.wal_applied(table):
            return None
        rows = await _query(server, f"SELECT event_id, principal, request_id, message FROM {table} WHERE {where}")
        return rows if len(rows) >= expected else None

    rows = await eventually(probe, timeout=60, what=f"{expected} rows in {table}")
    ids = collections.Counter(r[0] for r in rows)
    assert max(ids.values()) == 1, f"rows written twice: {[i for i, n in ids.items() if n > 1]}"
    return {r[0]: r[1:] for r in rows}


# Text a caller, an identity provider or an upstream may put in an id, a principal or a message:
# ILP's own separators and escapes, line breaks (a forged second row), control characters, other
# scripts, the largest values.
HOSTILE = [
    "a,b=c d", "x\ny", "x\r\ny", "\n", "tab\there", "bs\\", "bs\\\n", 'q"q', "=", ",", " ", "\\",
    "é中😀", "\u2028\u2029", "\ufeff", "\x01\x02\x1b[31m\x7f\x85", "\ufffe\uffff\U0010ffff",
    "tw_transitions,principal=forged,mode=paper,stage=FILLED request_id=\"x\",sequence=1i 1\n",
    "m" * 100_000,
]


async def test_hostile_text_in_ids_principals_and_messages_lands_as_written_and_forges_nothing(
        questdb, tmp_path, principal):
    events = [
        transition_event(request_id=text, principal=f"{principal}{text}", mode="paper", stage="QUOTED", sequence=i,
                         percent=1.0, message=text, ts_ns=TS + i * 1_000)
        for i, text in enumerate(HOSTILE)
    ]
    sink = _sink(questdb, tmp_path)
    await sink.start()
    for ev in events:
        sink.emit(ev)
    await sink.flush()
    s = sink.stats()
    assert (s.rows_written_total, s.rejected_total, s.spooled) == (len(events), 0, 0)
    await sink.close()
    rows = await _rows_by_id(questdb, "tw_transitions", f"principal LIKE '{principal}%'", len(events))
    assert rows == {e.event_id: [e.symbols["principal"], e.columns["request_id"], e.columns["message"]]
                    for e in events}
    assert await questdb.query("SELECT count() FROM tw_transitions WHERE principal = 'forged'") == [[0]]


async def test_text_questdb_cannot_store_lands_escaped_instead_of_refused(questdb, tmp_path, principal):
    # Before: a NUL in a symbol made QuestDB refuse the row, and a lone surrogate (a file name's
    # undecodable byte) made the client refuse it -- kept aside in the .rejected file, never in
    # QuestDB; and the rejected row could not even be written there (see the journal's test).
    events = [
        transition_event(request_id="r0", principal=f"{principal}\x00nul", mode="paper", stage="QUOTED", sequence=0,
                         percent=1.0, message="nul in a symbol", ts_ns=TS),
        transition_event(request_id="r1", principal=principal, mode="paper", stage="QUOTED", sequence=1,
                         percent=1.0, message="caf\udce9", ts_ns=TS + 1_000),
        transition_event(request_id="r2", principal=principal, mode="paper", stage="QUOTED", sequence=2,
                         percent=1.0, message="nul \x00 in a value is stored as it is", ts_ns=TS + 2_000),
        *[transition_event(request_id=f"ok{i}", principal=principal, mode="paper", stage="QUOTED", sequence=10 + i,
                           percent=1.0, message="fine", ts_ns=TS + (10 + i) * 1_000) for i in range(20)],
    ]
    sink = _sink(questdb, tmp_path)
    await sink.start()
    for ev in events:
        sink.emit(ev)

    async def delivered():
        return sink.stats().queue_depth == 0 and sink.stats().spooled == 0

    await eventually(delivered, timeout=30, what="the rows to be delivered")
    s = sink.stats()
    assert (s.rows_written_total, s.rejected_total) == (len(events), 0)
    await sink.close()
    rows = await _rows_by_id(questdb, "tw_transitions", f"principal LIKE '{principal}%'", len(events))
    assert rows[events[0].event_id] == [f"{principal}\\u0000nul", "r0", "nul in a symbol"]
    assert rows[events[1].event_id] == [principal, "r1", "caf\\udce9"]
    assert rows[events[2].event_id] == [principal, "r2", "nul \x00 in a value is stored as it is"]
    assert not sink.rejected_path.exists() or not list(read_journal(sink.rejected_path))


async def test_rows_land_exactly_once_through_many_restarts_clean_or_killed(own_questdb, tmp_path, principal):
    sink = _sink(own_questdb, tmp_path, batch_size=200, queue_max=1_000)
    await sink.start()
    emitted: list = []
    stop = asyncio.Event()

    async def burst() -> None:  # calls keep coming, whatever QuestDB does
        n = 0
        while not stop.is_set():
            for _ in range(20):
                ev = request_event(method="ExecuteTrade", protocol="grpc", principal=principal, request_id=f"r{n}",
                                   correlation_id=f"c{n}", code="OK", latency_us=n, ts_ns=TS + n * 1_000)
                sink.emit(ev)
                emitted.append(ev)
                n += 1
            await asyncio.sleep(0.01)

    async def some_rows_go_in() -> None:
        before = sink.stats().rows_written_total

        async def more():
            return sink.stats().rows_written_total > before

        await eventually(more, timeout=60, what="rows to go in")

    producer = asyncio.create_task(burst())
    try:
        for kill in (False, True, False, True):
            await some_rows_go_in()
            if kill:  # no chance to answer what it took (a write it may have committed)
                os.kill(int((own_questdb.root / "questdb.pid").read_text()), signal.SIGKILL)
            await asyncio.to_thread(own_questdb.stop)
            await asyncio.to_thread(own_questdb.start)
        await some_rows_go_in()
    finally:
        stop.set()
        await producer

    async def replayed():
        return sink.stats().spooled == 0 and sink.stats().queue_depth == 0

    await eventually(replayed, timeout=120, what="the spool to be replayed")
    s = sink.stats()
    await sink.close()
    assert s.spooled_total > 0 and s.replayed_total > 0 and s.rejected_total == 0  # the outages were felt
    assert await own_questdb.settled_counts("tw_requests", principal, len(emitted), timeout=120) == (
        len(emitted), len(emitted))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".replay", ".corrupt"))]


async def test_a_running_gateway_sends_the_row_a_stopped_command_left_in_its_write_ahead_file(
        questdb, tmp_path):
    # An administration command stopped (Ctrl-C, a kill) while it waited for QuestDB leaves its row
    # only in its write-ahead file, admin-audit.spool.jsonl.ahead. Before: a running gateway took
    # the commands' spool and its replay segments, not that file: the row waited for the next
    # command, if one ever came.
    from tradewire.core.audit import JournalFile, admin_event
    from tradewire.core.config import load_settings
    from tradewire.gateway.assembly import build_audit_sink

    config = tmp_path / "tradewire.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n[audit]\nquestdb_conf = "{questdb.conf}"\n')
    settings = load_settings(config, env={})
    row = admin_event(action="key_revoked", actor="op", host="h", store="sqlite", target=f"tw_{time.time_ns()}")
    left = tmp_path / "data" / "admin-audit.spool.jsonl.ahead"
    JournalFile(left).append([row], fsync=False)
    sink = build_audit_sink(settings)  # the gateway's, as it serves
    await sink.start()
    try:
        async def landed():
            try:
                return await questdb.query(f"SELECT action FROM tw_admin WHERE event_id = '{row.event_id}'")
            except AssertionError:  # the sink has not made the table yet
                return None

        assert await eventually(landed, what="the stopped command's row in tw_admin") == [["key_revoked"]]
        assert not left.exists()
    finally:
        await sink.close(timeout=5)


async def test_a_table_with_a_column_of_another_type_is_set_aside_not_fed_rows_it_refuses(
        own_questdb, tmp_path, principal, caplog):
    # A tw_fills made by hand or by another version: `slot` VARCHAR, `fee_lamports` INT. Before:
    # the sink added what was missing and kept writing, QuestDB refused every fill (a VARCHAR takes
    # no integer), each one was bisected out into the .rejected file -- none in QuestDB, health
    # saying all is well.
    await _query(own_questdb, "DROP TABLE IF EXISTS tw_fills")
    await _query(own_questdb,
                 "CREATE TABLE tw_fills (principal SYMBOL, mode SYMBOL, input_mint SYMBOL, output_mint SYMBOL, "
                 "request_id VARCHAR, amount_in VARCHAR, amount_out STRING, fee_lamports INT, slot VARCHAR, "
                 "event_id VARCHAR, ts TIMESTAMP) TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, event_id)")
    await _query(own_questdb, f"INSERT INTO tw_fills (principal, request_id, slot, event_id, ts) "
                              f"VALUES ('{principal}', 'old', 'slot 7', 'old-row', '2025-11-24T00:00:00Z')")
    await own_questdb.settled_counts("tw_fills", principal, 1)  # (applied: the copy back sees it)
    fills = [fill_event(request_id=f"r{i}", principal=principal, mode="live", input_mint="A", output_mint="B",
                        amount_in=10, amount_out=20, fee_lamports=5_000 + 2**40 * i, signature="sig", slot=123 + i,
                        ts_ns=TS + i * 1_000) for i in range(3)]
    sink = _sink(own_questdb, tmp_path)
    await sink.start()
    for ev in fills:
        sink.emit(ev)
    await sink.flush()
    s = sink.stats()
    await sink.close()
    assert (s.rows_written_total, s.rejected_total, s.spooled) == (3, 0, 0)
    assert "slot is VARCHAR, not LONG" in caplog.text and "fee_lamports is INT, not LONG" in caplog.text
    assert await own_questdb.settled_counts("tw_fills", principal, 4) == (4, 4)  # the old row copied back too
    rows = await _query(own_questdb, f"SELECT request_id, fee_lamports, slot FROM tw_fills "
                                     f"WHERE principal = '{principal}' ORDER BY ts")
    assert rows == [["old", None, None], *[[f"r{i}", 5_000 + 2**40 * i, 123 + i] for i in range(3)]]
    aside = await _query(own_questdb, "SELECT table_name FROM tables() WHERE table_name LIKE 'tw_fills_aside_%'")
    assert len(aside) == 1  # the table as it was, kept
    assert await _query(own_questdb, f"SELECT slot FROM {aside[0][0]} WHERE event_id = 'old-row'") == [["slot 7"]]
