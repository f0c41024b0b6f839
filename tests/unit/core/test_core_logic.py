"""Pure logic of the core: exact amounts, the AMM quote model, the state machine, positions."""

from decimal import Decimal

import pytest

from tradewire.core import lifecycle
from tradewire.core.config import load_settings
from tradewire.core.errors import TradewireError
from tradewire.core.market import Market
from tradewire.core.order import MevParams, priority_fee_lamports
from tradewire.core.portfolio import FillLegs, Holding, InsufficientBalance, apply_fill
from tradewire.core.quotes import constant_product_quote
from tradewire.v1 import trade_pb2 as pb

MARKET = Market(load_settings(env={}).market)
SOL = MARKET.by_symbol("SOL")
USDC = MARKET.by_symbol("USDC")


@pytest.mark.parametrize("text,atomic", [("1", 10**9), ("0.000000001", 1), ("1.5", 1_500_000_000),
                                         ("00012.50", 12_500_000_000)])
def test_decimal_amounts_convert_exactly(text, atomic):
    assert SOL.to_atomic(text) == atomic
    assert Decimal(SOL.to_units(atomic)) == Decimal(text)


@pytest.mark.parametrize("text", ["0", "0.0000000001", "abc", "-1", "1e3", "NaN", "100001", "0.5\n"])
def test_bad_amounts_name_the_field(text):
    with pytest.raises(TradewireError) as caught:
        SOL.to_atomic(text, "trades[3].amount")
    assert caught.value.field_violations[0].field == "trades[3].amount"


def test_unsupported_pair_names_output_mint():
    bonk = MARKET.by_symbol("BONK")
    with pytest.raises(TradewireError) as caught:
        MARKET.pool(bonk.address, SOL.address)
    assert caught.value.reason == "UNSUPPORTED_PAIR" and caught.value.field_violations[0].field == "output_mint"


def test_constant_product_quote_is_exact_and_impact_grows_with_size():
    x, y = 1_000_000, 2_000_000
    small = constant_product_quote(x, y, 30, 1_000, exact_out=False, slippage_bps=100)
    large = constant_product_quote(x, y, 30, 100_000, exact_out=False, slippage_bps=100)
    after_fee = 1_000 * 9_970 // 10_000
    assert small.out_amount == y * after_fee // (x + after_fee)
    assert small.other_amount_threshold == small.out_amount * 9_900 // 10_000
    assert large.out_amount / 100_000 < small.out_amount / 1_000
    assert Decimal(large.price_impact_pct) > Decimal(small.price_impact_pct)


def test_exact_out_quote_covers_the_output():
    quote = constant_product_quote(1_000_000, 2_000_000, 30, 5_000, exact_out=True, slippage_bps=50)
    after_fee = quote.in_amount * 9_970 // 10_000
    assert 2_000_000 * after_fee // (1_000_000 + after_fee) >= 5_000
    assert quote.other_amount_threshold >= quote.in_amount


def test_priority_fee_rounds_up_and_respects_the_cap():
    mev = MevParams(strategy=pb.MEV_STRATEGY_PRIORITY_FEE, compute_unit_price_micro_lamports=3)
    assert priority_fee_lamports(mev, 200_001) == 1  # 0.600003 lamports rounds up
    capped = MevParams(strategy=pb.MEV_STRATEGY_PRIORITY_FEE, compute_unit_price_micro_lamports=10**6,
                       max_priority_fee_lamports=7)
    assert priority_fee_lamports(capped, 200_000) == 7


def test_lifecycle_allows_forward_and_terminal_failures_only():
    lifecycle.check_transition(None, pb.TRADE_STATUS_RECEIVED)
    lifecycle.check_transition(pb.TRADE_STATUS_RECEIVED, pb.TRADE_STATUS_QUOTED)
    lifecycle.check_transition(pb.TRADE_STATUS_QUOTED, pb.TRADE_STATUS_FAILED)
    for current, new in ((None, pb.TRADE_STATUS_QUOTED), (pb.TRADE_STATUS_QUOTED, pb.TRADE_STATUS_ROUTED),
                         (pb.TRADE_STATUS_FILLED, pb.TRADE_STATUS_FAILED)):
        with pytest.raises(lifecycle.IllegalTransition):
            lifecycle.check_transition(current, new)
    percents = [lifecycle.STAGES[s].percent for s in lifecycle.PATH]
    assert percents == sorted(percents) and percents[-1] == 100


def test_fill_moves_holdings_at_average_cost():
    holdings = {"SOL": Holding("SOL", 10, 1_500), "USDC": Holding("USDC", 0, 0)}
    legs = FillLegs(input_mint="SOL", amount_in=4, output_mint="USDC", amount_out=700, fee_mint="SOL",
                    fee_lamports=1, trade_value=700)
    after = apply_fill(holdings, legs)
    # 4 of 10 SOL leave at cost 600 for 700: +100 realised; the fee leaves 1 more at cost 150.
    assert after["SOL"] == Holding("SOL", 5, 750, 100 - 150)
    assert after["USDC"] == Holding("USDC", 700, 700, 0)


def test_a_fill_beyond_the_balance_changes_nothing():
    holdings = {"SOL": Holding("SOL", 10, 1_500)}
    legs = FillLegs(input_mint="SOL", amount_in=10, output_mint="USDC", amount_out=1, fee_mint="SOL",
                    fee_lamports=1, trade_value=1)
    with pytest.raises(InsufficientBalance) as caught:
        apply_fill(holdings, legs)
    assert (caught.value.needed, caught.value.available) == (11, 10)
    assert holdings == {"SOL": Holding("SOL", 10, 1_500)}
