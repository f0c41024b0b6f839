"""TradeSession in the core (no sockets): a burst of trades from a reader that keeps up is
taken whole; a reader that stops reading holds back the session's requests (bounded queue) and
is dropped with RESOURCE_EXHAUSTED, its trades go on; shutdown ends a session with one SHUTDOWN
status; new calls are refused while draining."""

import asyncio

import pytest

from lifecycle_support import until
from support.in_process import call_with_key, core_with_key
from tradewire.core.context import CallContext
from tradewire.core.errors import TradewireError
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

KEY = "tw_sesstest_" + "s" * 40
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
MAX_LAG = 20  # room for two trades' 9 statuses, not three
SLOW_CONSUMER_S = 0.3


@pytest.fixture
async def core(tmp_path):
    async with core_with_key(tmp_path, KEY, "sam", streams={"session_max_lag": MAX_LAG, "heartbeat_s": 30,
                                                            "slow_consumer_s": SLOW_CONSUMER_S}) as made:
        yield made


def ctx(method: str = "TradeSession") -> CallContext:
    return call_with_key(KEY, method)


def session_trade(request_id: str) -> spb.TradeSessionRequest:
    return spb.TradeSessionRequest(trade=pb.TradeRequest(
        request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC, amount="0.01",
        slippage_bps=100))


async def test_a_burst_of_trades_larger_than_the_queue_is_taken_whole_by_a_reader_that_keeps_up(core):
    ids = [f"burst-{i}" for i in range(30)]  # 270 statuses through a queue of 20

    async def requests():
        for request_id in ids:
            yield session_trade(request_id)

    responses = [response async for response in core.service.TradeSession(requests(), ctx())]
    assert all(r.WhichOneof("event") == "status" for r in responses)
    by_trade = {request_id: [r.status.sequence for r in responses if r.status.request_id == request_id]
                for request_id in ids}
    assert all(sequences == list(range(1, 10)) for sequences in by_trade.values()), by_trade
    assert all(core.store.get("sam", request_id).result.status == pb.TRADE_STATUS_FILLED for request_id in ids)
    assert core.metrics.stream_closes.labels("session", "completed")._value.get() == 1


async def test_a_reader_that_stops_reading_holds_back_the_requests_and_is_dropped(core):
    async def requests():
        for i in range(5):  # 45 statuses to come, far more than MAX_LAG
            yield session_trade(f"slow-{i}")
        await asyncio.Event().wait()  # the client keeps the session open

    session = core.service.TradeSession(requests(), ctx())
    received = []

    async def read_one_then_stop():  # as a transport serving the session
        received.append(await anext(session))
        await asyncio.Event().wait()

    reader = asyncio.create_task(read_one_then_stop())
    await until(lambda: reader.done(), timeout=SLOW_CONSUMER_S * 20)  # the watchdog cancels it
    await session.aclose()
    assert reader.cancelled() and received[0].status.request_id == "slow-0"
    assert core.metrics.stream_closes.labels("session", "slow_consumer")._value.get() == 1
    assert core.hub.open_streams == 0
    read = [i for i in range(5) if core.store.get("sam", f"slow-{i}") is not None]
    assert read == [0, 1]  # two trades' statuses fill the queue: the third request was not read
    await until(lambda: core.runner.in_flight() == 0)
    assert all(core.store.get("sam", f"slow-{i}").result.status == pb.TRADE_STATUS_FILLED for i in read)


async def test_shutdown_ends_a_session_with_one_shutdown_status(core):
    sent = asyncio.Event()

    async def requests():
        yield session_trade("before-drain")
        sent.set()
        await asyncio.Event().wait()

    session = core.service.TradeSession(requests(), ctx())
    responses = []

    async def read():
        async for response in session:
            responses.append(response)

    reader = asyncio.create_task(read())
    await until(lambda: any(r.status.terminal for r in responses))
    core.begin_drain()
    with pytest.raises(TradewireError) as refused:
        await core.service.ExecuteTrade(session_trade("after").trade, ctx("ExecuteTrade"))
    assert refused.value.reason == "SHUTTING_DOWN" and refused.value.code.name == "UNAVAILABLE"
    health = await core.service.HealthCheck(spb.HealthCheckRequest(), ctx("HealthCheck"))
    assert health.status == spb.SERVING_STATUS_NOT_SERVING
    assert await core.drain_trades(1.0) == 0
    assert await core.close_streams(1.0) == 0
    await asyncio.wait_for(reader, 2)
    assert responses[-1].status.kind == pb.STATUS_KIND_SHUTDOWN
    assert [r.status.sequence for r in responses[:-1]] == list(range(1, 10))
