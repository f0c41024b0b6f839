"""Amounts as a trader writes them and the limits a quote sets on them, checked against figures
computed here with exact fractions: a request amount converts to exactly its atomic units
(however many digits it is written with), and an exact-out swap's maximum input is never more
than the quoted input plus the trader's slippage tolerance."""

from fractions import Fraction

import pytest

from tradewire.core.config import MarketConfig
from tradewire.core.errors import TradewireError
from tradewire.core.market import Market
from tradewire.core.quotes import BPS, constant_product_quote

MARKET = Market(MarketConfig())


def _exact_atomic(amount: str, decimals: int) -> Fraction:
    return Fraction(amount) * 10**decimals


@pytest.mark.parametrize("symbol,amount", [
    ("SOL", "0.99999999999999999999999999999"),  # 29 nines: one atomic unit short of 1 SOL, and far finer
    ("SOL", "1.0000000000000000000000000001"),
    ("USDC", "1234567.8900000000000000000000001"),
    ("BONK", "99999.999999999999999999999999999"),
])
def test_an_amount_finer_than_the_mint_is_refused_however_many_digits_it_has(symbol, amount):
    mint = MARKET.by_symbol(symbol)
    assert _exact_atomic(amount, mint.decimals).denominator != 1  # not a whole number of atomic units
    with pytest.raises(TradewireError) as caught:
        mint.to_atomic(amount)
    assert caught.value.field_violations[0].field == "amount"
    assert "decimals" in caught.value.message


@pytest.mark.parametrize("symbol,amount", [
    ("SOL", "99999.999999999000000000000000000000"),  # long, but every digit past the ninth is 0
    ("SOL", "0.000000001000000000000000000000000"),
    ("USDC", "9999999.999999000000000000000000000"),
    ("BONK", "0000000000000000000000000000012.5"),
])
def test_a_long_amount_that_is_whole_atomic_units_converts_exactly(symbol, amount):
    mint = MARKET.by_symbol(symbol)
    expected = _exact_atomic(amount, mint.decimals)
    assert expected.denominator == 1
    assert mint.to_atomic(amount) == expected.numerator


@pytest.mark.parametrize("amount_out,slippage_bps", [(199, 50), (5_000, 33), (123_457, 1), (10**9 + 7, 9_999)])
def test_an_exact_out_quote_allows_at_most_the_quoted_input_plus_the_tolerance(amount_out, slippage_bps):
    quote = constant_product_quote(10**12, 10**12, 25, amount_out, exact_out=True, slippage_bps=slippage_bps)
    most = Fraction(quote.in_amount * (BPS + slippage_bps), BPS)
    assert most.denominator != 1  # the case where rounding matters
    assert quote.in_amount <= quote.other_amount_threshold <= most
    assert quote.other_amount_threshold == int(most)  # the whole atomic units the tolerance allows
