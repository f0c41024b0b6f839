"""A TradeSession that sends a request id another call is already running follows that trade;
when the other call goes away before the trade is sent (which stops it), the session, still
wanting it, runs it again — as a retry of ExecuteTrade does — instead of forwarding that
CANCELLED. CancelTrade stays final."""

import asyncio

from lifecycle_support import until
from support.in_process import call_with_key, core_with_key
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

KEY = "tw_sessagan_" + "a" * 40
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
PAPER = {"realtime": True, "latency_ms": 1000}  # 0.5 s before a paper trade is sent


def trade(request_id: str) -> pb.TradeRequest:
    return pb.TradeRequest(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                           amount="0.01", slippage_bps=100)


async def session_following_a_running_call(core, request_id: str):
    """The ExecuteTrade call running ``request_id``, and a session (sent the same trade) reading
    its statuses into ``statuses`` until it ends."""
    first_call = asyncio.create_task(core.service.ExecuteTrade(trade(request_id), call_with_key(KEY, "ExecuteTrade")))
    await until(lambda: core.runner.in_flight() == 1)

    async def requests():
        yield spb.TradeSessionRequest(trade=trade(request_id))

    statuses: list[pb.ExecutionStatus] = []

    async def read() -> None:
        async for response in core.service.TradeSession(requests(), call_with_key(KEY, "TradeSession")):
            statuses.append(response.status)

    session = asyncio.create_task(read())
    await until(lambda: len(statuses) >= 1)  # following the trade the call started
    return first_call, session, statuses


async def test_the_session_runs_the_trade_when_the_call_that_started_it_goes_away(tmp_path):
    async with core_with_key(tmp_path, KEY, "sam", paper=PAPER) as core:
        first_call, session, statuses = await session_following_a_running_call(core, "shared-1")
        first_call.cancel()  # its caller hung up before the send
        await asyncio.gather(first_call, return_exceptions=True)
        await asyncio.wait_for(session, 10)

        stages = [s.stage for s in statuses]
        assert pb.TRADE_STATUS_CANCELLED not in stages and stages[-1] == pb.TRADE_STATUS_FILLED
        assert [s.sequence for s in statuses[-9:]] == list(range(1, 10))  # the new run, from 1
        assert core.store.get("sam", "shared-1").result.status == pb.TRADE_STATUS_FILLED


async def test_a_trade_cancelled_with_cancel_trade_ends_the_session_s_follow_cancelled(tmp_path):
    async with core_with_key(tmp_path, KEY, "sam", paper=PAPER) as core:
        first_call, session, statuses = await session_following_a_running_call(core, "shared-2")
        await core.service.CancelTrade(spb.CancelTradeRequest(request_id="shared-2"), call_with_key(KEY, "CancelTrade"))
        await asyncio.gather(first_call, return_exceptions=True)
        await asyncio.wait_for(session, 10)

        assert statuses[-1].stage == pb.TRADE_STATUS_CANCELLED
        assert core.store.get("sam", "shared-2").result.status == pb.TRADE_STATUS_CANCELLED
