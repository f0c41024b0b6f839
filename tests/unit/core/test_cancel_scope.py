"""Cancelling a trade takes the scope trading in its mode takes: a key that may only trade
PAPER cannot stop its owner's LIVE trades — by CancelTrade or inside a TradeSession."""

import pytest

from support.in_process import call_with_key, core_with_key
from tradewire.core.errors import TradewireError
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

PAPER_KEY = "tw_paperkey_" + "p" * 40


@pytest.fixture
async def core(tmp_path):
    async with core_with_key(tmp_path, PAPER_KEY, "pat") as made:
        made.store.claim("pat", "live-1", "fp", pb.TradeResult(request_id="live-1", mode=pb.TRADING_MODE_LIVE,
                                                               status=pb.TRADE_STATUS_SUBMITTED))
        yield made


def ctx(method: str):
    return call_with_key(PAPER_KEY, method)


async def test_a_paper_key_cannot_cancel_its_owner_s_live_trade(core):
    with pytest.raises(TradewireError) as refused:
        await core.service.CancelTrade(spb.CancelTradeRequest(request_id="live-1"), ctx("CancelTrade"))
    assert refused.value.reason == "PERMISSION_DENIED" and "trade:live" in refused.value.message


async def test_nor_inside_a_session(core):
    async def requests():
        yield spb.TradeSessionRequest(cancel=spb.CancelTradeRequest(request_id="live-1"))

    answers = [r async for r in core.service.TradeSession(requests(), ctx("TradeSession"))]
    assert [(a.error.request_id, a.error.error.reason) for a in answers] == [("live-1", "PERMISSION_DENIED")]
