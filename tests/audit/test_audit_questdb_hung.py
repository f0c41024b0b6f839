"""Integration: a QuestDB that hangs (SIGSTOP: it accepts connections and answers nothing).

Start-up does not wait for it, a bounded close() returns on time with every row in the spool,
and a real gateway starts at once and exits within its shutdown deadline. This module's server
(``own_questdb``) is frozen by its tests; each thaws it before it ends.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from support.clients import make_client
from support.gateway_process import GatewayProcess
from support.questdb import eventually
from support.trading import trade, unique
from tradewire.core.audit import QuestDBSink, read_journal, transition_event

TS = 1_764_000_000_000_000_000
DEADLINE_S = 4.0


def _sink(server, tmp_path, **kw) -> QuestDBSink:
    opts = dict(flush_interval_s=0.05, retry_initial_s=0.1, retry_max_s=0.5)
    opts.update(kw)
    return QuestDBSink(server.conf, spool_path=tmp_path / "spool.jsonl", **opts)


def _events(principal: str, n: int):
    return [
        transition_event(request_id="r1", principal=principal, mode="paper", stage="QUOTED", sequence=i,
                         percent=1.0, ts_ns=TS + i * 1_000)
        for i in range(n)
    ]


def _spooled(spool) -> list:
    """Every row in the spool and its replay segments, oldest first."""
    files = sorted(p for p in spool.parent.iterdir()
                   if p.name.startswith(spool.name) and ".rejected" not in p.name)
    return sorted((ev for p in files for ev in read_journal(p)), key=lambda e: e.ts_ns)


async def test_start_does_not_wait_for_a_hung_questdb(own_questdb, tmp_path, principal):
    sink = _sink(own_questdb, tmp_path)
    with own_questdb.frozen():
        t0 = time.monotonic()
        await sink.start()
        assert time.monotonic() - t0 < 0.5
        events = _events(principal, 10)
        for ev in events:
            sink.emit(ev)
        up, why = sink.health()
        assert not up and f"QuestDB at 127.0.0.1:{own_questdb.http_port} not reached yet" in why
        await sink.close(timeout=0.5)
        assert _spooled(sink.spool_path) == events


async def test_a_bounded_close_returns_on_time_with_the_write_in_progress_spooled(
    own_questdb, tmp_path, principal
):
    # no check before the write: the ILP write itself is what hangs
    sink = _sink(own_questdb, tmp_path, verify_interval_s=300, retry_max_s=300)
    await sink.start()

    async def reached():
        return sink.stats().healthy

    await eventually(reached, what="the sink to reach QuestDB")
    with own_questdb.frozen():
        events = _events(principal, 50)
        for ev in events:
            sink.emit(ev)
        with pytest.raises(TimeoutError):  # the write is hanging
            await asyncio.wait_for(asyncio.shield(sink.flush()), 0.5)
        t0 = time.monotonic()
        await sink.close(timeout=1.0)
        took = time.monotonic() - t0
        assert took < 1.5, f"close took {took:.2f}s"
        assert _spooled(sink.spool_path) == events  # nothing lost: replayed at the next start
    # the write that hung may land now too; the replay's duplicates are absorbed by DEDUP
    sink = _sink(own_questdb, tmp_path)
    await sink.start()
    await eventually(reached, what="the new sink to reach QuestDB")

    async def replayed():
        return sink.stats().spooled == 0

    await eventually(replayed, what="the spool to be replayed")
    await sink.close()
    assert await own_questdb.settled_counts("tw_transitions", principal, 50) == (50, 50)


def _gateway(server, workdir) -> GatewayProcess:
    return GatewayProcess(
        workdir,
        extra_config=f"[shutdown]\ndeadline_s = {DEADLINE_S}\nfinal_s = 2.0\n",
        env={"TRADEWIRE_AUDIT__QUESTDB_CONF": server.conf, "TRADEWIRE_AUDIT__FLUSH_INTERVAL_S": "0.05"},
    )


async def _trade(gateway) -> str:
    """One trade (its call, transitions and fill are audited); returns its request id."""
    client = make_client("grpc", gateway)
    request_id = unique("hung-audit")
    try:
        await client.unary("ExecuteTrade", trade(request_id), gateway.key("alice"))
    finally:
        await client.close()
    return request_id


async def _in_questdb(server, request_id: str) -> None:
    async def fill_there():
        return await server.query(f"SELECT count() FROM tw_fills WHERE request_id = '{request_id}'") == [[1]]

    await eventually(fill_there, timeout=60, what=f"the fill of {request_id} in QuestDB")


def _in_spool(gateway, request_id: str) -> bool:
    spooled = _spooled(gateway.workdir / "data" / "audit.spool.jsonl")
    calls = [e for e in spooled if e.table == "tw_requests" and e.columns.get("trade_request_id") == request_id]
    fills = [e for e in spooled if e.table == "tw_fills" and e.columns.get("request_id") == request_id]
    return len(calls) == 1 and len(fills) == 1


async def test_a_gateway_starts_at_once_while_questdb_hangs_and_writes_once_it_answers(
    own_questdb, tmp_path
):
    gateway = _gateway(own_questdb, tmp_path / "gw")
    try:
        with own_questdb.frozen():
            t0 = time.monotonic()
            gateway.start()
            started = time.monotonic() - t0
            request_id = await _trade(gateway)  # served at once; its rows wait for QuestDB
        # without QuestDB the gateway starts in about 2 s here; waiting on it added about 10 s
        assert started < 6.0, f"start-up took {started:.1f}s"
        await _in_questdb(own_questdb, request_id)
    finally:
        assert gateway.stop() == 0


async def test_a_gateway_stops_within_its_deadline_while_an_audit_write_hangs(own_questdb, tmp_path):
    gateway = _gateway(own_questdb, tmp_path / "gw").start()
    try:
        await _in_questdb(own_questdb, await _trade(gateway))
        with own_questdb.frozen():
            request_id = await _trade(gateway)  # its audit write hangs (HTTP timeout: 5 s)
            gateway.terminate()
            signalled = time.monotonic()
            code = await asyncio.to_thread(gateway.wait_exit, DEADLINE_S + 10)
            stopped = time.monotonic() - signalled
    finally:
        if gateway.proc.poll() is None:
            gateway.stop()
    assert code == 0, gateway.log_text()[-3000:]
    assert stopped < DEADLINE_S, f"exited {stopped:.1f}s after SIGTERM"
    assert _in_spool(gateway, request_id)  # nothing lost: replayed at the next start
