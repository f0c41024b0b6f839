"""TradeSession: a long-lived full-duplex gRPC stream multiplexing many trades by request id;
transports that cannot do full duplex say so."""

import asyncio
import collections

import grpc
import pytest

from support.clients import GrpcClient, RpcFailure, make_client
from support.gateway_process import GatewayProcess
from support.ports import wait_until
from support.trading import SOL, eventually, metric, trade, unique
from tradewire.core.lifecycle import is_terminal
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

TRADES = 100
MAX_OPEN_PER_CALLER = 5
SLOW_CONSUMER_S = 1.0


@pytest.fixture(scope="module")
def session_gateway(tmp_path_factory):
    process = GatewayProcess(
        tmp_path_factory.mktemp("session"),
        env={"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "800",
             "TRADEWIRE_EXECUTION__MAX_IN_FLIGHT_PER_PRINCIPAL": "500"},
        streams_config=f"[streams]\nawait_trade_s = 0.3\nslow_consumer_s = {SLOW_CONSUMER_S}\n"
                       f"max_open_per_caller = {MAX_OPEN_PER_CALLER}\n",
    ).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


def session_trade(request_id: str, amount: str = "0.001", **fields) -> spb.TradeSessionRequest:
    return spb.TradeSessionRequest(trade=trade(request_id, amount=amount, **fields))


def session_cancel(request_id: str) -> spb.TradeSessionRequest:
    return spb.TradeSessionRequest(cancel=spb.CancelTradeRequest(request_id=request_id, reason="session test"))


async def test_one_session_runs_100_interleaved_trades(session_gateway):
    client = make_client("grpc", session_gateway)
    key = session_gateway.key("alice")
    ids = [unique("sess") for _ in range(TRADES)]
    cancel_ids = set(ids[5::10])  # every tenth trade is cancelled right after it is sent
    invalid_id = unique("sess-invalid")
    live_id = unique("sess-live")
    statuses: dict[str, list[pb.ExecutionStatus]] = collections.defaultdict(list)
    errors: dict[str, spb.SessionError] = {}
    cancelled: dict[str, int] = {}
    seen_all_sent = asyncio.Event()
    try:
        session = client.open_session(key)

        async def read() -> None:
            async for response in session:
                kind = response.WhichOneof("event")
                if kind == "status":
                    statuses[response.status.request_id].append(response.status)
                elif kind == "error":
                    errors[response.error.request_id] = response.error
                elif kind == "cancelled":
                    cancelled[response.cancelled.request_id] = response.cancelled.status

        reader = asyncio.create_task(read())
        for i, request_id in enumerate(ids):
            await session.send(session_trade(request_id))
            if request_id in cancel_ids:
                await session.send(session_cancel(request_id))
            if i == 30:
                await session.send(session_trade(invalid_id, amount="-1"))
                await session.send(session_trade(live_id, mode=pb.TRADING_MODE_LIVE))  # alice: paper only
            if i == 60:  # statuses flow back while requests are still being sent: full duplex
                await eventually(lambda: any(e[-1].terminal for e in statuses.values()), timeout=10,
                                 what="a trade finished while the session is still sending")
                seen_all_sent.set()
        await session.done_sending()
        async with asyncio.timeout(60):
            await reader  # the server ends the session once every trade has ended
    finally:
        await client.close()

    assert seen_all_sent.is_set()
    assert set(statuses) == set(ids)
    for request_id in ids:
        events = statuses[request_id]
        assert [e.sequence for e in events] == list(range(1, len(events) + 1)), request_id
        assert events[-1].terminal and not any(e.terminal for e in events[:-1])
        expected = pb.TRADE_STATUS_CANCELLED if request_id in cancel_ids else pb.TRADE_STATUS_FILLED
        assert events[-1].stage == expected, (request_id, events[-1])
        assert events[-1].result.request_id == request_id
    assert cancelled == {request_id: pb.TRADE_STATUS_CANCELLED for request_id in cancel_ids}
    assert errors[invalid_id].error.reason == "VALIDATION_FAILED"
    assert [v.field for v in errors[invalid_id].error.field_violations] == ["trade.amount"]
    assert errors[live_id].error.reason == "PERMISSION_DENIED"
    assert set(errors) == {invalid_id, live_id}
    await eventually(lambda: _sessions(session_gateway, 0), what="session released")


async def _sessions(gateway, value: float) -> bool:
    return await metric(gateway, "tradewire_sessions_open") == value


async def test_cancel_through_a_session_after_send_is_refused(session_gateway):
    client = make_client("grpc", session_gateway)
    key = session_gateway.key("bob")
    request_id = unique("sess-late")
    responses = []
    try:
        session = client.open_session(key)
        await session.send(session_trade(request_id))
        async for response in session:
            responses.append(response)
            if response.WhichOneof("event") == "status" and response.status.stage == pb.TRADE_STATUS_SUBMITTED:
                await session.send(session_cancel(request_id))
                await session.done_sending()
    finally:
        await client.close()
    refused = [r.error for r in responses if r.WhichOneof("event") == "error"]
    assert len(refused) == 1 and refused[0].request_id == request_id
    assert refused[0].error.reason == "NOT_CANCELLABLE" and refused[0].error.code == 9  # FAILED_PRECONDITION
    assert [r.status.stage for r in responses if r.WhichOneof("event") == "status"][-1] == pb.TRADE_STATUS_FILLED


