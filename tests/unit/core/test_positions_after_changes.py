"""GetPositions after the gateway changed under a caller's book: a restart during a price
outage, and a mint the operator took off the market. The caller's balances are the store's and
are always served; only what needs a price or the mint's listing is left out, and said why."""

from __future__ import annotations

import time
from decimal import Decimal

from support.in_process import call_with_key, core_with_key
from tradewire.core.config import DEFAULT_MINTS, DEFAULT_POOLS, DEFAULT_PRICES
from tradewire.core.errors import TradewireError
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

KEY = "tw_poschang_" + "c" * 40
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
SOL = "So11111111111111111111111111111111111111112"


async def buy_bonk(core) -> None:
    buy = pb.TradeRequest(request_id="bonk-1", mode=pb.TRADING_MODE_PAPER, input_mint=USDC, output_mint=BONK,
                          amount="25", slippage_bps=100)
    assert (await core.service.ExecuteTrade(buy, call_with_key(KEY, "ExecuteTrade"))).status == pb.TRADE_STATUS_FILLED


async def positions(core) -> spb.GetPositionsResponse:
    return await core.service.GetPositions(spb.GetPositionsRequest(mode=pb.TRADING_MODE_PAPER),
                                           call_with_key(KEY, "GetPositions"))


async def test_a_restarted_gateway_serves_balances_while_its_price_source_is_down(tmp_path, monkeypatch):
    async with core_with_key(tmp_path, KEY, "pia") as core:
        await buy_bonk(core)
        before = {p.mint: p.amount for p in (await positions(core)).positions}

    async with core_with_key(tmp_path, KEY, "pia") as core:
        def down(*_args, **_kwargs):
            raise TradewireError("UPSTREAM_UNAVAILABLE", "the price source does not answer")
        monkeypatch.setattr(type(core.service.quotes), "value", down)
        answer = await positions(core)  # (it failed UNAVAILABLE: the wallet was priced anew first)

    assert {p.mint: p.amount for p in answer.positions} == before
    assert answer.unvalued_positions == len(before)
    assert all(p.valuation_error.startswith("UPSTREAM_UNAVAILABLE") and not p.market_value for p in answer.positions)


async def test_a_mint_taken_off_the_market_leaves_the_other_positions_served(tmp_path):
    async with core_with_key(tmp_path, KEY, "pia") as core:
        await buy_bonk(core)
        before = {p.mint: p for p in (await positions(core)).positions}

    without_bonk = {
        "mints": [m.model_dump() for m in DEFAULT_MINTS if m.symbol != "BONK"],
        "pools": [p.model_dump() for p in DEFAULT_POOLS if "BONK" not in (p.base, p.quote)],
        "prices_usd": {symbol: str(price) for symbol, price in DEFAULT_PRICES.items() if symbol != "BONK"},
    }
    async with core_with_key(tmp_path, KEY, "pia", market=without_bonk) as core:
        answer = await positions(core)  # (it failed INVALID_ARGUMENT UNSUPPORTED_PAIR "mint")

    by_mint = {p.mint: p for p in answer.positions}
    assert set(by_mint) == set(before)
    bonk = by_mint.pop(BONK)
    assert (bonk.amount, bonk.symbol, bonk.market_value) == ("", "", "")
    assert bonk.valuation_error.startswith("MINT_NOT_LISTED")
    assert f"holds {Decimal(before[BONK].amount).scaleb(5):f} " in bonk.valuation_error  # (BONK: 5 decimals)
    assert bonk.cost_basis == before[BONK].cost_basis and bonk.realized_pnl == before[BONK].realized_pnl
    assert all(p.amount == before[m].amount and p.market_value for m, p in by_mint.items())
    assert answer.unvalued_positions == 1


async def test_a_position_s_updated_at_is_when_its_holding_last_changed(tmp_path):
    """(It was the time of the call, for every position.)"""
    def at(answer) -> dict[str, int]:
        return {p.mint: p.updated_at.ToNanoseconds() for p in answer.positions}

    async with core_with_key(tmp_path, KEY, "pia") as core:
        started = time.time_ns()
        await buy_bonk(core)  # USDC → BONK (and the SOL fee)
        bought = at(await positions(core))
        between = time.time_ns()
        sell = pb.TradeRequest(request_id="sol-1", mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                               amount="0.1", slippage_bps=100)
        assert (await core.service.ExecuteTrade(sell, call_with_key(KEY, "ExecuteTrade"))).status == \
            pb.TRADE_STATUS_FILLED
        sold = at(await positions(core))
        again = at(await positions(core))

    assert started <= bought[BONK] <= between and sold[BONK] == bought[BONK]  # untouched by the SOL sale
    assert between <= sold[USDC] and between <= sold[SOL]
    assert again == sold  # reading them changes nothing
