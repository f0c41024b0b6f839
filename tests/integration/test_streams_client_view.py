"""Status streams as a client relying on them sees them, on every protocol, from real gateway
processes sharing one Redis: a trade running on one replica followed from another (opened
before the trade, during it, resumed), the same request id run again on another replica after
its first call went away, and a replica shutting down under streams of another's trade."""

import asyncio

import pytest

from support.clients import PROTOCOLS, GrpcClient, StreamHandle, make_client
from support.gateway_process import GatewayProcess
from support.trading import eventually, found, metric, trade, transitions, unique
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

LATENCY_MS = 1600  # each half of a paper trade (building, landing) takes 0.8 s
HEARTBEAT_S = 0.3
DATABASE = 12  # this suite's own Redis database


def replica(tmp_path_factory, redis_server, name: str) -> GatewayProcess:
    return GatewayProcess(
        tmp_path_factory.mktemp(name),
        streams_config=f"[streams]\nheartbeat_s = {HEARTBEAT_S}\nawait_trade_s = 5\n",
        env={"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": str(LATENCY_MS),
             "TRADEWIRE_SHARED__REDIS_URL": redis_server.url.rsplit("/", 1)[0] + f"/{DATABASE}"},
    )


@pytest.fixture(scope="module")
def pair(tmp_path_factory, redis_server):
    """Two replicas of one service: "a" and "b"."""
    a = replica(tmp_path_factory, redis_server, "replica-a").start()
    b = replica(tmp_path_factory, redis_server, "replica-b").start()
    yield a, b
    for process in (a, b):
        assert process.stop() == 0, process.log_text()[-3000:]


@pytest.fixture
async def clients_of():
    made = []

    def clients(gateway) -> dict:
        out = {protocol: make_client(protocol, gateway) for protocol in PROTOCOLS}
        made.extend(out.values())
        return out

    yield clients
    for client in made:
        await client.close()


def status_request(request_id: str, from_sequence: int = 0) -> spb.StreamExecutionStatusRequest:
    return spb.StreamExecutionStatusRequest(request_id=request_id, from_sequence=from_sequence)


def streams(clients: dict, request_id: str, key: str, from_sequence: int = 0) -> dict[str, StreamHandle]:
    return {protocol: StreamHandle(client, "StreamExecutionStatus", status_request(request_id, from_sequence), key)
            for protocol, client in clients.items()}


async def each_filled_once_in_order(handles: dict[str, StreamHandle], first: int = 1) -> None:
    for protocol, handle in handles.items():
        messages = await handle.finished()
        assert handle.error is None, (protocol, handle.error)
        events = transitions(messages)
        assert [e.sequence for e in events] == list(range(first, 10)), protocol
        assert events[-1].terminal and events[-1].result.status == pb.TRADE_STATUS_FILLED, protocol
        assert not any(e.terminal for e in events[:-1]), protocol


async def test_a_trade_on_one_replica_is_followed_from_another_on_every_protocol(pair, clients_of):
    a, b = pair
    key = a.key("alice")
    on_a, on_b = clients_of(a), clients_of(b)
    request_id = unique("across")
    before = streams(on_b, request_id, key)  # the trade does not exist yet: they wait for it
    execution = asyncio.create_task(on_a["grpc"].unary("ExecuteTrade", trade(request_id), key))
    await before["grpc"].wait_for(lambda s: any(m.stage == pb.TRADE_STATUS_QUOTED for m in s.messages), what="QUOTED")
    during, resumed = streams(on_b, request_id, key), streams(on_b, request_id, key, from_sequence=3)
    for protocol, handle in before.items():  # quiet while it builds: heartbeats, saying where it is
        await handle.wait_for(lambda s: any(m.kind == pb.STATUS_KIND_HEARTBEAT for m in s.messages),
                              what=f"a heartbeat on {protocol}")
    result, _ = await execution
    assert result.status == pb.TRADE_STATUS_FILLED
    after = streams(on_b, request_id, key)
    for handles in (before, during, after):
        await each_filled_once_in_order(handles)
    await each_filled_once_in_order(resumed, first=3)
    for protocol, handle in before.items():
        beats = [m for m in handle.messages if m.kind == pb.STATUS_KIND_HEARTBEAT]
        assert beats and all(b.request_id == request_id and b.sequence == 0 and b.message for b in beats), protocol
        assert any(b.stage == pb.TRADE_STATUS_QUOTED and b.percent_complete == 35 for b in beats), protocol


