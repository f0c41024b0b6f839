"""What PAPER fills charge and book, against figures computed here: a swap whose output rounds
to nothing is not a fill, an exact-out swap never pays more than its quote plus the tolerance,
a token account is paid for once however many first buys race for it, and the books add up
(realised plus unrealised PnL is what the wallet's value moved, fees included)."""

import asyncio
from decimal import Decimal
from fractions import Fraction

import pytest

from support.in_process import call_with_key, core_maker
from tradewire.core.context import CallContext
from tradewire.core.errors import TradewireError
from tradewire.core.order import ATA_RENT_LAMPORTS, BASE_FEE_LAMPORTS_PER_SIGNATURE
from tradewire.core.quotes import BPS
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

KEY = "tw_papmoney_" + "m" * 40
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDT = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
FEE = BASE_FEE_LAMPORTS_PER_SIGNATURE


@pytest.fixture
async def make_core(tmp_path):
    async with core_maker(tmp_path, KEY, "mona") as make:
        yield make


def _ctx(method: str = "ExecuteTrade") -> CallContext:
    return call_with_key(KEY, method)


def _trade(request_id: str, input_mint: str, output_mint: str, amount: str, slippage_bps: int,
           exact_out: bool = False, jito_tip: int = 0) -> pb.TradeRequest:
    request = pb.TradeRequest(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=input_mint,
                              output_mint=output_mint, amount=amount, slippage_bps=slippage_bps,
                              swap_mode=pb.SWAP_MODE_EXACT_OUT if exact_out else pb.SWAP_MODE_EXACT_IN)
    if jito_tip:
        request.mev_protection.strategy = pb.MEV_STRATEGY_JITO_BUNDLE
        request.mev_protection.jito_tip_lamports = jito_tip
    return request


def _paper(core):
    return core.service.executors[pb.TRADING_MODE_PAPER]


async def _amounts(core) -> dict[str, int]:
    return {mint: h.amount for mint, h in (await _paper(core).wallet("mona")).items()}


async def test_an_exact_in_swap_whose_output_drifts_to_nothing_fails_instead_of_filling(make_core):
    core = await make_core()
    market = core.service.market
    sol, usdc = market.by_symbol("SOL"), market.by_symbol("USDC")
    # 8 lamports after the 25 bps pool fee is 7; at 150 USDC per SOL that buys 1.05 atomic USDC.
    quote = await core.quotes.quote(sol, usdc, 8, False, 50)
    assert (quote.out_amount, quote.other_amount_threshold) == (1, 0)  # 0.5 % of 1 unit rounds the floor to 0
    _paper(core)._drift_factor = lambda: Decimal("0.999")  # the price slips 0.1 %: 1 unit becomes 0.999, so 0
    before = await _amounts(core)

    with pytest.raises(TradewireError) as caught:
        await core.service.ExecuteTrade(_trade("dust-1", SOL, USDC, "0.000000008", 50), _ctx())
    assert caught.value.reason == "SLIPPAGE_EXCEEDED" and "at least 0.000001 required" in caught.value.message

    after = await _amounts(core)
    assert after[SOL] == before[SOL] - FEE  # the failed transaction's fee, not the 8 lamports
    assert after[USDC] == before[USDC]
    failed = await core.service.GetTrade(spb.GetTradeRequest(request_id="dust-1"), _ctx("GetTrade"))
    assert failed.status == pb.TRADE_STATUS_FAILED and failed.amount_in == "0"


async def test_an_exact_out_swap_never_pays_more_than_the_quoted_input_plus_the_tolerance(make_core):
    core = await make_core()
    market = core.service.market
    usdc, sol = market.by_symbol("USDC"), market.by_symbol("SOL")
    slippage_bps = 50
    quote = await core.quotes.quote(usdc, sol, 2_500_000_000, True, slippage_bps)
    most = Fraction(quote.in_amount * (BPS + slippage_bps), BPS)  # the trader's stated maximum
    assert most.denominator != 1
    just_over = int(most) + 1  # the least whole input beyond it
    # The price moves against the trader so that the swap would take exactly that input.
    _paper(core)._drift_factor = lambda: Decimal(quote.in_amount) / (Decimal(just_over) - Decimal("0.5"))
    before = await _amounts(core)

    with pytest.raises(TradewireError) as caught:
        await core.service.ExecuteTrade(_trade("max-1", USDC, SOL, "2.5", slippage_bps, exact_out=True), _ctx())
    assert caught.value.reason == "SLIPPAGE_EXCEEDED"
    assert f"would have sold {usdc.to_units(just_over)} USDC" in caught.value.message
    failed = await core.service.GetTrade(spb.GetTradeRequest(request_id="max-1"), _ctx("GetTrade"))
    assert usdc.to_atomic(failed.other_amount_threshold) == int(most)
    after = await _amounts(core)
    assert after[USDC] == before[USDC]


