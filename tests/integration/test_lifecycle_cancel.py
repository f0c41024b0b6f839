"""CancelTrade, and the caller's cancellation or deadline, on every protocol, against paper trades
that take wall-clock time (0.6 s building, then 0.6 s landing after SUBMITTED)."""

import asyncio
import contextlib
import datetime
import json

import grpc
import pytest
from connectrpc.errors import ConnectError
from google.protobuf import timestamp_pb2

from support.clients import PROTOCOLS, RpcFailure, StreamHandle, make_client
from support.trading import eventually, metric, trade, unique
from tradewire.core import lifecycle
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

LATENCY_MS = 1200  # the paper trades of slow_gateway (tests/integration/conftest.py)


@pytest.fixture(params=PROTOCOLS)
async def client(request, slow_gateway):
    c = make_client(request.param, slow_gateway)
    yield c
    await c.close()


@pytest.fixture(scope="module")
async def grpc_client(slow_gateway):
    c = make_client("grpc", slow_gateway)
    yield c
    await c.close()


async def start_and_reach(grpc_client, gateway, stage: int, key_name: str = "alice"):
    """Start a trade (gRPC ExecuteTrade in the background) and wait until it reached ``stage``."""
    key = gateway.key(key_name)
    request_id = unique("cancel")
    execution = asyncio.create_task(grpc_client.unary("ExecuteTrade", trade(request_id), key))
    watcher = StreamHandle(grpc_client, "StreamExecutionStatus",
                           spb.StreamExecutionStatusRequest(request_id=request_id), key)
    await watcher.wait_for(lambda s: any(m.stage == stage for m in s.messages), what=pb.TradeStatus.Name(stage))
    return request_id, execution, watcher


async def test_cancel_before_send_cancels_the_trade(client, grpc_client, slow_gateway):
    key = slow_gateway.key("alice")
    request_id, execution, watcher = await start_and_reach(grpc_client, slow_gateway, pb.TRADE_STATUS_QUOTED)

    response, _ = await client.unary("CancelTrade", spb.CancelTradeRequest(request_id=request_id,
                                                                           reason="changed my mind"), key)
    assert response.request_id == request_id
    assert response.status == pb.TRADE_STATUS_CANCELLED

    with pytest.raises(RpcFailure) as failure:  # the caller of ExecuteTrade learns it too
        await execution
    assert failure.value.code == "CANCELLED" and failure.value.reason == "TRADE_CANCELLED"
    events = await watcher.finished()
    assert events[-1].terminal and events[-1].stage == pb.TRADE_STATUS_CANCELLED
    assert "changed my mind" in events[-1].message
    assert pb.TRADE_STATUS_SUBMITTED not in [e.stage for e in events]  # never sent
    stored, _ = await client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
    assert stored.status == pb.TRADE_STATUS_CANCELLED and stored.error.reason == "TRADE_CANCELLED"
    assert stored.fees.total_lamports == 0

    again, _ = await client.unary("CancelTrade", spb.CancelTradeRequest(request_id=request_id), key)
    assert again.status == pb.TRADE_STATUS_CANCELLED  # idempotent


async def test_a_running_trade_is_read_back_at_its_current_stage(grpc_client, slow_gateway):
    key = slow_gateway.key("alice")
    request_id, execution, watcher = await start_and_reach(grpc_client, slow_gateway, pb.TRADE_STATUS_QUOTED)
    try:
        found, _ = await grpc_client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), key)
        history, _ = await grpc_client.unary("GetTradeHistory", spb.GetTradeHistoryRequest(page_size=50), key)
        listed = next(t for t in history.trades if t.request_id == request_id)
        for seen in (found, listed):  # at QUOTED or later, not as stored at its claim (UNSPECIFIED)
            assert lifecycle.rank(seen.status) >= lifecycle.rank(pb.TRADE_STATUS_QUOTED), seen.status
    finally:
        with contextlib.suppress(RpcFailure):  # NOT_CANCELLABLE if it was sent meanwhile
            await grpc_client.unary("CancelTrade", spb.CancelTradeRequest(request_id=request_id), key)
        with contextlib.suppress(RpcFailure):
            await execution
        await watcher.finished()


