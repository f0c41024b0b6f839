"""PAPER executor: the fill a live swap would have had, without sending anything.

It quotes for the exact size, lets the price drift over the modelled latency, charges the
Solana fee schedule, fails below the slippage floor like the on-chain program does, and
books the result against the principal's paper wallet. No wall-clock waiting: latency is
modelled, not slept, so paper trades are as fast as the pipeline.

Each run of a trade books at most once, under its fill id (:func:`paper_fill_id`: the run's
trade id, which a crash re-run or a replica adopting the trade keeps, and which a request id run
again — or claimed afresh in a shared store that restarted empty — does not). That is what lets
any process settle a paper trade its runner left past the point of no return (a crash, or a
replica presumed dead, or a store that stopped answering): :meth:`PaperExecutor.reconcile`
voids the id unless the booking happened, so a stalled runner that wakes up can no longer book
it either; if it did happen, the outcome booked with it (its receipt) is the trade's end. A
settlement of one run never touches another run's id: a replica settling a run the shared store
lost (Redis restarted without its data) cannot void the id of the run a retry started since. With
a shared store, a booking or a voiding is also fenced on the run (it goes through only while the
store holds that run, owned by this replica): a replica that lost the trade writes nothing.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import ROUND_CEILING, Decimal

import orjson

from tradewire.core.config import PaperConfig
from tradewire.core.errors import TradewireError
from tradewire.core.executors.base import ExecutorHealth, Outcome, Progress
from tradewire.core.executors.outcome_json import outcome_from_json, outcome_to_json, quote_from_json
from tradewire.core.market import Market
from tradewire.core.order import (
    ATA_RENT_LAMPORTS,
    BASE_FEE_LAMPORTS_PER_SIGNATURE,
    DEFAULT_COMPUTE_UNIT_LIMIT,
    FeeBreakdown,
    Fill,
    Order,
    Quote,
    priority_fee_lamports,
)
from tradewire.core.portfolio import FillLegs, Holding, InsufficientBalance, apply_fill
from tradewire.core.quotes import BPS, QuoteSource
from tradewire.core.store.base import VOIDED_RECEIPT, FillIdUsed, TakenOver, TradeStore
from tradewire.v1 import trade_pb2 as pb

SOL_MINT = "So11111111111111111111111111111111111111112"


class PaperExecutor:
    name = "paper"
    # execute() takes the run it executes (its trade id, ``run=``): it books under that run's fill id.
    books_per_run = True

    def __init__(self, config: PaperConfig, market: Market, quotes: QuoteSource, store: TradeStore) -> None:
        self.config = config
        self.market = market
        self.quotes = quotes
        self.store = store
        self._rng = random.Random(config.seed)

    def health(self) -> ExecutorHealth:
        outage = getattr(self.quotes, "outage", None)  # (the price table never fails)
        if outage:
            return ExecutorHealth(False, f"no quotes: {outage} (paper trades are refused until it answers)")
        return ExecutorHealth(True, "simulating fills from quotes")

    async def starting_wallet(self) -> list[Holding]:
        wallet = []
        for symbol, units in self.config.starting_balances.items():
            mint = self.market.by_symbol(symbol)
            amount = int(Decimal(units).scaleb(mint.decimals))
            wallet.append(Holding(mint.address, amount, await self.quotes.value(mint, amount)))
        return wallet

    async def wallet(self, principal_id: str) -> dict[str, Holding]:
        """The principal's paper holdings; its starting wallet first, if it has none yet. (Only
        a new wallet is priced: one the store holds is served while the price source is down,
        also just after a restart.)"""
        holdings = self.store.holdings(principal_id, pb.TRADING_MODE_PAPER)
        if holdings:
            return holdings
        # None at all: a new principal, or a shared store that restarted without its data. (An
        # existing wallet is never given twice: the store gives each one once.)
        self.store.ensure_wallet(principal_id, pb.TRADING_MODE_PAPER, await self.starting_wallet())
        return self.store.holdings(principal_id, pb.TRADING_MODE_PAPER)

    async def execute(self, order: Order, run: str = "") -> AsyncIterator[Progress | Outcome]:
        """The trade's progress, then its outcome; ``run``: its trade id (the fill id's; without
        one, the request's own, as earlier versions booked)."""
        quote = await self.quotes.quote(order.input_mint, order.output_mint, order.amount_atomic,
                                        order.exact_out, order.slippage_bps)
        yield Progress(pb.TRADE_STATUS_QUOTED, self._describe(order, quote))

        impact_bps = Decimal(quote.price_impact_pct) * 100
        bound = order.max_price_impact_bps or self.config.max_price_impact_bps
        if bound and impact_bps > bound:
            yield Outcome(pb.TRADE_STATUS_REJECTED, error=TradewireError(
                "PRICE_IMPACT_TOO_HIGH", f"price impact {quote.price_impact_pct}% exceeds max_price_impact_bps {bound}"
                + ("" if order.max_price_impact_bps else " ([paper] max_price_impact_bps: the request set none)")),
                quote=quote)
            return

        holdings = await self.wallet(order.principal_id)
        fees = self._fees(order, holdings)
        try:  # dry run against the current wallet: refuse before "sending"
            apply_fill(holdings, self._legs(order, quote.in_amount, 0, fees, 0))
        except InsufficientBalance as exc:
            yield Outcome(pb.TRADE_STATUS_REJECTED, error=_insufficient(self.market, exc), quote=quote)
            return
        await self._wait_half_latency()  # building and signing
        yield Progress(pb.TRADE_STATUS_SIGNED, "paper transaction built and signed")
        yield Progress(pb.TRADE_STATUS_SIMULATED, "simulation succeeded")

        amount_in, amount_out = self._drifted_fill(order, quote)
        # Valued now: it may ask the quote API, which must not fail a trade past its point of no return.
        value = await self._trade_value(order, amount_in, amount_out)
        yield Progress(pb.TRADE_STATUS_SUBMITTED, "paper transaction submitted")
        await self._wait_half_latency()  # landing
        fees = self._fees_at_landing(order, fees)  # (no await from here to the booking: still true then)
        if _breaks_limit(order, quote, amount_in, amount_out):
            yield self._failed_on_chain(order, run, quote, fees, TradewireError(
                "SLIPPAGE_EXCEEDED",
                f"price moved beyond the {order.slippage_bps} bps slippage tolerance before the swap landed: "
                f"{_missed_threshold(order, quote, amount_in, amount_out)}; nothing was swapped"))
            return
        filled = Outcome(pb.TRADE_STATUS_FILLED, Fill(quote, amount_in, amount_out, fees))
        try:
            self._book(order, run, filled, value)
        except InsufficientBalance as exc:  # a concurrent trade spent the balance first: the swap fails on chain
            error = _insufficient(self.market, exc)
            try:
                failed = self._failed_on_chain(order, run, quote, fees, error)
            except InsufficientBalance:  # not even its fee is left: a transaction its payer cannot pay is dropped
                failed = Outcome(pb.TRADE_STATUS_FAILED, error=error)  # (nothing booked)
            yield failed
            return
        self.quotes.invalidate()
        yield Progress(pb.TRADE_STATUS_CONFIRMED, "paper transaction confirmed")
        yield filled

    # -- the model ---------------------------------------------------------------------

    async def _wait_half_latency(self) -> None:
        if self.config.realtime and self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 2000)

    def _fees(self, order: Order, holdings: dict[str, Holding]) -> FeeBreakdown:
        cu_limit = order.mev.compute_unit_limit or DEFAULT_COMPUTE_UNIT_LIMIT
        creates_account = (
            not self.config.assume_accounts_exist
            and order.output_mint.address != SOL_MINT  # native SOL needs no token account
            and order.output_mint.address not in holdings
        )
        return FeeBreakdown(
            base_fee_lamports=BASE_FEE_LAMPORTS_PER_SIGNATURE,
            priority_fee_lamports=priority_fee_lamports(order.mev, cu_limit),
            jito_tip_lamports=order.mev.jito_tip_lamports if order.mev.uses_jito else 0,
            ata_rent_lamports=ATA_RENT_LAMPORTS if creates_account else 0,
        )

    def _fees_at_landing(self, order: Order, fees: FeeBreakdown) -> FeeBreakdown:
        """The fees as the transaction lands: a token account another trade of this wallet created
        meanwhile (a concurrent first buy of the same mint) is not created, nor paid for, twice."""
        if not fees.ata_rent_lamports:
            return fees
        held = self.store.holdings(order.principal_id, pb.TRADING_MODE_PAPER)
        return replace(fees, ata_rent_lamports=0) if order.output_mint.address in held else fees

    def _failed_on_chain(self, order: Order, run: str, quote: Quote, fees: FeeBreakdown,
                         error: TradewireError) -> Outcome:
        """A swap that fails where it lands: it pays what a failed transaction pays (booked
        under its fill id, like any outcome past the point of no return)."""
        failed = Outcome(pb.TRADE_STATUS_FAILED, Fill(quote, 0, 0, self._failed_fees(order, fees)), error)
        self._book(order, run, failed, 0)
        return failed

    @staticmethod
    def _failed_fees(order: Order, fees: FeeBreakdown) -> FeeBreakdown:
        """A failed transaction pays its signature and priority fees; tip and rent roll back.

        A failing transaction in a Jito bundle never lands, so it pays nothing at all.
        """
        if order.mev.uses_jito:
            return FeeBreakdown()
        return FeeBreakdown(base_fee_lamports=fees.base_fee_lamports, priority_fee_lamports=fees.priority_fee_lamports)

    def _drift_factor(self) -> Decimal:
        """How the price moved over the modelled latency: a random walk in log price, so that it
        stays positive however wild the drift."""
        sigma = float(self.config.drift_bps_per_s) / BPS * math.sqrt(self.config.latency_ms / 1000)
        return Decimal(repr(math.exp(self._rng.gauss(0, sigma)))) if sigma else Decimal(1)

    def _drifted_fill(self, order: Order, quote: Quote) -> tuple[int, int]:
        """The quote moved by the drift; the pool rounds in its own favour (an exact-out input
        up, an exact-in output down)."""
        factor = self._drift_factor()
        if order.exact_out:
            return int((Decimal(quote.in_amount) / factor).to_integral_value(ROUND_CEILING)), quote.out_amount
        return quote.in_amount, int(Decimal(quote.out_amount) * factor)

    async def _trade_value(self, order: Order, amount_in: int, amount_out: int) -> int:
        valuation = self.market.valuation.address
        if order.input_mint.address == valuation:
            return amount_in
        if order.output_mint.address == valuation:
            return amount_out
        return await self.quotes.value(order.output_mint, amount_out)

    @staticmethod
    def _legs(order: Order, amount_in: int, amount_out: int, fees: FeeBreakdown, value: int) -> FillLegs:
        return FillLegs(
            input_mint=order.input_mint.address, amount_in=amount_in,
            output_mint=order.output_mint.address, amount_out=amount_out,
            fee_mint=SOL_MINT, fee_lamports=fees.total_lamports, trade_value=value,
        )

    def _book(self, order: Order, run: str, outcome: Outcome, value: int) -> None:
        """Book the outcome's fill under the run's fill id, once, with the outcome as its receipt
        (so whoever settles the trade later reads what was booked)."""
        fill = outcome.fill
        confirmed = outcome.status == pb.TRADE_STATUS_FILLED
        receipt = orjson.dumps({"quote": fill.quote, "outcome": outcome_to_json(outcome.status, outcome.error, fill,
                                                                                 confirmed)}).decode()
        try:
            self.store.apply_fill(order.principal_id, pb.TRADING_MODE_PAPER,
                                  self._legs(order, fill.amount_in, fill.amount_out, fill.fees, value),
                                  fill_id=paper_fill_id(order.request_id, run), once=True, receipt=receipt,
                                  **self._fence(order, run))
        except FillIdUsed:  # voided by whoever settled this run while this process stalled
            raise TakenOver(order.request_id) from None

    def _fence(self, order: Order, run: str) -> dict:
        """A shared store's fence for a booking or voiding of ``run``: it goes through only while
        the store holds that run, owned by this replica (TradeLost or TakenOver otherwise). A store
        of one process has nothing to fence."""
        return {"run": (order.request_id, run)} if run and self.store.shared else {}

    async def reconcile(self, order: Order, result: pb.TradeResult) -> Outcome:
        """The outcome of a trade left past the point of no return by a runner that stopped (or
        lost the store) before it stored its end: what was booked, or nothing, ever. Only this
        run's fill id is settled (``result.trade_id``), and the request's own, under which a run
        of an earlier version booked (no run of this version does)."""
        run = result.trade_id
        outcome = self._settled(order, run, paper_fill_id(order.request_id, run))
        if outcome is None and run:
            outcome = self._settled(order, run, paper_fill_id(order.request_id))
        if outcome is None:
            return Outcome(pb.TRADE_STATUS_EXPIRED, error=TradewireError(
                "TRADE_EXPIRED", "the gateway running the trade stopped before the paper transaction landed; "
                "nothing was booked"))
        return outcome

    def _settled(self, order: Order, run: str, fill_id: str) -> Outcome | None:
        """What was booked under ``fill_id``; None when nothing was, and now never can be (this
        call voided it, or an earlier settlement of the run did)."""
        principal = order.principal_id
        if self.store.void_fill(principal, pb.TRADING_MODE_PAPER, fill_id, **self._fence(order, run)):
            return None
        receipt = self.store.fill_receipt(principal, pb.TRADING_MODE_PAPER, fill_id)
        if receipt == VOIDED_RECEIPT:
            return None
        if receipt is not None:  # booked: its outcome, as it was booked
            booked = orjson.loads(receipt)
            return outcome_from_json(booked["outcome"], quote_from_json(booked["quote"]))[0]
        # Booked by a version that kept no receipt.
        return Outcome(pb.TRADE_STATUS_FAILED, error=TradewireError(
            "INTERNAL", "the paper fill was booked (positions include it) but the gateway running the trade "
            "stopped before recording its amounts"))

    def _describe(self, order: Order, quote: Quote) -> str:
        return (f"quoted {order.input_mint.to_units(quote.in_amount)} {order.input_mint.symbol} → "
                f"{order.output_mint.to_units(quote.out_amount)} {order.output_mint.symbol} "
                f"({quote.price_impact_pct}% price impact)")


