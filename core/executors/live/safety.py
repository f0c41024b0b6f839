"""Safety checks run before any LIVE trade is signed. Each refusal is a REJECTED trade with
reason RISK_LIMIT (the check named in the message and in the error's metadata), or
INSUFFICIENT_FUNDS when the wallet simply cannot pay.

Valuation: every money limit is in units of the valuation mint (USDC by default) and every
amount is valued with the gateway's QuoteSource ``value()`` — the Jupiter quote of the mint
into the valuation mint when ``market_data.jupiter_url`` is set, else the configured
reference prices. One source for positions, PnL and limits, so they agree with each other.
The executor reads the unit values first; the checks themselves never await.

Checks and their names:

* KILL_SWITCH — ``live.kill_switch`` (or the contents of ``live.kill_switch_file`` when that
  file exists; or, with several replicas, the switch they share in Redis — the strictest of
  them holds) is ``halt``: every LIVE trade is refused.
* REDUCE_ONLY — the switch is ``reduce_only``: only trades that buy a reduce-only mint
  (``live.reduce_only_outputs``, default the valuation mint) are allowed.
* MINT_NOT_ALLOWED — a mint of the pair is not on ``live.allowed_mints``.
* MAX_NOTIONAL — the value of the trade's input exceeds ``live.max_notional`` (for ExactOut,
  the most it may take: ``otherAmountThreshold``).
* MINT_EXPOSURE — the wallet's holding of the bought mint, after the trade, would be worth
  more than its cap (``mint_exposure_caps[symbol or address]``, else ``max_mint_exposure``;
  the valuation mint is only capped by an explicit entry).
* DAILY_LOSS — LIVE trades since 00:00 UTC have realised at least ``live.daily_loss_limit``
  of loss (average-cost PnL of the booked fills, fees included), across the wallet.
* SOL_RESERVE — the trade would leave less than ``live.min_sol_reserve`` SOL for fees.

Trades in flight. The wallet's balances are read from the chain, which does not show what
trades already admitted will spend and buy. So each admitted trade holds a
:class:`Reservation` until it is final (landed, expired, dropped, or refused before send):
the exposure, daily-loss, funds and reserve checks count every other trade's reservation.
Checking and reserving is one step (:meth:`SafetyChecks.admit`), so two trades never both
pass on the same room. A reservation released after a trade's balances were read still
counts for that trade (its effect may not be in what was read). The reservations are kept in
a :class:`ReservationBook` (reservations.py): this process's own, or, with several replicas
trading one wallet, one they share in Redis, so the limits count every replica's trades.

A sent transaction lands before its trade is final (the confirmer still has to see it, read
it and book it), and from then on the balances show what it spent and bought: counting its
reservation as well would count it twice, and refuse trades that fit. So the executor reads,
with the balances, the statuses of the transactions in flight (one ``getSignatureStatuses``),
and a balance read leaves out (:attr:`WalletBalances.settled`) the spend and buys of a trade
whose transaction is ``confirmed`` (the commitment balances are read at) in a slot before
the context slot both balance reads answered at. Comparing slots, not the order of the reads,
keeps this sound on a load-balanced RPC whose nodes lag each other. It is never left out on
less — no status, ``processed`` only, a read from a node not past its slot, or statuses the
RPC did not give — so a transaction is counted twice at worst, never zero times. Its
worst-case loss still counts until it is booked (the balances do not show that).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from tradewire.core.config import KILL_SWITCH_STATES, ConfigError, LiveConfig, resolve_mint
from tradewire.core.errors import TradewireError
from tradewire.core.executors.live.reservations import InFlight, Key, LocalReservations, Reservation, ReservationBook
from tradewire.core.market import Market, Mint
from tradewire.core.order import Order, Quote
from tradewire.core.store.live_orders import LiveOrderStore

log = logging.getLogger("tradewire.live")

WSOL_MINT = "So11111111111111111111111111111111111111112"
DAY_NS = 86_400 * 10**9
UnitValues = dict[str, tuple[int, int]]  # mint → (value of one token, atomic units per token)


@dataclass(frozen=True)
class WalletBalances:
    lamports: int
    tokens: dict[str, int] = field(default_factory=dict)  # mint → raw amount (SPL token accounts)
    # The reservation book's epoch when the read started: reservations released since still count.
    epoch: int = 0
    # Trades whose transaction these balances already show: their spend and buys are not counted.
    settled: frozenset[Key] = frozenset()

    def holding(self, mint: str) -> int:
        if mint == WSOL_MINT:
            return self.lamports + self.tokens.get(WSOL_MINT, 0)
        return self.tokens.get(mint, 0)

    def has_account(self, mint: str) -> bool:
        return mint == WSOL_MINT or mint in self.tokens


def risk(check: str, message: str) -> TradewireError:
    return TradewireError("RISK_LIMIT", f"risk check {check}: {message}", metadata={"check": check})


def strictest(*states: str) -> str:
    return max(states, key=KILL_SWITCH_STATES.index)


def kill_switch_state(config: LiveConfig) -> str:
    """off | halt | reduce_only: the strictest of the configuration's and an existing kill-switch
    file's (a file saying reduce_only does not loosen a configured halt)."""
    path: Path | None = config.kill_switch_file
    if path is not None:
        try:
            text = path.read_text().strip().lower()
        except FileNotFoundError:
            return config.kill_switch
        except OSError:
            return "halt"  # cannot tell: fail safe
        return strictest(config.kill_switch, "reduce_only" if text in ("reduce_only", "reduce-only") else "halt")
    return config.kill_switch


