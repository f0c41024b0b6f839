"""Holdings valued through a Jupiter-compatible quote API keep their price's precision (to about
a millionth) when a whole token is worth a few atomic units of the valuation token, or less
than one: the price comes from a sale large enough to fetch about one whole valuation token."""

from __future__ import annotations

from fractions import Fraction

import httpx
import pytest

from tradewire.core.jupiter_quotes import JupiterQuotes
from unit.lifecycle.lifecycle_support import MARKET

BONK = MARKET.by_symbol("BONK")  # 5 decimals


def quotes_at(usdc_per_bonk: Fraction, asked: list[int]) -> JupiterQuotes:
    """A quote API selling BONK for USDC at exactly ``usdc_per_bonk`` (no fee, no impact)."""

    def answer(request: httpx.Request) -> httpx.Response:
        amount = int(request.url.params["amount"])
        asked.append(amount)
        out = int(amount * usdc_per_bonk * Fraction(10**6, 10**5))
        return httpx.Response(200, json={"inAmount": str(amount), "outAmount": str(out),
                                         "otherAmountThreshold": str(out), "priceImpactPct": "0",
                                         "routePlan": [], "contextSlot": 1})

    client = httpx.AsyncClient(base_url="http://quotes.test", transport=httpx.MockTransport(answer))
    return JupiterQuotes("http://quotes.test", MARKET, client=client)


@pytest.mark.parametrize("usdc_per_bonk", [Fraction(199_987, 10**10),  # a whole BONK fetches 19.9987 µUSDC
                                           Fraction(1, 10**9),  # less than one µUSDC
                                           Fraction(3, 2)])  # worth more than a USDC: one whole token is enough
async def test_a_holding_is_valued_to_a_millionth_of_its_price(usdc_per_bonk):
    asked: list[int] = []
    quotes = quotes_at(usdc_per_bonk, asked)
    try:
        held = 100_000 * 10**5  # 100,000 BONK
        exact = held * usdc_per_bonk * Fraction(10**6, 10**5)
        value = await quotes.value(BONK, held)
        assert abs(value - exact) <= exact / 10**6 + 1, (value, float(exact))  # (was 5 % or 100 % low)
        assert await quotes.value(BONK, held) == value and len(asked) <= 2  # the price is kept a while
    finally:
        await quotes.close()