async def test_cancelling_an_unknown_trade_in_a_session_names_the_field_as_the_session_sends_it(session_gateway):
    client = make_client("grpc", session_gateway)
    unknown = unique("sess-unknown")
    try:
        responses = await client.session([session_cancel(unknown)], session_gateway.key("bob"))
    finally:
        await client.close()
    [refused] = [r.error for r in responses if r.WhichOneof("event") == "error"]
    assert refused.request_id == unknown and refused.error.reason == "TRADE_NOT_FOUND"
    assert [v.field for v in refused.error.field_violations] == ["cancel.request_id"]  # as a bad cancel's path


async def test_a_session_replays_a_trade_it_resends(session_gateway):
    client = make_client("grpc", session_gateway)
    key = session_gateway.key("bob")
    request = trade(unique("sess-dup"), amount="0.001")
    try:
        first = await client.session([spb.TradeSessionRequest(trade=request)], key)
        again = await client.session([spb.TradeSessionRequest(trade=request)], key)
    finally:
        await client.close()
    assert [r.status for r in again] == [r.status for r in first]  # the same events, from the store
    assert first[-1].status.result.status == pb.TRADE_STATUS_FILLED


async def test_a_session_names_a_reused_request_id_as_the_session_sends_it(session_gateway):
    client = make_client("grpc", session_gateway)
    key = session_gateway.key("bob")
    request = trade(unique("sess-reused"), amount="0.001")
    changed = trade(request.request_id, amount="0.002")
    try:
        await client.session([spb.TradeSessionRequest(trade=request)], key)
        responses = await client.session([spb.TradeSessionRequest(trade=changed)], key)
    finally:
        await client.close()
    [refused] = [r.error for r in responses if r.WhichOneof("event") == "error"]
    assert refused.error.reason == "DUPLICATE_REQUEST_MISMATCH" and "(amount differs)" in refused.error.message
    assert [v.field for v in refused.error.field_violations] == ["trade.request_id"]  # as a bad trade's path


PROTOCOL_NAMES = {"connect-json": "connect", "connect-proto": "connect", "grpc-web": "grpc-web", "http": "http"}


@pytest.mark.parametrize("protocol", list(PROTOCOL_NAMES))
async def test_transports_without_full_duplex_say_so(protocol, session_gateway):
    client = make_client(protocol, session_gateway)
    try:
        with pytest.raises(RpcFailure) as failure:
            await client.session([session_trade(unique("half"))], session_gateway.key("alice"))
    finally:
        await client.close()
    assert failure.value.code == "UNIMPLEMENTED"
    assert failure.value.reason == "DUPLEX_UNSUPPORTED"
    assert "full-duplex" in failure.value.message and "gRPC" in failure.value.message
    if protocol == "http":
        assert failure.value.http_status == 501
    # recorded as a call of its method, on every protocol (Connect and gRPC-Web refused it unseen)
    await eventually(lambda: session_gateway.audit_rows("tw_requests", method="TradeSession", principal="alice",
                                                        reason="DUPLEX_UNSUPPORTED", protocol=PROTOCOL_NAMES[protocol]),
                     what="the refused session's audit row")
    # and, as every call, a bad credential is told so first
    client = make_client(protocol, session_gateway)
    try:
        with pytest.raises(RpcFailure) as failure:
            await client.session([session_trade(unique("half"))], "tw_nobody01_" + "x" * 40)
    finally:
        await client.close()
    assert failure.value.code == "UNAUTHENTICATED", failure.value


async def test_a_session_that_stops_reading_is_dropped_with_a_clear_status(session_gateway):
    """A reader that never reads: once gRPC's flow-control window is full the server cannot send,
    and after ``slow_consumer_s`` the session is ended with RESOURCE_EXHAUSTED (SLOW_CONSUMER),
    which the client gets after the messages already in its buffers; the trades go on."""
    client = GrpcClient(session_gateway.grpc_target)
    await client.channel.close()
    client.channel = grpc.aio.insecure_channel(  # no window growth: 64 KiB fill up quickly
        session_gateway.grpc_target, options=[("grpc.http2.bdp_probe", 0)])
    key = session_gateway.key("trader")
    padding = {f"k{i}": "x" * 250 for i in range(12)}  # ~3 KiB in each terminal status
    ids = [unique("unread") for _ in range(200)]
    received = 0
    try:
        session = client.open_session(key)
        for request_id in ids:
            await session.send(session_trade(request_id, client_metadata=padding))
        await eventually(lambda: _dropped(session_gateway), timeout=20, what="the slow session dropped")
        await eventually(lambda: _sessions(session_gateway, 0), what="the session released")
        with pytest.raises(RpcFailure) as failure:
            async for _ in session:
                received += 1
    finally:
        await client.close()
    assert failure.value.code == "RESOURCE_EXHAUSTED" and failure.value.reason == "SLOW_CONSUMER"
    assert 0 < received < 200 * 9
    stream_client = make_client("grpc", session_gateway)
    try:  # the trades read were not affected (requests a full session had not read yet were not run)
        last = await stream_client.stream("StreamExecutionStatus",
                                          spb.StreamExecutionStatusRequest(request_id=ids[0]), key)
        assert last[-1].stage == pb.TRADE_STATUS_FILLED
    finally:
        await stream_client.close()


