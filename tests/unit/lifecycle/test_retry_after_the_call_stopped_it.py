"""A trade its caller's own call stopped before anything was sent (the call's deadline passed,
or the caller went away — a dropped connection) runs again when the caller retries the same
request id and payload; one stopped by CancelTrade stays cancelled."""

import asyncio
import time

import pytest

from lifecycle_support import until
from support.in_process import call_with_key, core_with_key
from tradewire.core.errors import TradewireError
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

KEY = "tw_retrystp_" + "r" * 40
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


@pytest.fixture
async def core(tmp_path):
    async with core_with_key(tmp_path, KEY, "rita", paper={"realtime": True, "latency_ms": 600}) as made:
        yield made


def order(request_id: str) -> pb.TradeRequest:
    return pb.TradeRequest(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                           amount="0.01", slippage_bps=100)


def call(deadline_s: float | None = None):
    ctx = call_with_key(KEY, "ExecuteTrade")
    ctx.deadline = None if deadline_s is None else time.monotonic() + deadline_s
    return ctx


async def test_a_trade_its_calls_deadline_stopped_runs_again_on_a_retry(core):
    with pytest.raises(TradewireError) as stopped:
        await core.service.ExecuteTrade(order("dl-1"), call(0.1))
    assert stopped.value.reason == "DEADLINE_EXCEEDED"
    await until(lambda: core.store.get("rita", "dl-1").result.status == pb.TRADE_STATUS_EXPIRED)
    again = await core.service.ExecuteTrade(order("dl-1"), call())
    assert again.status == pb.TRADE_STATUS_FILLED


async def test_a_trade_whose_caller_went_away_runs_again_on_a_retry(core):
    first = asyncio.create_task(core.service.ExecuteTrade(order("gone-1"), call()))
    await until(lambda: core.runner.in_flight("rita") == 1)
    first.cancel()  # the connection dropped
    await asyncio.gather(first, return_exceptions=True)
    await until(lambda: core.store.get("rita", "gone-1").result.status == pb.TRADE_STATUS_CANCELLED)
    again = await core.service.ExecuteTrade(order("gone-1"), call())
    assert again.status == pb.TRADE_STATUS_FILLED


async def test_a_trade_cancelled_with_cancel_trade_stays_cancelled(core):
    first = asyncio.create_task(core.service.ExecuteTrade(order("cx-1"), call()))
    await until(lambda: core.runner.in_flight("rita") == 1)
    await core.service.CancelTrade(spb.CancelTradeRequest(request_id="cx-1"), call_with_key(KEY, "CancelTrade"))
    await asyncio.gather(first, return_exceptions=True)
    with pytest.raises(TradewireError) as replayed:
        await core.service.ExecuteTrade(order("cx-1"), call())
    assert replayed.value.reason == "TRADE_CANCELLED"
