"""Edges of PAPER fills and the books they land in: the rounding of a drifted fill, a price
drift that cannot go negative, the token account a failed swap never created, and a mint's
configured minimum that is not a whole number of atomic units."""

from decimal import ROUND_CEILING, Decimal

import pytest

from support.in_process import call_with_key, core_maker
from tradewire.core.config import MarketConfig
from tradewire.core.context import CallContext
from tradewire.core.errors import TradewireError
from tradewire.core.market import Market
from tradewire.core.order import ATA_RENT_LAMPORTS
from tradewire.core.portfolio import FillLegs, Holding, apply_fill
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

KEY = "tw_papedges_" + "e" * 40
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"


@pytest.fixture
async def make_core(tmp_path):
    async with core_maker(tmp_path, KEY, "petra") as make:
        yield make


def _ctx() -> CallContext:
    return call_with_key(KEY, "ExecuteTrade")


def _trade(request_id: str, input_mint: str, output_mint: str, amount: str, slippage_bps: int,
           exact_out: bool = False) -> pb.TradeRequest:
    return pb.TradeRequest(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=input_mint,
                           output_mint=output_mint, amount=amount, slippage_bps=slippage_bps,
                           swap_mode=pb.SWAP_MODE_EXACT_OUT if exact_out else pb.SWAP_MODE_EXACT_IN)


def _paper(core):
    return core.service.executors[pb.TRADING_MODE_PAPER]


class _Draws:
    """A random source whose every normal draw is ``z`` standard deviations."""

    def __init__(self, z: float) -> None:
        self.z = z

    def gauss(self, mu: float, sigma: float) -> float:
        return mu + self.z * sigma


async def test_a_drifted_exact_out_fill_pays_the_input_rounded_up_and_an_exact_in_fill_gets_the_output_rounded_down(
        make_core):
    core = await make_core(drift_bps_per_s=5)
    factor = Decimal("1.0003")  # the price moved 3 bps in the trader's favour
    _paper(core)._drift_factor = lambda: factor
    market = core.service.market
    usdc, sol = market.by_symbol("USDC"), market.by_symbol("SOL")

    quote = await core.quotes.quote(usdc, sol, 2_500_000_000, True, 100)
    exact = Decimal(quote.in_amount) / factor
    assert exact != exact.to_integral_value()  # the case where rounding matters
    result = await core.service.ExecuteTrade(_trade("out-1", USDC, SOL, "2.5", 100, exact_out=True), _ctx())
    assert result.status == pb.TRADE_STATUS_FILLED and Decimal(result.amount_out) == Decimal("2.5")
    assert usdc.to_atomic(result.amount_in) == int(exact.to_integral_value(ROUND_CEILING))

    quote = await core.quotes.quote(sol, usdc, 1_000_000_000, False, 100)
    result = await core.service.ExecuteTrade(_trade("in-1", SOL, USDC, "1", 100), _ctx())
    assert usdc.to_atomic(result.amount_out) == int(Decimal(quote.out_amount) * factor)  # down


async def test_the_price_stays_positive_however_wild_the_drift(make_core):
    core = await make_core(drift_bps_per_s=10_000, latency_ms=1_000)  # one standard deviation: 100 %
    paper = _paper(core)
    paper._rng = _Draws(-2.0)  # a two-sigma fall
    assert 0 < paper._drift_factor() < 1
    before = await paper.wallet("petra")

    with pytest.raises(TradewireError) as caught:  # the price fell so far that the input needed breaks the limit
        await core.service.ExecuteTrade(_trade("wild-1", USDC, SOL, "0.1", 10_000, exact_out=True), _ctx())
    assert caught.value.reason == "SLIPPAGE_EXCEEDED"
    after = core.store.holdings("petra", pb.TRADING_MODE_PAPER)
    assert after[USDC].amount == before[USDC].amount  # nothing swapped, nothing paid in USDC
    assert after[SOL].amount == before[SOL].amount - 5_000  # only the signature fee

    result = await core.service.ExecuteTrade(_trade("wild-2", SOL, USDC, "0.1", 10_000), _ctx())
    assert result.status == pb.TRADE_STATUS_FILLED and Decimal(result.amount_out) > 0