async def test_two_first_buys_of_a_token_landing_together_pay_its_account_rent_once(make_core):
    core = await make_core(drift_bps_per_s=0)
    paper = _paper(core)
    both_in_flight = asyncio.Barrier(2)

    async def in_step() -> None:  # each trade waits for the other at building and at landing
        await both_in_flight.wait()

    paper._wait_half_latency = in_step
    before = await _amounts(core)
    first, second = await asyncio.wait_for(asyncio.gather(
        core.service.ExecuteTrade(_trade("ata-1", USDC, JUP, "10", 100), _ctx()),
        core.service.ExecuteTrade(_trade("ata-2", USDC, JUP, "10", 100), _ctx())), timeout=30)

    assert first.status == second.status == pb.TRADE_STATUS_FILLED
    assert first.fees.ata_rent_lamports + second.fees.ata_rent_lamports == ATA_RENT_LAMPORTS
    assert first.fees.total_lamports + second.fees.total_lamports == 2 * FEE + ATA_RENT_LAMPORTS
    after = await _amounts(core)
    assert after[SOL] == before[SOL] - 2 * FEE - ATA_RENT_LAMPORTS


async def test_realised_plus_unrealised_pnl_is_what_the_wallet_value_moved_fees_included(make_core):
    """Prices of the price table do not move, so the wallet's PnL is its value now minus its
    value at the start: every fee, rent, tip, pool fee and price impact shows up in it."""
    core = await make_core(drift_bps_per_s=5, seed=7)
    positions = spb.GetPositionsRequest(mode=pb.TRADING_MODE_PAPER)
    start = await core.service.GetPositions(positions, _ctx("GetPositions"))
    assert Decimal(start.total_pnl) == 0
    trades = [
        _trade("p-1", USDC, SOL, "1000", 100),
        _trade("p-2", SOL, JUP, "3", 100),  # a new token account: rent
        _trade("p-3", JUP, USDC, "100", 100, exact_out=True),  # a partial sale of the JUP lot
        _trade("p-4", USDC, BONK, "500", 100, jito_tip=10_000),  # 5 decimals, a tip
        _trade("p-5", BONK, USDC, "1000000.5", 100),
        _trade("p-6", SOL, USDT, "2.5", 100),
        _trade("p-7", USDT, SOL, "0.1", 100, exact_out=True),  # buys back SOL, which pays the fees
        _trade("p-8", JUP, SOL, "0.0001", 0),  # a dust sale
    ]
    for request in trades:
        result = await core.service.ExecuteTrade(request, _ctx())
        assert result.status == pb.TRADE_STATUS_FILLED
    _paper(core)._drift_factor = lambda: Decimal("0.99")  # a failed swap still pays its fee
    with pytest.raises(TradewireError):
        await core.service.ExecuteTrade(_trade("p-9", SOL, USDC, "1", 10), _ctx())

    now = await core.service.GetPositions(positions, _ctx("GetPositions"))
    assert now.unvalued_positions == 0
    moved = Decimal(now.total_market_value) - Decimal(start.total_market_value)
    assert moved < 0  # fees and pool fees only ever cost
    assert Decimal(now.total_pnl) == moved
    realized = sum(Decimal(p.realized_pnl) for p in now.positions)
    unrealized = sum(Decimal(p.unrealized_pnl) for p in now.positions)
    assert realized + unrealized == Decimal(now.total_pnl)
    for position in now.positions:
        assert Decimal(position.cost_basis) >= 0 and Decimal(position.amount) >= 0
        assert Decimal(position.unrealized_pnl) == Decimal(position.market_value) - Decimal(position.cost_basis)
