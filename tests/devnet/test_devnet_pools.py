"""Pure pricing math: constant product, fees, price impact, and the guard's reserve box."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from tradewire.devnet import pools as p

SOL_USDC = p.Reserves(r_in=15_000_000 * 10**6, r_out=100_000 * 10**9, fee_bps=25)  # USDC -> SOL


def test_amount_out_matches_constant_product_and_keeps_fee_in_pool() -> None:
    out = p.amount_out(SOL_USDC, 150 * 10**6)
    # 150 USDC at 150 USDC/SOL, minus the 0.25% fee and a tiny impact: just under 0.9975 SOL
    assert 997_000_000 < out < 997_500_000
    k_before = SOL_USDC.r_in * SOL_USDC.r_out
    k_after = (SOL_USDC.r_in + 150 * 10**6) * (SOL_USDC.r_out - out)
    assert k_after > k_before  # the fee stays in the pool


def test_larger_orders_get_worse_prices_and_more_impact() -> None:
    sizes = [10**6, 10**8, 10**10, 10**12, 10**13]
    prices = [Fraction(p.amount_out(SOL_USDC, s), s) for s in sizes]
    impacts = [p.price_impact(SOL_USDC, s) for s in sizes]
    assert all(a > b for a, b in zip(prices, prices[1:])), prices
    assert all(a < b for a, b in zip(impacts, impacts[1:])), impacts
    assert impacts[0] < Fraction(1, 10**6)
    assert impacts[-1] > Fraction(1, 3)  # 10M USDC into a 15M USDC pool


def test_amount_in_for_out_is_the_smallest_sufficient_input() -> None:
    rng = random.Random(7)
    for _ in range(200):
        res = p.Reserves(rng.randint(10**6, 10**15), rng.randint(10**6, 10**15), rng.choice([0, 1, 25, 30, 100]))
        want = rng.randint(1, res.r_out // 3)
        need = p.amount_in_for_out(res, want)
        assert p.amount_out(res, need) >= want
        assert p.amount_out(res, need - 1) < want


def test_exact_out_beyond_the_reserve_has_no_liquidity() -> None:
    with pytest.raises(p.NoLiquidity):
        p.amount_in_for_out(SOL_USDC, SOL_USDC.r_out)


def test_thresholds_round_in_the_pools_favour() -> None:
    assert p.threshold_exact_in(1_000_000, 50) == 995_000
    assert p.threshold_exact_in(999, 50) == 994  # floor
    assert p.threshold_exact_out(1_000_000, 50) == 1_005_000
    assert p.fraction_str(Fraction(1, 8)) == "0.125"
    assert p.fraction_str(Fraction(0)) == "0"


def test_reserve_box_is_sound_and_tight() -> None:
    """Every state inside the box fills at least the minimum; just past the corner does not."""
    rng = random.Random(11)
    for _ in range(50):
        res = p.Reserves(rng.randint(10**9, 10**14), rng.randint(10**9, 10**14), rng.choice([1, 25, 30]))
        amount = rng.randint(10**3, res.r_in // 100)
        quoted = p.amount_out(res, amount)
        minimum = p.threshold_exact_in(quoted, rng.choice([0, 10, 50, 300]))
        box = p.reserve_box(res, lambda r: p.amount_out(r, amount) >= minimum)
        assert box is not None
        max_in, min_out = box
        assert max_in >= res.r_in and min_out <= res.r_out  # today's pool is inside
        assert p.amount_out(p.Reserves(max_in, min_out, res.fee_bps), amount) >= minimum  # worst corner
        for _ in range(20):  # random states inside the box
            r_in = rng.randint(1, max_in)
            r_out = rng.randint(min_out, min_out * 2)
            assert p.amount_out(p.Reserves(r_in, r_out, res.fee_bps), amount) >= minimum
        # one more unit of adverse trading crosses the boundary
        worse = p.Reserves(max_in, min_out, res.fee_bps)
        pushed = p.Reserves(worse.r_in + 1 + worse.r_in // 10**6, worse.r_out - 1 - worse.r_out // 10**6, res.fee_bps)
        assert p.amount_out(pushed, amount) < minimum


def test_front_run_past_slippage_leaves_the_box() -> None:
    amount = 1_500 * 10**6
    quoted = p.amount_out(SOL_USDC, amount)
    minimum = p.threshold_exact_in(quoted, 50)
    max_in, min_out = p.reserve_box(SOL_USDC, lambda r: p.amount_out(r, amount) >= minimum)
    small_front_run = 10_000 * 10**6  # moves the price ~0.13%: still inside 0.5%
    big_front_run = 200_000 * 10**6  # ~2.7%: outside
    for size, inside in ((small_front_run, True), (big_front_run, False)):
        moved = p.Reserves(SOL_USDC.r_in + size, SOL_USDC.r_out - p.amount_out(SOL_USDC, size), 25)
        assert (moved.r_in <= max_in and moved.r_out >= min_out) is inside
        assert (p.amount_out(moved, amount) >= minimum) is inside


def test_reserve_box_when_already_too_far_requires_a_better_pool() -> None:
    amount = 10**9
    quoted = p.amount_out(SOL_USDC, amount)
    box = p.reserve_box(SOL_USDC, lambda r: p.amount_out(r, amount) >= quoted + quoted // 100)
    assert box is not None
    max_in, min_out = box
    assert max_in < SOL_USDC.r_in and min_out > SOL_USDC.r_out  # today's state fails the guard


def test_two_hop_bounds_exact_in_and_exact_out() -> None:
    first = p.Reserves(10**13, 8 * 10**12, 30)  # JUP -> USDC
    second = p.Reserves(5 * 10**12, 25 * 10**15, 30)  # USDC -> BONK
    a = 10**9
    mid = p.amount_out(first, a)
    out = p.amount_out(second, mid)
    minimum = p.threshold_exact_in(out, 100)
    boxes = p.guard_bounds_exact_in([p.Hop(first, a, mid), p.Hop(second, mid, out)], minimum)
    (in1, out1), (in2, out2) = boxes  # type: ignore[misc]
    worst_mid = p.amount_out(p.Reserves(in1, out1, 30), a)
    assert p.amount_out(p.Reserves(in2, out2, 30), worst_mid) >= minimum

    want = 10**12
    mid_needed = p.amount_in_for_out(second, want)
    a_needed = p.amount_in_for_out(first, mid_needed)
    maximum = p.threshold_exact_out(a_needed, 100)
    boxes = p.guard_bounds_exact_out([p.Hop(first, a_needed, mid_needed), p.Hop(second, mid_needed, want)], maximum)
    (in1, out1), (in2, out2) = boxes  # type: ignore[misc]
    worst_mid = p.amount_in_for_out(p.Reserves(in2, out2, 30), want)
    assert p.amount_in_for_out(p.Reserves(in1, out1, 30), worst_mid) <= maximum
