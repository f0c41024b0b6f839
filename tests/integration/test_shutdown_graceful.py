"""Graceful shutdown of a real `tradewire serve` process on SIGTERM: health NOT_SERVING, new calls
UNAVAILABLE on every protocol, running trades finish, open streams get a final SHUTDOWN message,
exit 0 within the deadline with nothing lost; trades still running at the deadline resume
after a restart, and their streams resume by sequence."""

import asyncio
import collections
import json
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support.clients import PROTOCOLS, RpcFailure, StreamHandle, make_client
from support.gateway_process import GatewayProcess
from support.trading import eventually, trade, transitions, unique
from tradewire.core.audit import read_journal
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

TRADES = 50
UNARY = 30  # 6 per protocol; the other 20 run in two gRPC trade sessions
DEADLINE_S = 12.0


def shutdown_config(deadline_s: float, final_s: float) -> str:
    return f"[shutdown]\ndeadline_s = {deadline_s}\nfinal_s = {final_s}\n"


async def grpc_health(gateway) -> int:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    return response.status


async def http_health(gateway) -> int:
    async with httpx.AsyncClient(timeout=5) as http:
        body = (await http.get(f"{gateway.http_url}/v1/health")).json()
    return body["status"]


async def test_sigterm_during_50_running_trades(tmp_path):
    gateway = GatewayProcess(
        tmp_path / "gw", extra_config=shutdown_config(DEADLINE_S, 3.0),
        env={"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "2000"},
    ).start()
    clients = {p: make_client(p, gateway) for p in PROTOCOLS}
    key = gateway.key("trader")
    ids = [unique("drain") for _ in range(TRADES)]
    try:
        # 30 trades over ExecuteTrade, 6 per protocol
        calls = {ids[i]: asyncio.create_task(clients[PROTOCOLS[i % 5]].unary("ExecuteTrade", trade(ids[i]), key))
                 for i in range(UNARY)}
        # 20 over two trade sessions, left open (the client never half-closes them)
        sessions, session_responses = [], [[], []]
        for n in range(2):
            session = clients["grpc"].open_session(key)
            for request_id in ids[UNARY + 10 * n: UNARY + 10 * (n + 1)]:
                await session.send(spb.TradeSessionRequest(trade=trade(request_id)))
            sessions.append(session)
        idle_session = clients["grpc"].open_session(key)  # a session with no trade at all
        readers = [asyncio.create_task(_collect(s, out)) for s, out in zip(sessions, session_responses)]
        idle_responses: list = []
        readers.append(asyncio.create_task(_collect(idle_session, idle_responses)))
        # one status stream per trade, over every protocol in turn
        streams = {request_id: StreamHandle(clients[PROTOCOLS[i % 5]], "StreamExecutionStatus",
                                            spb.StreamExecutionStatusRequest(request_id=request_id), key)
                   for i, request_id in enumerate(ids)}
        for request_id, handle in streams.items():
            await handle.wait_for(lambda s: any(m.stage == pb.TRADE_STATUS_QUOTED for m in s.messages),
                                  what=f"{request_id} running")
        assert not any(task.done() for task in calls.values())

        gateway.terminate()
        signalled = time.monotonic()
        await eventually(lambda: _not_serving(gateway), what="health NOT_SERVING", timeout=5)
        for protocol, client in clients.items():  # new calls: UNAVAILABLE, reason SHUTTING_DOWN
            with pytest.raises(RpcFailure) as failure:
                await client.unary("ExecuteTrade", trade(unique("late")), key)
            assert (failure.value.code, failure.value.reason) == ("UNAVAILABLE", "SHUTTING_DOWN"), (protocol, str(failure.value))
            if protocol == "http":  # and the connection closes: the next call must not meet a reset
                assert failure.value.http_status == 503 and failure.value.headers.get("connection") == "close"
            with pytest.raises(RpcFailure) as failure:
                await client.stream("StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=ids[0]), key)
            assert failure.value.reason == "SHUTTING_DOWN", (protocol, str(failure.value))
            # refused before authentication: a bad key learns UNAVAILABLE too, not UNAUTHENTICATED
            with pytest.raises(RpcFailure) as failure:
                await client.unary("ExecuteTrade", trade(unique("late-bad-key")), "tw_nobody01_" + "x" * 40)
            assert (failure.value.code, failure.value.reason) == ("UNAVAILABLE", "SHUTTING_DOWN"), (protocol, str(failure.value))
        assert not any(task.done() for task in calls.values()), "trades were still running when calls were refused"

        # every running trade finishes: its caller gets the fill, its stream every event to the terminal one
        for request_id, task in calls.items():
            result, _ = await asyncio.wait_for(task, DEADLINE_S)
            assert result.status == pb.TRADE_STATUS_FILLED, request_id
        for request_id, handle in streams.items():
            events = transitions(await handle.finished(timeout=DEADLINE_S))
            assert handle.error is None, (request_id, handle.error)
            assert [e.sequence for e in events] == list(range(1, 10)), request_id
            assert events[-1].stage == pb.TRADE_STATUS_FILLED
        # open sessions: their trades' statuses, then the final SHUTDOWN message, then a clean end
        await asyncio.wait_for(asyncio.gather(*readers), DEADLINE_S)
        for n, responses in enumerate(session_responses):
            per_trade = collections.defaultdict(list)
            for r in responses[:-1]:
                if r.status.kind == pb.STATUS_KIND_TRANSITION:
                    per_trade[r.status.request_id].append(r.status.sequence)
            assert set(per_trade) == set(ids[UNARY + 10 * n: UNARY + 10 * (n + 1)])
            assert all(seqs == list(range(1, 10)) for seqs in per_trade.values())
            assert responses[-1].status.kind == pb.STATUS_KIND_SHUTDOWN
            assert "shutting down" in responses[-1].status.message
        assert [r.status.kind for r in idle_responses if r.status.kind != pb.STATUS_KIND_HEARTBEAT] == [
            pb.STATUS_KIND_SHUTDOWN]

        code = await asyncio.to_thread(gateway.wait_exit, DEADLINE_S + 5)
        elapsed = time.monotonic() - signalled
        assert code == 0, gateway.log_text()[-3000:]
        assert elapsed < DEADLINE_S, f"exited after {elapsed:.1f}s"
        [stopped] = [json.loads(line) for line in gateway.log_text().splitlines() if '"msg":"stopped"' in line]
        # the open sessions (the idle one too) ended with their SHUTDOWN message; none had to be cut
        assert stopped["streams_ended"] >= len(sessions) + 1 and stopped["streams_cut"] == 0, stopped
    finally:
        for client in clients.values():
            await client.close()
        if gateway.proc.poll() is None:
            gateway.stop()

    # nothing lost: the history (after a restart on the same data) and the audit journal
    audit = list(read_journal(gateway.workdir / "data" / "audit.jsonl"))
    sequences = collections.defaultdict(set)
    for event in audit:
        if event.table == "tw_transitions" and event.symbols.get("principal") == "trader":
            sequences[event.columns["request_id"]].add(event.columns["sequence"])
    assert all(sequences[request_id] == set(range(1, 10)) for request_id in ids)
    refused = [e for e in audit if e.table == "tw_requests" and e.symbols.get("reason") == "SHUTTING_DOWN"]
    assert len(refused) == 3 * len(PROTOCOLS)  # a trade, a stream and a trade with a bad key per protocol
    assert not [e for e in audit if e.table == "tw_auth_attempts" and e.symbols.get("outcome") == "failure"]
    filled_calls = [e for e in audit if e.table == "tw_requests" and e.symbols.get("method") == "ExecuteTrade"
                    and e.symbols.get("code") == "OK"]
    assert len(filled_calls) == UNARY
    gateway.start()
    try:
        client = make_client("grpc", gateway)
        history, _ = await client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(page_size=500), key)
        await client.close()
        assert {t.request_id: t.status for t in history.trades} == {i: pb.TRADE_STATUS_FILLED for i in ids}
    finally:
        assert gateway.stop() == 0


async def _collect(session, out: list) -> None:
    async for response in session:
        out.append(response)


async def _not_serving(gateway) -> bool:
    return (await grpc_health(gateway) == health_pb2.HealthCheckResponse.NOT_SERVING
            and await http_health(gateway) == "SERVING_STATUS_NOT_SERVING")


async def test_a_trade_still_running_at_the_deadline_resumes_after_restart(tmp_path):
    deadline_s = 3.0
    gateway = GatewayProcess(
        tmp_path / "gw", extra_config=shutdown_config(deadline_s, 1.5),
        env={"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "30000"},
    ).start()
    key = gateway.key("alice")
    request_id = unique("unfinished")
    client = make_client("grpc", gateway)
    http = make_client("http", gateway)
    try:
        execution = asyncio.create_task(client.unary("ExecuteTrade", trade(request_id), key))
        streams = [StreamHandle(c, "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request_id),
                                key) for c in (client, http)]
        for handle in streams:
            await handle.wait_for(lambda s: any(m.stage == pb.TRADE_STATUS_QUOTED for m in s.messages),
                                  what="QUOTED")  # the trade now waits 15 s before it is signed
        gateway.terminate()
        signalled = time.monotonic()
        with pytest.raises(RpcFailure) as failure:
            await asyncio.wait_for(execution, deadline_s + 5)
        assert (failure.value.code, failure.value.reason) == ("UNAVAILABLE", "SHUTTING_DOWN")
        assert "resumes" in failure.value.message
        for handle in streams:
            messages = await handle.finished(timeout=deadline_s + 5)
            assert handle.error is None
            assert messages[-1].kind == pb.STATUS_KIND_SHUTDOWN
            assert "from_sequence=5" in messages[-1].message
            assert [m.sequence for m in transitions(messages)] == [1, 2, 3, 4]
        code = await asyncio.to_thread(gateway.wait_exit, deadline_s + 5)
        assert code == 0 and time.monotonic() - signalled < deadline_s + 1.0
    finally:
        await client.close()
        await http.close()
        if gateway.proc.poll() is None:
            gateway.stop()
    assert "left unfinished" in gateway.log_text()

    gateway.env["TRADEWIRE_PAPER__LATENCY_MS"] = "600"
    gateway.start()  # the restart resumes it
    client = make_client("grpc", gateway)
    try:
        rest = await client.stream("StreamExecutionStatus",
                                   spb.StreamExecutionStatusRequest(request_id=request_id, from_sequence=5), key)
        assert [m.sequence for m in transitions(rest)] == [5, 6, 7, 8, 9]
        assert rest[-1].stage == pb.TRADE_STATUS_FILLED
        whole = await client.stream("StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request_id),
                                    key)
        assert [m.sequence for m in whole] == list(range(1, 10))
        again, _ = await client.unary("ExecuteTrade", trade(request_id), key)  # the same id: the same trade
        assert again.status == pb.TRADE_STATUS_FILLED and again == whole[-1].result
    finally:
        await client.close()
        assert gateway.stop() == 0