async def test_history_filters_a_running_trade_on_the_status_it_is_at(grpc_client, slow_gateway):
    key = slow_gateway.key("alice")
    request_id, execution, watcher = await start_and_reach(grpc_client, slow_gateway, pb.TRADE_STATUS_QUOTED)

    async def listed(*statuses: int) -> bool:
        history, _ = await grpc_client.unary(
            "GetTradeHistory", spb.GetTradeHistoryRequest(page_size=100, statuses=statuses), key)
        return request_id in {t.request_id for t in history.trades}

    try:
        running = [s for s in pb.TradeStatus.values() if lifecycle.rank(s) >= lifecycle.rank(pb.TRADE_STATUS_QUOTED)
                   and not lifecycle.is_terminal(s)]
        assert await listed(*running)
        # As stored at its claim it is UNSPECIFIED; it is not listed under that, nor as ended.
        assert not await listed(pb.TRADE_STATUS_UNSPECIFIED, pb.TRADE_STATUS_RECEIVED)
        assert not await listed(pb.TRADE_STATUS_FILLED, pb.TRADE_STATUS_CANCELLED)
    finally:
        with contextlib.suppress(RpcFailure):
            await grpc_client.unary("CancelTrade", spb.CancelTradeRequest(request_id=request_id), key)
        with contextlib.suppress(RpcFailure):
            await execution
        await watcher.finished()
    final = (await watcher.finished())[-1].stage
    assert await listed(final) and not await listed(*running)


async def test_cancel_after_send_is_refused_and_the_trade_runs_to_its_end(client, grpc_client, slow_gateway):
    key = slow_gateway.key("bob")
    request_id, execution, watcher = await start_and_reach(grpc_client, slow_gateway, pb.TRADE_STATUS_SUBMITTED, "bob")

    with pytest.raises(RpcFailure) as failure:
        await client.unary("CancelTrade", spb.CancelTradeRequest(request_id=request_id), key)
    assert failure.value.code == "FAILED_PRECONDITION"
    assert failure.value.reason == "NOT_CANCELLABLE"
    assert "sent" in failure.value.message
    if client.name == "http":
        assert failure.value.http_status == 400

    result, _ = await execution
    assert result.status == pb.TRADE_STATUS_FILLED
    assert (await watcher.finished())[-1].stage == pb.TRADE_STATUS_FILLED
    with pytest.raises(RpcFailure) as failure:  # and once it has ended
        await client.unary("CancelTrade", spb.CancelTradeRequest(request_id=request_id), key)
    assert failure.value.reason == "NOT_CANCELLABLE"


async def test_cancelling_someone_elses_trade_is_not_found(grpc_client, slow_gateway):
    request_id, execution, _ = await start_and_reach(grpc_client, slow_gateway, pb.TRADE_STATUS_QUOTED)
    with pytest.raises(RpcFailure) as failure:
        await grpc_client.unary("CancelTrade", spb.CancelTradeRequest(request_id=request_id), slow_gateway.key("bob"))
    assert failure.value.code == "NOT_FOUND"
    assert (await execution)[0].status == pb.TRADE_STATUS_FILLED


async def _stored(grpc_client, gateway, request_id: str, key: str = "alice"):
    result, _ = await grpc_client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), gateway.key(key))
    return result


async def _final(grpc_client, gateway, request_id: str) -> pb.TradeResult:
    watcher = StreamHandle(grpc_client, "StreamExecutionStatus",
                           spb.StreamExecutionStatusRequest(request_id=request_id), gateway.key("alice"))
    await watcher.finished()
    return await _stored(grpc_client, gateway, request_id)


@pytest.mark.parametrize("protocol", ["grpc", "connect-json", "grpc-web", "http"])
async def test_caller_going_away_before_send_cancels_the_trade(protocol, grpc_client, slow_gateway):
    client = make_client(protocol, slow_gateway)
    key = slow_gateway.key("alice")
    request_id = unique("gone")
    try:
        execution = asyncio.create_task(client.unary("ExecuteTrade", trade(request_id), key))
        watcher = StreamHandle(grpc_client, "StreamExecutionStatus",
                               spb.StreamExecutionStatusRequest(request_id=request_id), key)
        await watcher.wait_for(lambda s: any(m.stage == pb.TRADE_STATUS_QUOTED for m in s.messages), what="QUOTED")
        execution.cancel()  # the client cancels its call
        await asyncio.gather(execution, return_exceptions=True)
        events = await watcher.finished()
    finally:
        await client.close()
    assert events[-1].stage == pb.TRADE_STATUS_CANCELLED
    stored = await _stored(grpc_client, slow_gateway, request_id)
    assert stored.status == pb.TRADE_STATUS_CANCELLED and stored.error.reason == "CANCELLED"


async def test_caller_going_away_after_send_lets_the_trade_finish_and_records_it(grpc_client, slow_gateway):
    client = make_client("grpc", slow_gateway)
    request_id = unique("gone-late")
    try:
        execution = asyncio.create_task(client.unary("ExecuteTrade", trade(request_id), slow_gateway.key("alice")))
        watcher = StreamHandle(grpc_client, "StreamExecutionStatus",
                               spb.StreamExecutionStatusRequest(request_id=request_id), slow_gateway.key("alice"))
        await watcher.wait_for(lambda s: any(m.stage == pb.TRADE_STATUS_SUBMITTED for m in s.messages),
                               what="SUBMITTED")
        execution.cancel()
        await asyncio.gather(execution, return_exceptions=True)
    finally:
        await client.close()
    assert (await watcher.finished())[-1].stage == pb.TRADE_STATUS_FILLED
    assert (await _stored(grpc_client, slow_gateway, request_id)).status == pb.TRADE_STATUS_FILLED


