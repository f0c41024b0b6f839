"""Position accounting in integer atomic units (average-cost method).

Every holding carries its cost basis in atomic units of the valuation mint (USDC by
default). A fill disposes of the input at average cost (realising PnL against the
trade's value) and acquires the output at that value; fees paid in SOL are a disposal with
no proceeds, so they show up as realised loss. Pure functions: the store applies them
inside one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Holding:
    mint: str
    amount: int = 0  # atomic units of the mint
    cost_basis: int = 0  # atomic units of the valuation mint
    realized_pnl: int = 0  # atomic units of the valuation mint


class InsufficientBalance(Exception):
    def __init__(self, mint: str, needed: int, available: int) -> None:
        super().__init__(mint)
        self.mint, self.needed, self.available = mint, needed, available


def acquire(h: Holding, amount: int, value: int) -> Holding:
    return replace(h, amount=h.amount + amount, cost_basis=h.cost_basis + value)


def dispose(h: Holding, amount: int, proceeds: int) -> Holding:
    """Remove ``amount`` at average cost; realise ``proceeds - cost removed``."""
    if amount > h.amount:
        raise InsufficientBalance(h.mint, amount, h.amount)
    if amount == 0:
        return h
    cost_removed = h.cost_basis * amount // h.amount if h.amount else 0
    return Holding(
        mint=h.mint,
        amount=h.amount - amount,
        cost_basis=h.cost_basis - cost_removed,
        realized_pnl=h.realized_pnl + proceeds - cost_removed,
    )


@dataclass(frozen=True)
class FillLegs:
    """The balance changes of one fill."""

    input_mint: str
    amount_in: int
    output_mint: str
    amount_out: int
    fee_mint: str  # wrapped-SOL mint address: fees are paid in lamports
    fee_lamports: int
    trade_value: int  # value of the trade in valuation-mint atomic units


def apply_fill(holdings: dict[str, Holding], legs: FillLegs) -> dict[str, Holding]:
    """New holdings after a fill; raises InsufficientBalance and leaves the input untouched."""
    out = dict(holdings)

    def get(mint: str) -> Holding:
        return out.get(mint) or Holding(mint)

    # Check everything the trade spends first, so a refusal changes nothing.
    spend: dict[str, int] = {}
    spend[legs.input_mint] = spend.get(legs.input_mint, 0) + legs.amount_in
    spend[legs.fee_mint] = spend.get(legs.fee_mint, 0) + legs.fee_lamports
    for mint, needed in spend.items():
        available = get(mint).amount
        if needed > available:
            raise InsufficientBalance(mint, needed, available)

    # A leg that moves nothing (a swap that failed on chain) leaves its holding as it was: it
    # must not make a token account appear that the swap never created.
    if legs.amount_in:
        out[legs.input_mint] = dispose(get(legs.input_mint), legs.amount_in, legs.trade_value)
    if legs.amount_out:
        out[legs.output_mint] = acquire(get(legs.output_mint), legs.amount_out, legs.trade_value)
    if legs.fee_lamports:
        out[legs.fee_mint] = dispose(get(legs.fee_mint), legs.fee_lamports, 0)
    return out
