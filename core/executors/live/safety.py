"""Safety checks run before any LIVE trade is signed. Each refusal is a REJECTED trade with
reason RISK_LIMIT (the check named in the message and in the error's metadata), or
INSUFFICIENT_FUNDS when the wallet simply cannot pay.

Valuation: every money limit is in units of the valuation mint (USDC by default) and every
amount is valued with the gateway's QuoteSource ``value()`` — the Jupiter quote of the mint
into the valuation mint when ``market_data.jupiter_url`` is set, else the configured
reference prices. One source for positions, PnL and limits, so they agree with each other.

Checks and their names:

* KILL_SWITCH — ``live.kill_switch`` (or the contents of ``live.kill_switch_file`` when that
  file exists) is ``halt``: every LIVE trade is refused.
* REDUCE_ONLY — the switch is ``reduce_only``: only trades that buy a reduce-only mint
  (``live.reduce_only_outputs``, default the valuation mint) are allowed.
* MINT_NOT_ALLOWED — a mint of the pair is not on ``live.allowed_mints``.
* MAX_NOTIONAL — the value of the trade's input exceeds ``live.max_notional``.
* MINT_EXPOSURE — the wallet's holding of the bought mint, after the trade, would be worth
  more than its cap (``mint_exposure_caps[symbol]``, else ``max_mint_exposure``; the
  valuation mint is only capped by an explicit entry).
* DAILY_LOSS — LIVE trades since 00:00 UTC have realised at least ``live.daily_loss_limit``
  of loss (average-cost PnL of the booked fills, fees included), across the wallet.
* SOL_RESERVE — the trade would leave less than ``live.min_sol_reserve`` SOL for fees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from tradewire.core.config import LiveConfig
from tradewire.core.errors import TradewireError
from tradewire.core.market import Market, Mint
from tradewire.core.order import Order, Quote
from tradewire.core.quotes import QuoteSource
from tradewire.core.store.live_orders import LiveOrderStore

WSOL_MINT = "So11111111111111111111111111111111111111112"
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class WalletBalances:
    lamports: int
    tokens: dict[str, int] = field(default_factory=dict)  # mint → raw amount (SPL token accounts)

    def holding(self, mint: str) -> int:
        if mint == WSOL_MINT:
            return self.lamports + self.tokens.get(WSOL_MINT, 0)
        return self.tokens.get(mint, 0)

    def has_account(self, mint: str) -> bool:
        return mint == WSOL_MINT or mint in self.tokens


def risk(check: str, message: str) -> TradewireError:
    return TradewireError("RISK_LIMIT", f"risk check {check}: {message}", metadata={"check": check})


def kill_switch_state(config: LiveConfig) -> str:
    """off | halt | reduce_only; an existing kill-switch file wins over the configuration."""
    path: Path | None = config.kill_switch_file
    if path is not None:
        try:
            text = path.read_text().strip().lower()
        except FileNotFoundError:
            return config.kill_switch
        except OSError:
            return "halt"  # cannot tell: fail safe
        return "reduce_only" if text in ("reduce_only", "reduce-only") else "halt"
    return config.kill_switch


class SafetyChecks:
    def __init__(self, config: LiveConfig, market: Market, quotes: QuoteSource, orders: LiveOrderStore,
                 clock=time.time_ns) -> None:
        self.config = config
        self.market = market
        self.quotes = quotes
        self.orders = orders
        self._clock = clock
        self._allowed = self._resolve(config.allowed_mints) if config.allowed_mints else None
        outputs = config.reduce_only_outputs or (market.valuation.symbol,)
        self._reduce_only_outputs = self._resolve(outputs)
        self._reduce_only_names = ", ".join(sorted(outputs))

    def _resolve(self, refs) -> frozenset[str]:
        out = set()
        for ref in refs:
            try:
                out.add(self.market.by_symbol(ref).address)
            except KeyError:
                out.add(ref)  # an address
        return frozenset(out)

    def _units(self, atomic: int) -> str:
        v = self.market.valuation
        return f"{v.to_units(atomic)} {v.symbol}"

    def _atomic(self, units: Decimal) -> int:
        return int(units.scaleb(self.market.valuation.decimals))

    # -- before the quote (no network) -----------------------------------------------------

    def before_quote(self, order: Order) -> TradewireError | None:
        state = kill_switch_state(self.config)
        if state == "halt":
            return risk("KILL_SWITCH", "the kill switch is engaged: LIVE trading is halted")
        if state == "reduce_only" and order.output_mint.address not in self._reduce_only_outputs:
            return risk("REDUCE_ONLY", f"the kill switch is in reduce-only mode: only trades into "
                                       f"{self._reduce_only_names} are allowed")
        if self._allowed is not None:
            for mint in (order.input_mint, order.output_mint):
                if mint.address not in self._allowed:
                    return risk("MINT_NOT_ALLOWED", f"{mint.symbol} is not on the LIVE mint allow-list")
        return None

    # -- after the quote ---------------------------------------------------------------------

    async def after_quote(self, order: Order, quote: Quote, balances: WalletBalances) -> TradewireError | None:
        cfg = self.config
        if cfg.max_notional is not None:
            notional = await self.quotes.value(order.input_mint, quote.in_amount)
            limit = self._atomic(cfg.max_notional)
            if notional > limit:
                return risk("MAX_NOTIONAL", f"trade notional {self._units(notional)} exceeds the "
                                            f"{self._units(limit)} limit per trade")
        cap_units = cfg.mint_exposure_caps.get(order.output_mint.symbol)
        if cap_units is None and order.output_mint.address != self.market.valuation.address:
            cap_units = cfg.max_mint_exposure
        if cap_units is not None:
            after = balances.holding(order.output_mint.address) + quote.out_amount
            exposure = await self.quotes.value(order.output_mint, after)
            cap = self._atomic(cap_units)
            if exposure > cap:
                return risk("MINT_EXPOSURE", f"{order.output_mint.symbol} holding would be worth "
                                             f"{self._units(exposure)}, above its {self._units(cap)} cap")
        if cfg.daily_loss_limit is not None:
            now = self._clock()
            loss = -self.orders.realized_since(now - now % DAY_NS)
            limit = self._atomic(cfg.daily_loss_limit)
            if loss >= limit:
                return risk("DAILY_LOSS", f"LIVE trades lost {self._units(loss)} today (UTC), at or above "
                                          f"the {self._units(limit)} daily loss limit")
        return None

    def funds(self, order: Order, quote: Quote, balances: WalletBalances, fee_lamports: int) -> TradewireError | None:
        """The wallet can pay the input (at most) and every lamport of fees, and keeps its reserve."""
        max_in = quote.other_amount_threshold if order.exact_out else quote.in_amount
        sol = self.market.by_symbol("SOL") if _has_symbol(self.market, "SOL") else None
        if order.input_mint.address == WSOL_MINT:
            need_sol = max_in + fee_lamports
        else:
            need_sol = fee_lamports
            have = balances.holding(order.input_mint.address)
            if have < max_in:
                return _insufficient(order.input_mint, max_in, have)
        if balances.lamports < need_sol:
            mint = sol or order.input_mint
            return _insufficient(mint, need_sol, balances.lamports)
        reserve = int(self.config.min_sol_reserve.scaleb(9))
        if balances.lamports - need_sol < reserve:
            return risk("SOL_RESERVE", f"the trade would leave {Decimal(balances.lamports - need_sol).scaleb(-9)} SOL, "
                                       f"below the {self.config.min_sol_reserve} SOL kept for fees")
        return None


def _has_symbol(market: Market, symbol: str) -> bool:
    try:
        market.by_symbol(symbol)
    except KeyError:
        return False
    return True


def _insufficient(mint: Mint, needed: int, available: int) -> TradewireError:
    return TradewireError(
        "INSUFFICIENT_FUNDS",
        f"wallet balance too low: needs {mint.to_units(needed)} {mint.symbol}, has {mint.to_units(available)}",
        metadata={"mint": mint.symbol, "needed": mint.to_units(needed), "available": mint.to_units(available)},
    )
