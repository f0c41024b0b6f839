"""When a replica stops (a stall, a crash, a shutdown) another one takes over its trades that
have not passed the point of no return, and its PAPER trades past it, and finishes them — once:
a stalled replica that wakes up can no longer send or book them."""

import asyncio
import os
import signal
from decimal import Decimal

import pytest
import redis

from support.clients import GrpcClient, RpcFailure
from support.gateway_process import GatewayProcess
from support.trading import balance, equals, eventually, metric, reached, stage_on, trade, transitions, unique
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

TTL_S = 1.5


@pytest.fixture
def replicas(tmp_path, redis_server):
    # A trade an earlier test left unfinished in this store would be adopted and booked here.
    redis.Redis.from_url(redis_server.url).flushdb()
    env = {
        "TRADEWIRE_SHARED__REDIS_URL": redis_server.url,
        "TRADEWIRE_SHARED__REPLICA_TTL_S": str(TTL_S),
        "TRADEWIRE_PAPER__REALTIME": "true",
        "TRADEWIRE_PAPER__LATENCY_MS": "8000",  # 4 s building before the point of no return, 4 s landing
        "TRADEWIRE_SHUTDOWN__DEADLINE_S": "3",
        "TRADEWIRE_SHUTDOWN__FINAL_S": "1",
    }
    a = GatewayProcess(tmp_path / "a", env=dict(env)).start()
    b = GatewayProcess(tmp_path / "b", env=dict(env)).start()
    yield a, b
    if a.proc.poll() is None:
        os.kill(a.pid, signal.SIGCONT)
    a.stop()
    assert b.stop() == 0


@pytest.fixture
async def alice(replicas):
    """Alice's key and a gRPC client on each replica (A, B)."""
    a, b = replicas
    on_a, on_b = GrpcClient(a.grpc_target), GrpcClient(b.grpc_target)
    yield a.key("alice"), on_a, on_b
    await on_a.close()
    await on_b.close()


async def running_on_a_at(on_a: GrpcClient, on_b: GrpcClient, key: str, request, stage: int) -> asyncio.Task:
    """ExecuteTrade on replica A, once replica B sees the trade at ``stage``: the call, still running."""
    running = asyncio.create_task(on_a.unary("ExecuteTrade", request, key))
    await asyncio.wait_for(reached(on_b, key, request.request_id, stage), 20)
    return running


def owner(redis_url: str, request_id: str) -> bytes | None:
    return redis.Redis.from_url(redis_url).hget(f"tw:trade:alice:{request_id}", "replica")


async def test_a_stalled_replicas_trade_finishes_on_another_and_the_stalled_one_cannot_send_it(
        replicas, alice, redis_server):
    a, b = replicas
    key, on_a, on_b = alice
    request = trade(unique("stalled"), amount="0.2")
    before = await balance(on_b, key)
    running = await running_on_a_at(on_a, on_b, key, request, pb.TRADE_STATUS_QUOTED)  # building on A
    first_owner = owner(redis_server.url, request.request_id)
    os.kill(a.pid, signal.SIGSTOP)  # A stalls before the point of no return
    await eventually(lambda: owner(redis_server.url, request.request_id) != first_owner, timeout=10,
                     what="replica B adopting the trade")
    os.kill(a.pid, signal.SIGCONT)  # A wakes up and carries on with its copy of the trade

    with pytest.raises(RpcFailure) as taken:  # ...until it tries to commit it
        await asyncio.wait_for(running, 20)
    assert (taken.value.code, taken.value.reason) == ("UNAVAILABLE", "TRADE_TAKEN_OVER")
    await eventually(lambda: equals(stage_on(on_b, key, request.request_id), pb.TRADE_STATUS_FILLED), timeout=20,
                     what="the trade filled by B")
    filled, _ = await on_b.unary("GetTrade", spb.GetTradeRequest(request_id=request.request_id), key)
    fees = Decimal(filled.fees.total_lamports) / 10**9
    assert before - await balance(on_b, key) == Decimal("0.2") + fees  # sent and booked once
    replay, _ = await on_a.unary("ExecuteTrade", request, key)  # A answers the replay from the store
    assert replay == filled
    assert "was taken over by another replica" in a.log_text()
    assert await metric(a, "tradewire_trades_handed_over_total", direction="lost") == 1
    assert await metric(b, "tradewire_trades_handed_over_total", direction="adopted") == 1
    assert await metric(b, "tradewire_replicas_alive") == 2  # A beats again


async def test_a_replica_shut_down_hands_its_unfinished_trades_over_at_once(replicas, alice):
    a, b = replicas
    key, on_a, on_b = alice
    request = trade(unique("handover"), amount="0.2")
    running = await running_on_a_at(on_a, on_b, key, request, pb.TRADE_STATUS_QUOTED)  # building on A
    a.terminate()  # the 3 s deadline ends before the trade does: A keeps it unfinished, and leaves
    assert a.wait_exit(15) == 0
    with pytest.raises(RpcFailure) as refused:
        await running
    assert refused.value.reason == "SHUTTING_DOWN"
    await eventually(lambda: equals(stage_on(on_b, key, request.request_id), pb.TRADE_STATUS_FILLED), timeout=20,
                     what="the trade resumed and filled by B")
    events = await on_b.stream("StreamExecutionStatus",
                               spb.StreamExecutionStatusRequest(request_id=request.request_id), key)
    changes = transitions(events)
    assert [e.sequence for e in changes] == list(range(1, len(changes) + 1))
    assert changes[-1].stage == pb.TRADE_STATUS_FILLED


async def test_a_stalled_replicas_paper_trade_past_the_point_of_no_return_is_settled_by_another(replicas, alice):
    a, b = replicas
    key, on_a, on_b = alice
    request = trade(unique("landing"), amount="0.2")
    before = await balance(on_b, key)
    running = await running_on_a_at(on_a, on_b, key, request, pb.TRADE_STATUS_SUBMITTED)  # landing on A
    followed = asyncio.create_task(on_b.stream(
        "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request.request_id), key))
    os.kill(a.pid, signal.SIGSTOP)  # A stalls after the point of no return, before its paper fill lands
    await eventually(lambda: equals(stage_on(on_b, key, request.request_id), pb.TRADE_STATUS_EXPIRED),
                     timeout=15, what="replica B settling the trade")
    os.kill(a.pid, signal.SIGCONT)  # A wakes up and lands its fill...

    with pytest.raises(RpcFailure) as taken:  # ...which is refused: B voided its fill id
        await asyncio.wait_for(running, 20)
    assert (taken.value.code, taken.value.reason) == ("UNAVAILABLE", "TRADE_TAKEN_OVER")
    settled, _ = await on_b.unary("GetTrade", spb.GetTradeRequest(request_id=request.request_id), key)
    assert settled.status == pb.TRADE_STATUS_EXPIRED and "nothing was booked" in settled.error.message
    assert await balance(on_b, key) == before  # booked by neither
    changes = transitions(await asyncio.wait_for(followed, 20))
    numbers = [e.sequence for e in changes]  # B's end comes after every number A may have used: a gap
    assert numbers == sorted(set(numbers)) and numbers[:-1] == list(range(1, len(changes))), numbers
    assert [e.stage for e in changes[-2:]] == [pb.TRADE_STATUS_SUBMITTED, pb.TRADE_STATUS_EXPIRED]