async def test_many_streams_of_another_replica_s_trade_get_every_event_and_are_released(pair, redis_server):
    """More streams following trades that run elsewhere than a replica's Redis connection pool
    holds (100): each gets its trade's every event, the replica's Redis connections stay few, and
    the streams its clients leave are released at once."""
    a, b = pair
    key = a.key("alice")
    runner, followers = GrpcClient(a.grpc_target), [GrpcClient(b.grpc_target) for _ in range(4)]
    redis = redis_server.client()
    connections = redis.info("clients")["connected_clients"]
    request_ids = [unique("fan") for _ in range(4)]
    executions = [asyncio.create_task(runner.unary("ExecuteTrade", trade(r), key)) for r in request_ids]
    handles = [StreamHandle(followers[n % 4], "StreamExecutionStatus", status_request(request_ids[n % 4]), key)
               for n in range(160)]
    left = [StreamHandle(followers[0], "StreamExecutionStatus", status_request(request_ids[0]), key)
            for _ in range(20)]
    for handle in handles + left:
        await handle.wait_for(lambda s: len(s.messages) >= 1, what="a first event")
    assert redis.info("clients")["connected_clients"] - connections < 20
    for handle in left:  # these clients go away mid-stream
        await handle.cancel()
    await eventually(lambda: _subscribers(b, len(handles)), what="the streams left released")
    try:
        for execution in executions:
            assert (await execution)[0].status == pb.TRADE_STATUS_FILLED
        await each_filled_once_in_order(dict(enumerate(handles)))
        await eventually(lambda: _subscribers(b, 0), what="every stream released")
    finally:
        for client in (runner, *followers):
            await client.close()


async def _subscribers(gateway, count: int) -> bool:
    return await metric(gateway, "tradewire_stream_subscribers") == count


async def test_a_request_id_run_again_on_another_replica_is_streamed_as_its_new_run(pair, clients_of):
    """The first call reached b and went away before the send (CANCELLED, which a retry runs
    again); the retry reached a. b's streams and GetTrade follow the new run, not b's old end."""
    a, b = pair
    key = a.key("bob")
    on_a, on_b = clients_of(a), clients_of(b)
    request_id = unique("again")
    first = asyncio.create_task(on_b["grpc"].unary("ExecuteTrade", trade(request_id), key))
    await eventually(lambda: found(on_b["grpc"], key, request_id), what="the first call's trade")
    first.cancel()  # the caller hangs up before the send
    await asyncio.gather(first, return_exceptions=True)
    stopped = await eventually(lambda: _ended(on_b["grpc"], key, request_id), what="the first run's end")
    assert (stopped.status, stopped.error.reason) == (pb.TRADE_STATUS_CANCELLED, "CANCELLED")

    retry = asyncio.create_task(on_a["grpc"].unary("ExecuteTrade", trade(request_id), key))
    await eventually(lambda: _running(on_a["grpc"], key, request_id), what="the new run")
    during = streams(on_b, request_id, key)
    now_on_b = await found(on_b["grpc"], key, request_id)
    assert now_on_b.trade_id != stopped.trade_id and now_on_b.status != pb.TRADE_STATUS_CANCELLED
    result, _ = await retry
    assert result.status == pb.TRADE_STATUS_FILLED
    await each_filled_once_in_order(during)
    await each_filled_once_in_order(streams(on_b, request_id, key))


async def _ended(client, key: str, request_id: str) -> pb.TradeResult | None:
    result = await found(client, key, request_id)
    return result if result is not None and result.status >= pb.TRADE_STATUS_FILLED else None


async def _running(client, key: str, request_id: str) -> bool:
    result = await found(client, key, request_id)
    return result is not None and pb.TRADE_STATUS_RECEIVED <= result.status < pb.TRADE_STATUS_FILLED


async def test_a_replica_shutting_down_ends_streams_of_another_s_trade_with_where_to_resume(
        pair, tmp_path_factory, redis_server, clients_of):
    a, _ = pair
    leaving = replica(tmp_path_factory, redis_server, "replica-leaving").start()
    try:
        key = a.key("alice")
        request_id = unique("leaving")
        on_a, on_leaving = clients_of(a), clients_of(leaving)
        execution = asyncio.create_task(on_a["grpc"].unary("ExecuteTrade", trade(request_id), key))
        handles = streams(on_leaving, request_id, key)
        for protocol, handle in handles.items():
            await handle.wait_for(lambda s: any(m.stage == pb.TRADE_STATUS_QUOTED for m in s.messages),
                                  what=f"QUOTED on {protocol}")
        leaving.terminate()
        for protocol, handle in handles.items():
            messages = await handle.finished(timeout=10)
            assert handle.error is None, (protocol, handle.error)
            last = messages[-1]
            resume_at = transitions(messages)[-1].sequence + 1
            assert last.kind == pb.STATUS_KIND_SHUTDOWN and f"from_sequence={resume_at}" in last.message, protocol
        assert leaving.wait_exit(30) == 0
        result, _ = await execution
        assert result.status == pb.TRADE_STATUS_FILLED  # it ran on a all along
    finally:
        leaving.stop()
