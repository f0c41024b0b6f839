"""Where prices come from: a QuoteSource answers swap quotes and values holdings.

``PriceTableQuotes`` is the self-contained market of the configuration: each pair is a
constant-product pool priced at the configured reference prices, so size moves the price
exactly as an AMM would. A Jupiter-backed source implements the same interface.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from tradewire.core.errors import TradewireError
from tradewire.core.market import Market, Mint
from tradewire.core.order import Quote

BPS = 10_000


class QuoteSource(Protocol):
    async def quote(self, input_mint: Mint, output_mint: Mint, amount: int, exact_out: bool,
                    slippage_bps: int) -> Quote: ...

    async def value(self, mint: Mint, amount: int) -> int:
        """Value of ``amount`` atomic units of ``mint`` in valuation-mint atomic units."""

    def invalidate(self) -> None:
        """Drop cached prices: a fill just happened."""

    async def close(self) -> None: ...


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def constant_product_quote(x: int, y: int, fee_bps: int, amount: int, exact_out: bool, slippage_bps: int,
                           route: str = "") -> Quote:
    """Quote against reserves x (input side) and y (output side), all in atomic units."""
    if exact_out:
        if amount >= y:
            raise TradewireError("NO_ROUTE", "amount: exceeds the pool's liquidity")
        in_after_fee = _ceil_div(x * amount, y - amount)
        amount_in = _ceil_div(in_after_fee * BPS, BPS - fee_bps)
        amount_out = amount
        # Rounded down, as Jupiter does: the input may never exceed the tolerance the trader gave.
        threshold = amount_in * (BPS + slippage_bps) // BPS
    else:
        amount_in = amount
        in_after_fee = amount * (BPS - fee_bps) // BPS
        amount_out = y * in_after_fee // (x + in_after_fee)
        threshold = amount_out * (BPS - slippage_bps) // BPS
    if amount_out <= 0:
        raise TradewireError("NO_ROUTE", "amount: too small to produce any output")
    impact = Decimal(in_after_fee) / Decimal(x + in_after_fee) * 100
    return Quote(amount_in, amount_out, threshold, format(impact.quantize(Decimal("0.000001")), "f"), route)


class PriceTableQuotes:
    """Constant-product pools at the configured reference prices and depths."""

    def __init__(self, market: Market) -> None:
        self.market = market

    def _reserves(self, input_mint: Mint, output_mint: Mint) -> tuple[int, int, int, str]:
        pool = self.market.pool(input_mint.address, output_mint.address)
        base, quote = self.market.by_symbol(pool.base), self.market.by_symbol(pool.quote)
        base_reserve = pool.base_reserve
        quote_reserve = base_reserve * self.market.price_usd(base.symbol) / self.market.price_usd(quote.symbol)
        reserves = {
            base.address: int(base_reserve.scaleb(base.decimals)),
            quote.address: int(quote_reserve.scaleb(quote.decimals)),
        }
        return reserves[input_mint.address], reserves[output_mint.address], pool.fee_bps, f"{pool.base}/{pool.quote}"

    async def quote(self, input_mint: Mint, output_mint: Mint, amount: int, exact_out: bool,
                    slippage_bps: int) -> Quote:
        x, y, fee_bps, route = self._reserves(input_mint, output_mint)
        return constant_product_quote(x, y, fee_bps, amount, exact_out, slippage_bps, route)

    async def value(self, mint: Mint, amount: int) -> int:
        valuation = self.market.valuation
        if mint.address == valuation.address:
            return amount
        price = self.market.price_usd(mint.symbol) / self.market.price_usd(valuation.symbol)
        return int((Decimal(amount).scaleb(-mint.decimals) * price).scaleb(valuation.decimals))

    def invalidate(self) -> None:  # the table's prices do not move
        pass

    async def close(self) -> None:
        pass