def paper_fill_id(request_id: str, run: str = "") -> str:
    """The one fill id of a run of a paper trade (fill ids are per principal and mode): its trade
    id, which every run has its own of. Without a run, the request's own (the one fill id of
    every run of the request id, as earlier versions booked: a run settled after the store lost
    it could void the id of the run that followed). The two never meet: ``paper:`` is followed by
    the request id, ``paper-run:`` by the trade id."""
    return f"paper-run:{run}:{request_id}" if run else f"paper:{request_id}"


def _min_out(quote: Quote) -> int:
    """The least output an exact-in swap accepts: its threshold, and never nothing (a tolerance
    that rounds the threshold down to 0 must not let the input go for no output at all)."""
    return max(quote.other_amount_threshold, 1)


def _breaks_limit(order: Order, quote: Quote, amount_in: int, amount_out: int) -> bool:
    """Whether the moved price takes the swap past its limit, so that it fails where it lands."""
    if order.exact_out:
        return amount_in > quote.other_amount_threshold
    return amount_out < _min_out(quote)


def _missed_threshold(order: Order, quote: Quote, amount_in: int, amount_out: int) -> str:
    """What the swap would have done at the moved price, against the limit it would have broken."""
    if order.exact_out:
        mint = order.input_mint
        return (f"it would have sold {mint.to_units(amount_in)} {mint.symbol}, at most "
                f"{mint.to_units(quote.other_amount_threshold)} allowed")
    mint = order.output_mint
    return (f"it would have bought {mint.to_units(amount_out)} {mint.symbol}, at least "
            f"{mint.to_units(_min_out(quote))} required")


def _insufficient(market: Market, exc: InsufficientBalance) -> TradewireError:
    mint = market.mint(exc.mint, "input_mint")
    return TradewireError(
        "INSUFFICIENT_FUNDS",
        f"paper balance too low: needs {mint.to_units(exc.needed)} {mint.symbol}, has {mint.to_units(exc.available)}",
        metadata={"mint": mint.symbol, "needed": mint.to_units(exc.needed), "available": mint.to_units(exc.available)},
    )
