"""The tradable universe: mints, supported pairs, and exact amount conversions.

Amounts cross the API as decimal strings in token units and live inside as integer atomic
units; conversion is exact (``decimal``), never through floats.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

from tradewire.core.config import MarketConfig, MintConfig, PoolConfig
from tradewire.core.errors import FieldViolation, TradewireError, invalid


_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")  # fullmatch: "$" would let a trailing newline in


@dataclass(frozen=True)
class Mint:
    symbol: str
    address: str
    decimals: int
    min_atomic: int
    max_atomic: int

    def to_atomic(self, amount: str, field_path: str = "amount") -> int:
        """Exact conversion of a decimal token amount; too many decimals is an error, not rounding."""
        if not _PLAIN_DECIMAL.fullmatch(amount):  # no sign, exponent, NaN or spaces: digits only
            raise invalid(field_path, f"{amount!r} is not a plain decimal number like 1.5")
        if Decimal(amount) <= 0:  # (a comparison is exact; arithmetic would round at 28 digits)
            raise invalid(field_path, "must be a positive amount")
        # From the digits themselves: decimal arithmetic rounds past 28 significant digits, which
        # would take "0.99999999999999999999999999999" for 1.
        whole, _, fraction = amount.partition(".")
        fraction = fraction.rstrip("0")
        if len(fraction) > self.decimals:
            raise invalid(field_path, f"{self.symbol} has {self.decimals} decimals; {amount!r} has more")
        atomic = int(whole + fraction.ljust(self.decimals, "0"))
        if atomic < self.min_atomic or atomic > self.max_atomic:
            raise invalid(
                field_path,
                f"must be between {self.to_units(self.min_atomic)} and {self.to_units(self.max_atomic)} {self.symbol}",
            )
        return atomic

    def to_units(self, atomic: int) -> str:
        """Atomic units → plain decimal string with no exponent and no trailing zeros."""
        return format_units(Decimal(atomic).scaleb(-self.decimals))


def format_units(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


class Market:
    """Mints by address and symbol, and the pools that make pairs tradable."""

    def __init__(self, config: MarketConfig) -> None:
        self.config = config
        self._by_address = {m.address: _mint(m) for m in config.mints}
        self._by_symbol = {m.symbol: m for m in self._by_address.values()}
        self._pools: dict[frozenset[str], PoolConfig] = {}
        for pool in config.pools:
            key = frozenset({self._by_symbol[pool.base].address, self._by_symbol[pool.quote].address})
            self._pools[key] = pool
        self.valuation = self._by_symbol[config.valuation_symbol]

    def find(self, address: str) -> Mint | None:
        """The mint at ``address``, or None when this market does not list it."""
        return self._by_address.get(address)

    def mint(self, address: str, field_path: str) -> Mint:
        mint = self._by_address.get(address)
        if mint is None:
            raise TradewireError(
                "UNSUPPORTED_PAIR", f"{field_path}: mint {address} is not supported",
                field_violations=(FieldViolation(field_path, "mint is not supported"),),
            )
        return mint

    def by_symbol(self, symbol: str) -> Mint:
        return self._by_symbol[symbol]

    def mints(self) -> list[Mint]:
        return list(self._by_address.values())

    def pairs(self) -> list[tuple[Mint, Mint]]:
        """(base, quote) of every pool: the pairs that trade, each in either direction."""
        return [(self._by_symbol[p.base], self._by_symbol[p.quote]) for p in self.config.pools]

    def pool(self, input_mint: str, output_mint: str, field_prefix: str = "") -> PoolConfig:
        pool = self._pools.get(frozenset({input_mint, output_mint}))
        if pool is None:
            a, b = self._by_address[input_mint].symbol, self._by_address[output_mint].symbol
            raise TradewireError(
                "UNSUPPORTED_PAIR", f"{field_prefix}output_mint: the pair {a}/{b} is not supported",
                field_violations=(FieldViolation(field_prefix + "output_mint", f"pair {a}/{b} is not supported"),),
            )
        return pool

    def price_usd(self, symbol: str) -> Decimal:
        return self.config.prices_usd[symbol]


def _mint(m: MintConfig) -> Mint:
    # The range in whole atomic units inside the configured one: the minimum rounds up, the maximum down.
    scale = Decimal(10) ** m.decimals
    return Mint(m.symbol, m.address, m.decimals, max(1, math.ceil(m.min_amount * scale)), int(m.max_amount * scale))
