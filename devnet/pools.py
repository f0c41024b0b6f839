"""Constant-product pricing math (pure, integer atomic units, no floats).

Everything the quote API, the swap builder and the PAPER executor need to agree on:
swap output for an exact input, input needed for an exact output, price impact, and the
reserve bounds (``guard_bounds``) the on-chain guard enforces so a swap fails with the
slippage error when the pool moved too far between build and execution.

Fee model (Uniswap-v2 style): the fee stays in the pool; the effective input is
``amount_in * (10_000 - fee_bps) / 10_000``. Outputs round down, required inputs round up,
so the pool never loses to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

BPS = 10_000
U64_MAX = 2**64 - 1


class NoLiquidity(ValueError):
    """The pool cannot fill the requested amount."""


@dataclass(frozen=True)
class Reserves:
    """Reserves of one pool as seen from one swap direction (input side, output side)."""

    r_in: int
    r_out: int
    fee_bps: int


def amount_out(res: Reserves, amount_in: int) -> int:
    """Output for an exact input: floor(r_out·a·(1-f) / (r_in + a·(1-f)))."""
    if amount_in <= 0:
        return 0
    eff = amount_in * (BPS - res.fee_bps)
    return (res.r_out * eff) // (res.r_in * BPS + eff)


def amount_in_for_out(res: Reserves, out: int) -> int:
    """Smallest input whose output is at least ``out``; raises NoLiquidity if impossible."""
    if out <= 0:
        return 0
    if out >= res.r_out:
        raise NoLiquidity(f"requested output {out} exceeds the pool reserve {res.r_out}")
    num = res.r_in * out * BPS
    den = (res.r_out - out) * (BPS - res.fee_bps)
    guess = -(-num // den)
    while guess > 1 and amount_out(res, guess - 1) >= out:  # ceil rounding can overshoot by one
        guess -= 1
    while amount_out(res, guess) < out:
        guess += 1
    return guess


def fee_amount(amount_in: int, fee_bps: int) -> int:
    """Fee taken from the input (what the quote's ``feeAmount`` reports)."""
    return (amount_in * fee_bps) // BPS


def price_impact(res: Reserves, amount_in: int) -> Fraction:
    """Fraction of the output lost to moving the price (fee excluded): a·(1-f) / (r_in + a·(1-f))."""
    if amount_in <= 0:
        return Fraction(0)
    eff = Fraction(amount_in * (BPS - res.fee_bps), BPS)
    return eff / (res.r_in + eff)


def combine_impacts(impacts: list[Fraction]) -> Fraction:
    """Impact of a multi-hop route: 1 - Π(1 - impact_i)."""
    keep = Fraction(1)
    for imp in impacts:
        keep *= 1 - imp
    return 1 - keep


def fraction_str(value: Fraction, places: int = 12) -> str:
    """A Fraction as a plain decimal string (Jupiter sends priceImpactPct as a string)."""
    with localcontext() as ctx:
        ctx.prec = 50
        dec = (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal(1).scaleb(-places))
    text = format(dec.normalize(), "f")
    return "0" if text in ("-0", "0", "") else text


def threshold_exact_in(out: int, slippage_bps: int) -> int:
    """Minimum acceptable output: out·(1 - slippage), rounded down (Jupiter's otherAmountThreshold)."""
    return (out * (BPS - slippage_bps)) // BPS


def threshold_exact_out(amount_in: int, slippage_bps: int) -> int:
    """Maximum acceptable input: in·(1 + slippage), rounded down."""
    return (amount_in * (BPS + slippage_bps)) // BPS


# ----- guard bounds -------------------------------------------------------------------


def _after_adverse(res: Reserves, d: int) -> Reserves:
    """Reserves after someone else swaps ``d`` input-side tokens in (price moves against us)."""
    return Reserves(res.r_in + d, res.r_out - amount_out(res, d), res.fee_bps)


def _after_favourable(res: Reserves, e: int) -> Reserves:
    """Reserves after someone else swaps ``e`` output-side tokens in (price moves for us)."""
    back = amount_out(Reserves(res.r_out, res.r_in, res.fee_bps), e)
    return Reserves(res.r_in - back, res.r_out + e, res.fee_bps)


def _search_max(pred, hi_cap: int) -> int:
    """Largest x in [0, hi_cap] with pred(x) true, given pred(0) true and pred monotone."""
    lo, hi = 0, 1
    while hi < hi_cap and pred(hi):
        lo, hi = hi, min(hi * 2, hi_cap)
    if hi >= hi_cap and pred(hi_cap):
        return hi_cap
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _search_min(pred, hi_cap: int) -> int | None:
    """Smallest x in [1, hi_cap] with pred(x) true (pred monotone), or None."""
    if not pred(hi_cap):
        return None
    lo, hi = 0, 1
    while not pred(hi):
        lo, hi = hi, min(hi * 2, hi_cap)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return hi


def reserve_box(res: Reserves, acceptable) -> tuple[int, int] | None:
    """Bounds (max_in_reserve, min_out_reserve) so every state inside is ``acceptable``.

    ``acceptable(reserves) -> bool`` must get easier as r_in falls and r_out rises (true
    for "fill >= minimum" and "required input <= maximum"). The box corner is the point on
    the pool's own curve where acceptability ends: any state with r_in <= max_in and
    r_out >= min_out is at least as good as that corner, so the guard is sound whatever
    moved the pool. Returns None when no state on the curve is acceptable.
    """

    def adverse_ok(d: int) -> bool:
        after = _after_adverse(res, d)
        return after.r_out > 0 and acceptable(after)

    if acceptable(res):
        d = _search_max(adverse_ok, U64_MAX - res.r_in)
        corner = _after_adverse(res, d)
    else:
        def favourable_ok(e: int) -> bool:
            after = _after_favourable(res, e)
            return after.r_in > 0 and acceptable(after)

        e = _search_min(favourable_ok, U64_MAX - res.r_out)
        if e is None:
            return None
        corner = _after_favourable(res, e)
    return corner.r_in, corner.r_out


@dataclass(frozen=True)
class Hop:
    """One pool on a route: reserves as seen in the route's direction."""

    reserves: Reserves
    amount_in: int
    amount_out: int


def guard_bounds_exact_in(hops: list[Hop], min_out: int) -> list[tuple[int, int] | None]:
    """Per-hop (max_in_reserve, min_out_reserve) so the route's fill stays >= ``min_out``.

    For two hops the slack between the built intermediate amount and the least
    intermediate that still meets ``min_out`` is split evenly between the hops.
    """
    if len(hops) == 1:
        h = hops[0]
        return [reserve_box(h.reserves, lambda r: amount_out(r, h.amount_in) >= min_out)]
    if len(hops) != 2:
        raise ValueError("routes have one or two hops")
    first, second = hops
    mid = first.amount_out
    if amount_out(second.reserves, mid) >= min_out:
        least = _search_min(lambda m: amount_out(second.reserves, m) >= min_out, mid)
        mid_min = least + (mid - least) // 2
    else:
        mid_min = mid
    return [
        reserve_box(first.reserves, lambda r: amount_out(r, first.amount_in) >= mid_min),
        reserve_box(second.reserves, lambda r: amount_out(r, mid_min) >= min_out),
    ]


def _in_for_out_or_max(res: Reserves, out: int) -> int:
    try:
        return amount_in_for_out(res, out)
    except NoLiquidity:
        return U64_MAX + 1


def guard_bounds_exact_out(hops: list[Hop], max_in: int) -> list[tuple[int, int] | None]:
    """Per-hop bounds so the input the route needs for its fixed output stays <= ``max_in``."""
    if len(hops) == 1:
        h = hops[0]
        return [reserve_box(h.reserves, lambda r: _in_for_out_or_max(r, h.amount_out) <= max_in)]
    if len(hops) != 2:
        raise ValueError("routes have one or two hops")
    first, second = hops
    mid = second.amount_in
    if _in_for_out_or_max(first.reserves, mid) <= max_in:
        most = _search_max(
            lambda m: _in_for_out_or_max(first.reserves, mid + m) <= max_in, U64_MAX - mid
        )
        mid_max = mid + most // 2
    else:
        mid_max = mid
    return [
        reserve_box(first.reserves, lambda r: _in_for_out_or_max(r, mid_max) <= max_in),
        reserve_box(second.reserves, lambda r: _in_for_out_or_max(r, second.amount_out) <= mid_max),
    ]