async def _dropped(gateway) -> bool:
    return await metric(gateway, "tradewire_stream_closes_total", kind="session", reason="slow_consumer") >= 1


async def test_a_caller_holds_at_most_its_share_of_open_sessions_and_streams(session_gateway):
    """Open sessions hold memory until their caller closes them: one caller's are bounded, and
    the cap refuses a new one clearly (RESOURCE_EXHAUSTED TOO_MANY_STREAMS) without touching others."""
    key = session_gateway.key("alice")
    client = GrpcClient(session_gateway.grpc_target)
    other = make_client("http", session_gateway)
    sessions = []
    try:
        for _ in range(MAX_OPEN_PER_CALLER):
            session = client.open_session(key)
            await session.send(session_cancel(unique("nothing")))  # an answer proves it is open
            await anext(aiter(session))
            sessions.append(session)
        extra = client.open_session(key)
        await extra.send(session_cancel(unique("nothing")))
        with pytest.raises(RpcFailure) as refused:  # (open, it would answer the cancel: an error event)
            await asyncio.wait_for(anext(aiter(extra)), 10)
        assert refused.value.code == "RESOURCE_EXHAUSTED" and refused.value.reason == "TOO_MANY_STREAMS"
        assert f"limit {MAX_OPEN_PER_CALLER}" in refused.value.message
        with pytest.raises(RpcFailure) as stream_refused:  # a status stream counts the same
            await client.stream("StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id="x"), key)
        assert stream_refused.value.reason == "TOO_MANY_STREAMS"
        result, _ = await other.unary("ExecuteTrade", trade(unique("others")), session_gateway.key("bob"))
        assert result.status == pb.TRADE_STATUS_FILLED  # another caller is not held back
        await sessions.pop().done_sending()  # one closes: a new one opens
        await eventually(lambda: _sessions(session_gateway, MAX_OPEN_PER_CALLER - 1), what="one session closed")
        again = client.open_session(key)
        await again.send(session_cancel(unique("nothing")))
        assert (await anext(aiter(again))).WhichOneof("event") == "error"  # (an answer: it is open)
    finally:
        await client.close()
        await other.close()


async def test_each_trade_and_cancel_of_a_session_is_on_record(session_gateway):
    client = make_client("grpc", session_gateway)
    correlation_id = unique("session-record")
    good, same_mints, live = (session_trade(unique("rec-good")), session_trade(unique("rec-bad"), output_mint=SOL),
                              session_trade(unique("rec-live"), mode=pb.TRADING_MODE_LIVE))
    too_much, unknown = session_trade(unique("rec-too-much"), amount="99999"), unique("rec-unknown")
    try:
        await client.session([good, same_mints, live, too_much, session_cancel(unknown)], session_gateway.key("bob"),
                             headers={"x-correlation-id": correlation_id})
    finally:
        await client.close()

    def rows() -> list[dict]:
        return session_gateway.audit_rows("tw_requests", correlation_id=correlation_id)

    wait_until(lambda: len(rows()) == 6, what="the call's row and one per message")
    assert sorted((r["method"], r.get("trade_request_id", ""), r["code"]) for r in rows()) == sorted([
        ("TradeSession", "", "OK"),
        ("TradeSession.trade", good.trade.request_id, "OK"),  # recorded once it ended, as it ended
        ("TradeSession.trade", too_much.trade.request_id, "FAILED_PRECONDITION"),  # ran, REJECTED
        ("TradeSession.trade", same_mints.trade.request_id, "INVALID_ARGUMENT"),
        ("TradeSession.trade", live.trade.request_id, "PERMISSION_DENIED"),  # a paper key asking for LIVE
        ("TradeSession.cancel", unknown, "NOT_FOUND"),
    ])


async def test_a_trade_sent_again_after_it_ended_is_followed_again(session_gateway):
    client = make_client("grpc", session_gateway)
    request = session_trade(unique("sess-again"))
    session = client.open_session(session_gateway.key("bob"))
    try:
        responses = aiter(session)

        async def to_its_end() -> list[int]:
            stages = []
            while not stages or not is_terminal(stages[-1]):
                response = await anext(responses)
                if response.WhichOneof("event") == "status" and response.status.kind == pb.STATUS_KIND_TRANSITION:
                    stages.append(response.status.stage)
            return stages

        await session.send(request)
        first = await asyncio.wait_for(to_its_end(), 20)
        await session.send(request)  # after its end: its statuses again (a replay), not silence
        again = await asyncio.wait_for(to_its_end(), 20)
        await session.done_sending()
    finally:
        session.cancel()
        await client.close()
    assert first == again and first[-1] == pb.TRADE_STATUS_FILLED
