"""GetPositions' per-token prices keep the token's precision: for a token worth a few atomic
units of the valuation token, amount × average_cost is the cost basis and amount ×
market_price the market value, to a millionth (prices rounded to whole atomic units of the
valuation token were a quarter and five per cent off)."""

from __future__ import annotations

from decimal import Decimal

from support.in_process import call_with_key, core_with_key
from tradewire.core.config import DEFAULT_PRICES
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

KEY = "tw_posprice_" + "p" * 40
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"


def close(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) <= abs(b) / 10**6


async def test_amount_times_a_cheap_token_s_prices_is_its_cost_basis_and_its_value(tmp_path):
    prices = {**{symbol: str(price) for symbol, price in DEFAULT_PRICES.items()}, "BONK": "0.0000199987"}
    async with core_with_key(tmp_path, KEY, "pat", market={"prices_usd": prices}) as core:
        buy = pb.TradeRequest(request_id="bonk-1", mode=pb.TRADING_MODE_PAPER, input_mint=USDC, output_mint=BONK,
                              amount="479.948875", slippage_bps=100)
        assert (await core.service.ExecuteTrade(buy, call_with_key(KEY, "ExecuteTrade"))).status == \
            pb.TRADE_STATUS_FILLED
        answer = await core.service.GetPositions(spb.GetPositionsRequest(mode=pb.TRADING_MODE_PAPER, mint=BONK),
                                                 call_with_key(KEY, "GetPositions"))
    (bonk,) = answer.positions
    amount = Decimal(bonk.amount)
    assert close(amount * Decimal(bonk.average_cost), Decimal(bonk.cost_basis)), bonk
    assert close(amount * Decimal(bonk.market_price), Decimal(bonk.market_value)), bonk
    assert Decimal(bonk.market_price) == Decimal("0.0000199987")  # the price table's, to the token's precision
