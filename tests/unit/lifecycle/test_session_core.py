"""TradeSession in the core (no sockets): a reader that falls behind is dropped with
RESOURCE_EXHAUSTED after a bounded queue, its trades go on; shutdown ends a session with one
SHUTDOWN status; new calls are refused while draining."""

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
MAX_LAG = 20  # more than one trade's 9 statuses (a burst), fewer than five trades'


@pytest.fixture
async def core(tmp_path):
    async with core_with_key(tmp_path, KEY, "sam", streams={"session_max_lag": MAX_LAG, "heartbeat_s": 30}) as made:
        yield made


def ctx(method: str = "TradeSession") -> CallContext:
    return call_with_key(KEY, method)


def session_trade(request_id: str) -> spb.TradeSessionRequest:
    return spb.TradeSessionRequest(trade=pb.TradeRequest(
        request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC, amount="0.01",
        slippage_bps=100))


async def test_a_reader_that_falls_behind_is_dropped_and_its_trades_go_on(core):
    async def requests():
        for i in range(5):  # 45 statuses to come, far more than MAX_LAG
            yield session_trade(f"slow-{i}")
        await asyncio.Event().wait()  # the client keeps the session open

    session = core.service.TradeSession(requests(), ctx())
    received = [await anext(session)]
    await until(lambda: core.runner.in_flight() == 0 and core.store.get("sam", "slow-4") is not None
                and core.store.get("sam", "slow-4").result.status == pb.TRADE_STATUS_FILLED)
    with pytest.raises(TradewireError) as failure:
        async for response in session:
            received.append(response)
    assert failure.value.reason == "SLOW_CONSUMER" and failure.value.code.name == "RESOURCE_EXHAUSTED"
    assert len(received) <= MAX_LAG + 1  # what was queued, and no more
    assert all(core.store.get("sam", f"slow-{i}").result.status == pb.TRADE_STATUS_FILLED for i in range(5))
    assert core.hub.open_streams == 0
    assert core.metrics.stream_closes.labels("session", "slow_consumer")._value.get() == 1


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