async def test_a_swap_failed_on_chain_creates_no_token_account_so_the_first_real_buy_pays_its_rent(make_core):
    core = await make_core(drift_bps_per_s=5)
    paper = _paper(core)

    paper._rng = _Draws(-1.0)  # the price falls: a zero-slippage buy lands below its floor
    with pytest.raises(TradewireError) as caught:
        await core.service.ExecuteTrade(_trade("fail-1", USDC, JUP, "10", 0), _ctx())
    assert caught.value.reason == "SLIPPAGE_EXCEEDED"
    failed = await core.service.GetTrade(spb.GetTradeRequest(request_id="fail-1"), _ctx())
    assert failed.fees.ata_rent_lamports == 0  # rolled back with the swap
    assert JUP not in core.store.holdings("petra", pb.TRADING_MODE_PAPER)

    paper._rng = _Draws(0.0)
    bought = await core.service.ExecuteTrade(_trade("buy-1", USDC, JUP, "10", 0), _ctx())
    assert bought.status == pb.TRADE_STATUS_FILLED
    assert bought.fees.ata_rent_lamports == ATA_RENT_LAMPORTS  # the account is created now
    assert bought.fees.total_lamports == 5_000 + ATA_RENT_LAMPORTS

    again = await core.service.ExecuteTrade(_trade("buy-2", USDC, JUP, "10", 0), _ctx())
    assert again.fees.ata_rent_lamports == 0  # and only once


def test_a_fill_that_moved_nothing_changes_only_the_fee_payers_holding():
    holdings = {SOL: Holding(SOL, 10_000, 1_500)}
    legs = FillLegs(input_mint=USDC, amount_in=0, output_mint=JUP, amount_out=0, fee_mint=SOL, fee_lamports=5_000,
                    trade_value=0)
    after = apply_fill(holdings, legs)
    assert set(after) == {SOL}
    assert after[SOL] == Holding(SOL, 5_000, 750, -750)


def test_a_minimum_finer_than_the_mint_rounds_up_to_a_whole_atomic_unit():
    config = MarketConfig.model_validate({
        "mints": [
            {"symbol": "SOL", "address": SOL, "decimals": 9},
            {"symbol": "USDC", "address": USDC, "decimals": 6, "min_amount": "0.0100005"},
            {"symbol": "TIX", "address": JUP, "decimals": 0, "min_amount": "2.5", "max_amount": "7.9"},
        ],
        "pools": [{"base": "SOL", "quote": "USDC", "base_reserve": "1000"},
                  {"base": "TIX", "quote": "USDC", "base_reserve": "1000"}],
        "prices_usd": {"SOL": "150", "USDC": "1", "TIX": "3"},
    })
    market = Market(config)
    tix, usdc = market.by_symbol("TIX"), market.by_symbol("USDC")
    assert (tix.min_atomic, tix.max_atomic) == (3, 7)
    assert usdc.min_atomic == 10_001 and usdc.to_units(usdc.min_atomic) == "0.010001"
    with pytest.raises(TradewireError):
        tix.to_atomic("2")  # below the configured 2.5
    with pytest.raises(TradewireError):
        usdc.to_atomic("0.01")  # below the configured 0.0100005
    assert tix.to_atomic("3") == 3 and usdc.to_atomic("0.010001") == 10_001


async def test_a_request_without_a_price_impact_bound_gets_the_configured_one(make_core):
    """The contract's "0 = the gateway's configured default": [paper] max_price_impact_bps."""
    core = await make_core(max_price_impact_bps=10)
    with pytest.raises(TradewireError) as caught:
        await core.service.ExecuteTrade(_trade("big-1", USDC, SOL, "90000", 100), _ctx())
    assert caught.value.reason == "PRICE_IMPACT_TOO_HIGH" and "[paper] max_price_impact_bps" in caught.value.message
    bounded = _trade("big-2", USDC, SOL, "90000", 100)
    bounded.max_price_impact_bps = 10_000  # the request's own bound comes first
    assert (await core.service.ExecuteTrade(bounded, _ctx())).status == pb.TRADE_STATUS_FILLED
