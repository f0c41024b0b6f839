"""A history page token fits only the caller it was given to: another caller's token (read off a
shared log, say) is refused naming page_token, as a token from another query is."""

from __future__ import annotations

import pytest

from support.in_process import call_with_key, core_with_key
from tradewire.core.auth.api_keys import hash_key
from tradewire.core.errors import TradewireError
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

ANN = "tw_tokenann_" + "a" * 40
BEN = "tw_tokenben_" + "b" * 40
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def key_entry(key: str, owner: str) -> dict:
    return {"prefix": key[:11], "sha256": hash_key(key), "owner": owner, "scopes": ["read", "trade:paper"]}


async def history(core, key: str, token: str = "") -> spb.GetTradeHistoryResponse:
    return await core.service.GetTradeHistory(spb.GetTradeHistoryRequest(page_size=1, page_token=token),
                                              call_with_key(key, "GetTradeHistory"))


async def test_a_page_token_fits_only_its_own_caller(tmp_path):
    auth = {"api_keys": [key_entry(ANN, "ann"), key_entry(BEN, "ben")]}
    async with core_with_key(tmp_path, ANN, "ann", auth=auth) as core:
        for n, key in enumerate((ANN, ANN, BEN, BEN)):
            trade = pb.TradeRequest(request_id=f"t-{n}", mode=pb.TRADING_MODE_PAPER,
                                    input_mint=USDC, output_mint=SOL, amount="1", slippage_bps=50)
            await core.service.ExecuteTrade(trade, call_with_key(key, "ExecuteTrade"))
        anns = (await history(core, ANN)).next_page_token
        assert anns and (await history(core, ANN, anns)).trades  # ann's own second page
        with pytest.raises(TradewireError) as refused:
            await history(core, BEN, anns)
    assert refused.value.reason == "VALIDATION_FAILED"
    assert [v.field for v in refused.value.field_violations] == ["page_token"]