def max_input(order: Order, quote: Quote) -> int:
    """The most the trade may take: ExactOut pays up to the threshold."""
    return quote.other_amount_threshold if order.exact_out else quote.in_amount


def min_output(order: Order, quote: Quote) -> int:
    return quote.out_amount if order.exact_out else quote.other_amount_threshold


class SafetyChecks:
    def __init__(self, config: LiveConfig, market: Market, orders: LiveOrderStore, clock=time.time_ns,
                 book: ReservationBook | None = None, shared_kill_switch: Callable[[], str] | None = None) -> None:
        """``shared_kill_switch``: the state of the switch every replica reads (Redis), besides
        this one's setting and file; the strictest holds."""
        self.config = config
        self.market = market
        self.orders = orders
        self._clock = clock
        self.book: ReservationBook = book or LocalReservations()
        self._shared_kill_switch = shared_kill_switch
        self._last_kill_switch = "off"  # (a switch engaged at start is logged at its first reading)
        self._allowed = self._resolve("allowed_mints", config.allowed_mints) if config.allowed_mints else None
        outputs = config.reduce_only_outputs or (market.valuation.symbol,)
        self._reduce_only_outputs = self._resolve("reduce_only_outputs", outputs)
        self._reduce_only_names = ", ".join(sorted(outputs))
        self._caps = {self._one("mint_exposure_caps", ref): cap for ref, cap in config.mint_exposure_caps.items()}

    def _one(self, setting: str, ref: str) -> str:
        """A configured mint's address (settings were validated; this guards direct construction)."""
        address = resolve_mint(self.market.config, ref)
        if address is None:
            raise ConfigError(f"live.{setting}: {ref!r} is not a configured mint (symbol or address)")
        return address

    def _resolve(self, setting: str, refs) -> frozenset[str]:
        return frozenset(self._one(setting, ref) for ref in refs)

    def _units(self, atomic: int) -> str:
        v = self.market.valuation
        return f"{v.to_units(atomic)} {v.symbol}"

    def _atomic(self, units: Decimal) -> int:
        return int(units.scaleb(self.market.valuation.decimals))

    # -- before the quote (no network) -----------------------------------------------------

    def kill_switch(self) -> str:
        """The state that holds: the strictest of the setting, the file and the shared switch
        (TradewireError STORE_UNAVAILABLE when the shared one cannot be read). A change is
        logged when it is first read (a trade, HealthCheck or a metrics scrape)."""
        state = kill_switch_state(self.config)
        if self._shared_kill_switch is not None:
            state = strictest(state, self._shared_kill_switch())
        if state != self._last_kill_switch:
            log.log(logging.INFO if state == "off" else logging.WARNING, "LIVE kill switch: %s (was %s)", state,
                    self._last_kill_switch)
            self._last_kill_switch = state
        return state

    def before_quote(self, order: Order) -> TradewireError | None:
        state = self.kill_switch()
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

    # -- after the quote: check and reserve, in one step ---------------------------------------

    def admit(self, order: Order, quote: Quote, balances: WalletBalances, fee_lamports: int,
              values: UnitValues) -> TradewireError | None:
        """Every limit, counting the trades in flight; when all pass, the trade's reservation is
        held until :meth:`release`. One step of the book: nothing can be admitted in between."""
        def check(others: InFlight) -> TradewireError | None:
            return (self._notional(order, quote, values) or self._exposure(order, quote, balances, values, others)
                    or self._daily_loss(others) or self._funds(order, quote, balances, fee_lamports, others))

        return self._admit(order, quote, balances, fee_lamports, values, check)

    def refit(self, order: Order, quote: Quote, balances: WalletBalances, fee_lamports: int,
              values: UnitValues) -> TradewireError | None:
        """The built transaction's exact fees: funds and reserve checked again, the trade's own
        reservation updated (the other limits were passed at admission)."""
        def check(others: InFlight) -> TradewireError | None:
            return self._funds(order, quote, balances, fee_lamports, others)

        return self._admit(order, quote, balances, fee_lamports, values, check)

    def _admit(self, order: Order, quote: Quote, balances: WalletBalances, fee_lamports: int, values: UnitValues,
               check) -> TradewireError | None:
        return self.book.admit((order.principal_id, order.request_id), balances.epoch, balances.settled, check,
                               lambda: self.reservation(order, quote, fee_lamports, values))

    def epoch(self) -> int:
        """Where the book stands: read before the balances (:attr:`WalletBalances.epoch`)."""
        return self.book.epoch()

    def hold(self, key: Key, reservation: Reservation) -> None:
        """Reserve for a trade already sent (found pending at start-up, or adopted)."""
        self.book.hold(key, reservation)

    def holds(self, key: Key) -> bool:
        return self.book.holds(key)

    def release(self, key: Key) -> None:
        """The trade is final (or was refused before send): its reservation ends."""
        self.book.release(key)

    def reservation(self, order: Order, quote: Quote, fee_lamports: int, values: UnitValues) -> Reservation:
        """What the trade may take (its most input and every fee), buy, and lose at worst: the
        input's value less its least output's, plus the fees."""
        spend = {WSOL_MINT: fee_lamports}
        spend[order.input_mint.address] = spend.get(order.input_mint.address, 0) + max_input(order, quote)
        slip = (_value(values, order.input_mint.address, max_input(order, quote))
                - _value(values, order.output_mint.address, min_output(order, quote)))
        loss = max(0, slip) + _value(values, WSOL_MINT, fee_lamports)
        return Reservation(spend, order.output_mint.address, quote.out_amount, loss)

    # -- the checks ------------------------------------------------------------------------------

    def _notional(self, order: Order, quote: Quote, values: UnitValues) -> TradewireError | None:
        if self.config.max_notional is None:
            return None
        notional = _value(values, order.input_mint.address, max_input(order, quote))
        limit = self._atomic(self.config.max_notional)
        if notional > limit:
            most = " at most" if order.exact_out else ""
            return risk("MAX_NOTIONAL", f"trade notional{most} {self._units(notional)} exceeds the "
                                        f"{self._units(limit)} limit per trade")
        return None

    def _exposure(self, order: Order, quote: Quote, balances: WalletBalances, values: UnitValues,
                  others: InFlight) -> TradewireError | None:
        mint = order.output_mint
        cap_units = self._caps.get(mint.address)
        if cap_units is None and mint.address != self.market.valuation.address:
            cap_units = self.config.max_mint_exposure
        if cap_units is None:
            return None
        incoming = others.buys.get(mint.address, 0)
        exposure = _value(values, mint.address, balances.holding(mint.address) + quote.out_amount + incoming)
        cap = self._atomic(cap_units)
        if exposure > cap:
            pending = f" (counting {mint.to_units(incoming)} {mint.symbol} bought by trades in flight)" \
                if incoming else ""
            return risk("MINT_EXPOSURE", f"{mint.symbol} holding would be worth {self._units(exposure)}{pending}, "
                                         f"above its {self._units(cap)} cap")
        return None

    def _daily_loss(self, others: InFlight) -> TradewireError | None:
        if self.config.daily_loss_limit is None:
            return None
        now = self._clock()
        loss = -self.orders.realized_since(now - now % DAY_NS)
        limit = self._atomic(self.config.daily_loss_limit)
        if loss + others.loss >= limit:
            pending = f", and {others.trades} trade(s) in flight may lose up to {self._units(others.loss)} more" \
                if others.loss else ""
            return risk("DAILY_LOSS", f"LIVE trades lost {self._units(loss)} today (UTC){pending}, at or above "
                                      f"the {self._units(limit)} daily loss limit")
        return None

    def _funds(self, order: Order, quote: Quote, balances: WalletBalances, fee_lamports: int,
               others: InFlight) -> TradewireError | None:
        """The wallet can pay the input (at most) and every lamport of fees, and keeps its reserve,
        with what trades in flight may still spend set aside."""
        max_in = max_input(order, quote)
        sol = self.market.by_symbol("SOL") if _has_symbol(self.market, "SOL") else None
        if order.input_mint.address == WSOL_MINT:
            need_sol = max_in + fee_lamports
        else:
            need_sol = fee_lamports
            taken = others.spend.get(order.input_mint.address, 0)
            have = balances.holding(order.input_mint.address) - taken
            if have < max_in:
                return _insufficient(order.input_mint, max_in, have, taken)
        taken = others.spend.get(WSOL_MINT, 0)
        lamports = balances.lamports - taken
        if lamports < need_sol:
            return _insufficient(sol or order.input_mint, need_sol, lamports, taken)
        reserve = int(self.config.min_sol_reserve.scaleb(9))
        if lamports - need_sol < reserve:
            pending = f" (after {Decimal(taken).scaleb(-9)} SOL that trades in flight may spend)" if taken else ""
            return risk("SOL_RESERVE", f"the trade would leave {Decimal(lamports - need_sol).scaleb(-9)} SOL"
                                       f"{pending}, below the {self.config.min_sol_reserve} SOL kept for fees")
        return None


def _value(values: UnitValues, mint: str, amount: int) -> int:
    unit_value, unit = values.get(mint, (0, 1))
    return amount * unit_value // unit


def _has_symbol(market: Market, symbol: str) -> bool:
    try:
        market.by_symbol(symbol)
    except KeyError:
        return False
    return True


def _insufficient(mint: Mint, needed: int, available: int, in_flight: int = 0) -> TradewireError:
    shown = max(0, available)
    pending = f" once the {mint.to_units(in_flight)} {mint.symbol} that trades in flight may spend is set aside" \
        if in_flight else ""
    return TradewireError(
        "INSUFFICIENT_FUNDS",
        f"wallet balance too low: needs {mint.to_units(needed)} {mint.symbol}, has {mint.to_units(shown)} "
        f"{mint.symbol}{pending}",
        metadata={"mint": mint.symbol, "needed": mint.to_units(needed), "available": mint.to_units(shown),
                  "in_flight": mint.to_units(in_flight)},
    )