async def test_call_deadline_before_send_expires_the_trade(slow_gateway, grpc_client):
    key = slow_gateway.key("alice")
    # gRPC: the channel's deadline
    grpc_id = unique("deadline-grpc")
    call = grpc_client._callable("ExecuteTrade")(trade(grpc_id), metadata=(("authorization", f"Bearer {key}"),),
                                                 timeout=0.25)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Connect and gRPC-Web: connect-timeout-ms / grpc-timeout, enforced by the gateway
    ids = {"grpc": grpc_id}
    for protocol in ("connect-proto", "grpc-web"):
        client = make_client(protocol, slow_gateway)
        ids[protocol] = unique(f"deadline-{protocol}")
        try:
            with pytest.raises(ConnectError) as failure:
                await client.client.execute_trade(trade(ids[protocol]), headers={"authorization": f"Bearer {key}"},
                                                  timeout_ms=250)
            assert failure.value.code.name == "DEADLINE_EXCEEDED"
        finally:
            await client.close()
    for protocol, request_id in ids.items():
        stored = await _final(grpc_client, slow_gateway, request_id)
        assert stored.status == pb.TRADE_STATUS_EXPIRED, protocol
        assert stored.error.reason == "DEADLINE_EXCEEDED", protocol


async def test_request_deadline_expires_a_trade_not_sent_in_time(client, slow_gateway, grpc_client):
    deadline = timestamp_pb2.Timestamp()
    deadline.FromDatetime(datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=0.3))
    request_id = unique("req-deadline")
    with pytest.raises(RpcFailure) as failure:
        await client.unary("ExecuteTrade", trade(request_id, deadline=deadline), slow_gateway.key("alice"))
    assert failure.value.code == "DEADLINE_EXCEEDED" and failure.value.reason == "TRADE_EXPIRED"
    stored = await _stored(grpc_client, slow_gateway, request_id)
    assert stored.status == pb.TRADE_STATUS_EXPIRED


async def test_cancellations_are_counted(slow_gateway):
    assert await metric(slow_gateway, "tradewire_cancel_requests_total", source="request", outcome="cancelled") >= 1
    assert await metric(slow_gateway, "tradewire_cancel_requests_total", source="request",
                        outcome="not_cancellable") >= 1
    assert await metric(slow_gateway, "tradewire_cancel_requests_total", source="caller", outcome="cancelled") >= 1
    assert await metric(slow_gateway, "tradewire_trades_total", mode="PAPER", status="TRADE_STATUS_CANCELLED") >= 1


def _access_line(gateway, correlation_id: str) -> dict | None:
    for line in gateway.log_text().splitlines():
        if correlation_id in line and '"msg":"call"' in line:
            return json.loads(line)
    return None


async def _recorded(gateway, correlation_id: str) -> dict:
    return await eventually(lambda: _access_line(gateway, correlation_id), what=f"the access line of {correlation_id}")


async def test_a_stream_cut_off_by_its_deadline_is_recorded_as_deadline_exceeded(grpc_client, slow_gateway):
    key = slow_gateway.key("alice")
    request_id = unique("stream-deadline")
    execution = asyncio.create_task(grpc_client.unary("ExecuteTrade", trade(request_id), key))
    outcomes = {}
    for how in ("deadline", "cancel"):
        correlation_id = unique(f"stream-{how}")
        call = grpc_client._callable("StreamExecutionStatus")(
            spb.StreamExecutionStatusRequest(request_id=request_id), timeout=0.4 if how == "deadline" else None,
            metadata=(("authorization", f"Bearer {key}"), ("x-correlation-id", correlation_id)))
        first = await call.read()  # the stream is open and being served
        assert first.request_id == request_id
        if how == "cancel":
            call.cancel()
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            while await call.read() is not grpc.aio.EOF:
                pass
        line = await _recorded(slow_gateway, correlation_id)
        outcomes[how] = (line["code"], line["reason"])
    await execution
    assert outcomes == {"deadline": ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"), "cancel": ("CANCELLED", "")}


async def test_a_connect_call_cut_off_by_its_deadline_is_recorded_as_deadline_exceeded(slow_gateway):
    client = make_client("connect-proto", slow_gateway)
    correlation_id = unique("connect-deadline")
    try:
        with pytest.raises(ConnectError) as failure:
            await client.client.execute_trade(trade(unique("connect-deadline")), timeout_ms=250, headers={
                "authorization": f"Bearer {slow_gateway.key('alice')}", "x-correlation-id": correlation_id})
        assert failure.value.code.name == "DEADLINE_EXCEEDED"
    finally:
        await client.close()
    line = await _recorded(slow_gateway, correlation_id)
    assert (line["code"], line["reason"]) == ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED")
