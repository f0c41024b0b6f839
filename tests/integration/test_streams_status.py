"""StreamExecutionStatus on every protocol, against a gateway whose paper trades take wall-clock
time: subscribers joining before, during and after a trade, resuming by sequence, keep-alives,
and a disconnect freeing the stream at once."""

import asyncio

import pytest

from support.clients import PROTOCOLS, StreamHandle, make_client
from support.gateway_process import GatewayProcess
from support.trading import eventually, metric, trade, transitions, unique
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

LATENCY_MS = 1600  # each half (building, landing) takes 0.8 s
HEARTBEAT_S = 0.5
AWAIT_TRADE_S = 1.5


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory):
    process = GatewayProcess(
        tmp_path_factory.mktemp("streams"),
        streams_config=f"[streams]\nheartbeat_s = {HEARTBEAT_S}\nawait_trade_s = {AWAIT_TRADE_S}\n",
        env={"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": str(LATENCY_MS)},
    ).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


@pytest.fixture(scope="module")
async def clients(slow_gateway):
    made = {protocol: make_client(protocol, slow_gateway) for protocol in PROTOCOLS}
    yield made
    for client in made.values():
        await client.close()


def status_request(request_id: str, from_sequence: int = 0) -> spb.StreamExecutionStatusRequest:
    return spb.StreamExecutionStatusRequest(request_id=request_id, from_sequence=from_sequence)


def summary(messages) -> list[tuple[int, int, int]]:
    return [(m.sequence, m.stage, m.percent_complete) for m in transitions(messages)]


async def test_subscribers_before_during_and_after_a_trade_see_exactly_its_events(slow_gateway, clients):
    key = slow_gateway.key("alice")
    request_id = unique("join")
    # before: the trade does not exist yet; the stream waits for it
    before = {p: StreamHandle(c, "StreamExecutionStatus", status_request(request_id), key) for p, c in clients.items()}
    await eventually(lambda: _subscribers(slow_gateway, len(PROTOCOLS)), what="subscribers registered")
    execution = asyncio.create_task(clients["grpc"].unary("ExecuteTrade", trade(request_id), key))

    # during: once the trade is quoted (it then waits 0.8 s), join from the start and resume from 3
    await before["grpc"].wait_for(lambda s: any(m.stage == pb.TRADE_STATUS_QUOTED for m in s.messages),
                                  what="QUOTED")
    during = {p: StreamHandle(c, "StreamExecutionStatus", status_request(request_id), key) for p, c in clients.items()}
    resumed = {p: StreamHandle(c, "StreamExecutionStatus", status_request(request_id, 3), key)
               for p, c in clients.items()}
    for handle in during.values():
        await handle.wait_for(lambda s: len(s.messages) >= 4, what="the first four events")
    assert all(not h.ended for h in during.values()), "the trade must still be running when they joined"

    result, _ = await execution
    assert result.status == pb.TRADE_STATUS_FILLED
    after = {p: StreamHandle(c, "StreamExecutionStatus", status_request(request_id), key) for p, c in clients.items()}

    reference = None
    for group, handles in (("before", before), ("during", during), ("after", after)):
        for protocol, handle in handles.items():
            messages = await handle.finished()
            assert handle.error is None, (group, protocol, handle.error)
            events = transitions(messages)
            got = summary(messages)
            reference = reference or got
            assert got == reference, (group, protocol)
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
            assert events[-1].terminal and events[-1].result.status == pb.TRADE_STATUS_FILLED
            assert not any(e.terminal for e in events[:-1])
            assert all(e.message and e.request_id == request_id for e in events)
    assert reference[0][1] == pb.TRADE_STATUS_RECEIVED and reference[-1][2] == 100
    assert [r[2] for r in reference] == sorted(r[2] for r in reference)  # percent only grows
    for protocol, handle in resumed.items():
        await handle.finished()
        assert summary(handle.messages) == reference[2:], protocol


async def _subscribers(gateway, at_least: int) -> bool:
    return await metric(gateway, "tradewire_stream_subscribers") >= at_least


async def test_idle_stream_gets_keepalives_with_the_current_stage(slow_gateway, clients):
    key = slow_gateway.key("bob")
    request_id = unique("idle")
    execution = asyncio.create_task(clients["grpc"].unary("ExecuteTrade", trade(request_id), key))
    handles = {p: StreamHandle(c, "StreamExecutionStatus", status_request(request_id), key) for p, c in clients.items()}
    for protocol, handle in handles.items():
        await handle.wait_for(lambda s: any(m.kind == pb.STATUS_KIND_HEARTBEAT for m in s.messages),
                              timeout=LATENCY_MS / 1000, what=f"a heartbeat on {protocol}")
    await execution
    for protocol, handle in handles.items():
        messages = await handle.finished()
        beats = [m for m in messages if m.kind == pb.STATUS_KIND_HEARTBEAT]
        assert beats and all(b.sequence == 0 and b.request_id == request_id and b.message for b in beats), protocol
        assert any(b.stage == pb.TRADE_STATUS_QUOTED and b.percent_complete == 35 for b in beats), protocol
        assert summary(messages)[-1][1] == pb.TRADE_STATUS_FILLED


async def test_a_client_that_disconnects_frees_its_stream_at_once(slow_gateway, clients):
    key = slow_gateway.key("alice")
    request_id = unique("gone")
    base = await metric(slow_gateway, "tradewire_stream_subscribers")
    execution = asyncio.create_task(clients["grpc"].unary("ExecuteTrade", trade(request_id), key))
    handles = [StreamHandle(c, "StreamExecutionStatus", status_request(request_id), key) for c in clients.values()]
    for handle in handles:
        await handle.wait_for(lambda s: len(s.messages) >= 1, what="a first event")
    assert await metric(slow_gateway, "tradewire_stream_subscribers") == base + len(handles)
    for handle in handles:
        await handle.cancel()
    # well before the next heartbeat would have shown the server the client is gone
    await eventually(lambda: _count_is(slow_gateway, base), timeout=HEARTBEAT_S * 0.8, interval=0.02,
                     what="every stream released")
    closes = await metric(slow_gateway, "tradewire_stream_closes_total", kind="status", reason="client_gone")
    assert closes >= len(handles)
    await execution


async def _count_is(gateway, value: float) -> bool:
    return await metric(gateway, "tradewire_stream_subscribers") == value


async def test_stream_of_an_unknown_trade_is_not_found_after_the_wait(slow_gateway, clients):
    handles = {p: StreamHandle(c, "StreamExecutionStatus", status_request(unique("never")), slow_gateway.key("alice"))
               for p, c in clients.items()}
    started = asyncio.get_running_loop().time()
    for protocol, handle in handles.items():
        await handle.finished(timeout=AWAIT_TRADE_S + 10)
        assert handle.error is not None and handle.error.code == "NOT_FOUND", protocol
        assert handle.error.reason == "TRADE_NOT_FOUND"
    assert asyncio.get_running_loop().time() - started >= AWAIT_TRADE_S * 0.9


async def test_ndjson_framing_carries_the_same_events(slow_gateway, clients):
    key = slow_gateway.key("bob")
    request_id = unique("ndjson")
    result, _ = await clients["grpc"].unary("ExecuteTrade", trade(request_id), key)
    handle = StreamHandle(clients["http"], "StreamExecutionStatus", status_request(request_id), key, ndjson=True)
    messages = await handle.finished()
    assert [m.sequence for m in messages] == list(range(1, len(messages) + 1))
    assert messages[-1].result == result
