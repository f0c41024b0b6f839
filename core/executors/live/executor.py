"""LIVE executor: real Solana swaps, with MEV protection, that never send twice by accident.

The path of one trade, each step a status event (DESIGN.md §4):

    safety (kill switch, allow-list) → quote (Jupiter, restrictIntermediateTokens, the
    request's slippage) → QUOTED → price impact → safety (notional, exposure, daily loss;
    funds for the quoted input), counting the trades in flight, and this trade's reservation
    → build (/swap: dynamic CU limit, priority fee capped, no more Jito tip than asked) →
    refuse on simulationError → safety (funds, SOL reserve; exact fees of the built
    transaction) → sign (our slot only)
    → persist (prepared) → SIGNED → simulate (sigVerify) → kill switch (again) → SIMULATED
    [point of no return] → persist (pending) → send (RPC, or a Jito bundle) → SUBMITTED →
    confirm (the shared Confirmer) → CONFIRMED → fill read from the transaction's meta → FILLED

How double sending is prevented:

1. The signed bytes are journaled before the first send (``live_orders``), and every
   re-broadcast sends exactly those bytes: one signature, which the chain executes at most
   once (its status cache refuses a second execution).
2. A request id has at most one journaled transaction that may be live (a partial unique
   index). ``execute`` for a request that already has one resumes it — it never quotes or
   signs again — whether that is a restart, a re-run by the runner or a client retry.
3. A pending transaction ends only on evidence: its status (landed, at the configured
   commitment), or a block height past its lastValidBlockHeight read *before* lookups that
   would find it had it landed — its status with history search, getTransaction — and found
   nothing (expired); lookups answered by a node behind the one that read the height prove
   nothing. The block engine reporting a bundle Failed stops its re-broadcasts, but its
   outcome waits for that same evidence: until then the signed bytes may still land.
   Unreachable upstreams leave it pending (SUBMITTED) and it is reconciled by signature.

A trade holds its reservation (what it may spend and buy, safety.py) from its admission until
it is final — refused or failed before send, or its transaction landed, expired or dropped —
and one found pending at start-up or adopted holds one again, so the limits see every trade
in flight.

Errors: breaker open → CIRCUIT_OPEN (UNAVAILABLE, retry-after); an upstream still failing
after the bounded retries, answering malformed, or (the RPC) with an error object →
UPSTREAM_UNAVAILABLE (only ever before send; one warning line, no traceback); the blockhash
expired while the swap was built and signed, or before the first send when the RPC's
preflight refused it (-32002: a refusal is never forwarded; only when no re-broadcast had
gone out, and the journal voids the row) →
UPSTREAM_UNAVAILABLE too (REJECTED, so the runner and the caller may run it again), as are
identical trades whose every rebuild came out as another request's transaction;
slippage (program error 6001) → SLIPPAGE_EXCEEDED (ABORTED): REJECTED with its quote when
found before send, FAILED once sent; the wallet cannot pay → INSUFFICIENT_FUNDS
(FAILED_PRECONDITION); the built swap fails simulation before send → REJECTED, RISK_LIMIT
(check SIMULATION); expired (the chain past its lastValidBlockHeight, and the signature not
found) → EXPIRED / TRADE_EXPIRED (also a Jito bundle dropped because its blockhash expired, as
the node's isBlockhashValid says: a preflight or simulation that no longer knows the blockhash
proves nothing — it keeps back a blockhash's last blocks — nor does one after a re-broadcast went
out: the signature decides); a Jito bundle dropped unlanded → FAILED (once its blockhash has expired), or
refused outright by the block engine → REJECTED, both BUNDLE_NOT_LANDED (ABORTED: submit again
under a new request id); a swap that landed without the rest of its bundle is its fill once the
rest has landed too or can no longer land, with the fees of those that landed;
anything unexpected → INTERNAL with nothing internal in the message (the traceback is logged).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from solders.instruction import AccountMeta, CompiledInstruction, Instruction
from solders.message import Message, MessageHeader, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from tradewire.core import lifecycle
from tradewire.core.config import LiveConfig
from tradewire.core.errors import TradewireError
from tradewire.core.executors.base import ExecutorHealth, Outcome, Progress
from tradewire.core.executors.live.breaker import OPEN, CircuitBreaker, CircuitOpen
from tradewire.core.executors.live.confirmer import (
    DROPPED, EXPIRED, UPSTREAM_FAILURES, Confirmer, Resolution, Watch,
)
from tradewire.core.executors.live.fills import (
    WSOL_MINT, ChainFill, UnreadableTransaction, compute_budget, read_transaction,
)
from tradewire.core.executors.live.jito_client import (
    DONT_FRONT_ACCOUNT, TIP_ACCOUNTS, JitoClient, bundle_id, tip_transfers,
)
from tradewire.core.executors.live.jupiter_client import JupiterClient, to_quote
from tradewire.core.trades import apply_outcome
from tradewire.core.executors.live.outcomes import (
    blockhash_expired, chain_error, is_blockhash_not_found, swap_simulation_err,
)
from tradewire.core.executors.outcome_json import outcome_from_json, outcome_to_json, quote_from_json, quote_to_json
from tradewire.core.executors.live.reservations import ReservationBook
from tradewire.core.executors.live.safety import SafetyChecks, WalletBalances
from tradewire.core.executors.live.solana_rpc import RpcError, SolanaRpc
from tradewire.core.executors.live.upstreams import (
    HttpSettings, TransportWrapper, Upstream, UpstreamError, reading,
)
from tradewire.core.retry import RetryPolicy
from tradewire.core.executors.live.wallet import Wallet
from tradewire.core.market import Market
from tradewire.core.order import (ATA_RENT_LAMPORTS, BASE_FEE_LAMPORTS_PER_SIGNATURE, FeeBreakdown, Fill, Order, Quote,
                                  priority_fee_lamports)
from tradewire.core.portfolio import FillLegs, Holding, InsufficientBalance
from tradewire.core.quotes import QuoteSource
from tradewire.core.store.base import TakenOver
from tradewire.core.store.live_orders import (
    DROPPED as STATE_DROPPED,
    EXPIRED as STATE_EXPIRED,
    FINAL_STATES,
    LANDED as STATE_LANDED,
    PENDING,
    PREPARED,
    ROUTE_JITO,
    ROUTE_RPC,
    AlreadyRecorded,
    LiveOrder,
    LiveOrderStore,
)
from tradewire.v1 import trade_pb2 as pb

log = logging.getLogger("tradewire.live")

LIVE = pb.TRADING_MODE_LIVE
RECENT_FINAL_NS = 2 * 86_400 * 10**9  # final rows checked at start-up for unfinished bookkeeping
COMPLETION_GRACE_S = 1.0
BUILD_ATTEMPTS = 10  # rebuilds when another request built the identical transaction
BOOKING_RETRY_MAX_S = 30.0  # longest wait between tries of a booking the trade store refused
_PRE_SEND_REJECTIONS = {"NO_ROUTE", "RISK_LIMIT", "PRICE_IMPACT_TOO_HIGH", "INSUFFICIENT_FUNDS", "CIRCUIT_OPEN",
                        "LIVE_NOT_CONFIGURED", "UPSTREAM_UNAVAILABLE", "STORE_UNAVAILABLE"}


def net_of_rent_refund(fee_lamports: int, rent_refund: int) -> tuple[int, int]:
    """(lamports the booking still spends on fees and rent, lamports of refund left over)."""
    return max(0, fee_lamports - rent_refund), max(0, rent_refund - fee_lamports)


@dataclass
class _Attempt:
    """What one fresh execution has done so far (to void an unsent transaction on the way out)."""

    signature: str | None = None
    sent: bool = False


@dataclass(frozen=True)
class _Built:
    swap: dict[str, Any]
    tx: VersionedTransaction  # as built, our slot empty


class LiveExecutor:
    name = "live"

    def __init__(self, config: LiveConfig, market: Market, quotes: QuoteSource, store, recorder, wallet: Wallet,
                 orders: LiveOrderStore, *, wrap_transports: dict[str, TransportWrapper] | None = None,
                 reservations: ReservationBook | None = None, shared_kill_switch: Callable[[], str] | None = None,
                 clock=time.monotonic) -> None:
        self.config = config
        self.market = market
        self.quotes = quotes
        self.store = store
        self.recorder = recorder
        self.wallet = wallet
        self.orders = orders
        wraps = wrap_transports or {}
        http = HttpSettings(config.http_timeout_s, config.connect_timeout_s, config.max_connections)
        retry = RetryPolicy(max_attempts=config.retry_attempts, initial_backoff_s=config.retry_backoff_s,
                            max_backoff_s=config.retry_max_backoff_s)

        def upstream(name: str, url: str) -> Upstream:
            breaker = CircuitBreaker(name, config.breaker_failures, config.breaker_cooldown_s, clock)
            return Upstream(name, url, http, breaker, retry, wraps.get(name))

        self.quote_upstream = upstream("quote", config.jupiter_url)
        self.rpc_upstream = upstream("rpc", config.rpc_url)
        self.jito_upstream = upstream("jito", config.jito_url) if config.jito_url else None
        self.jupiter = JupiterClient(self.quote_upstream)
        self.rpc = SolanaRpc(self.rpc_upstream)
        self.jito = JitoClient(self.jito_upstream) if self.jito_upstream else None
        self.safety = SafetyChecks(config, market, orders, book=reservations, shared_kill_switch=shared_kill_switch)
        self.confirmer = Confirmer(self.rpc, self.jito, orders, self._finalize, commitment=config.commitment,
                                   poll_interval_s=config.poll_interval_s,
                                   rebroadcast_interval_s=config.rebroadcast_interval_s, clock=clock)
        self._books_ready: set[str] = set()
        self._active: set[tuple[str, str]] = set()
        self._followed: set[tuple[str, str]] = set()  # requests an execute()/reconcile() call reports
        self._completions: set[asyncio.Task] = set()
        self._valuations: set[asyncio.Task] = set()  # of reservations held for transactions in flight
        self._born_ns = time.time_ns()
        self._lamports: int | None = None  # last wallet balance read (health)
        self._balance_unknown: tuple[float, str] | None = None  # (since, why) while it cannot be read
        self._health_task: asyncio.Task | None = None
        self._book_task: asyncio.Task | None = None
        self.sol = market.mint(WSOL_MINT, "mint") if any(m.address == WSOL_MINT for m in market.mints()) else None

    @property
    def breakers(self) -> list[CircuitBreaker]:
        ups = [self.quote_upstream, self.rpc_upstream] + ([self.jito_upstream] if self.jito_upstream else [])
        return [u.breaker for u in ups]

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Reconcile what a previous run left behind, then confirm in the background.

        Prepared rows of a previous run were never sent (pending is committed before any
        send): they are voided. Pending rows are watched by signature until the chain decides.
        Final rows whose bookkeeping the previous run did not finish are booked, and bookings
        it was interrupted in are run again (idempotent: see :meth:`_book`). Trades the
        runner reconciles (:meth:`reconcile`) get their outcome from it; any other trade
        record still open is completed here.
        """
        voided = self.orders.void_prepared(self._born_ns)
        await self._finish_interrupted_bookings()
        await self._complete_unbooked()
        pending = self.orders.in_state(PENDING)
        for order in pending:
            self._track(order)
        log.info("live executor started", extra={"wallet": self.wallet.address, "pending": len(pending),
                                                 "voided": voided})
        self.confirmer.start()
        self._health_task = asyncio.create_task(self._refresh_health(), name="live-health")
        self._book_task = asyncio.create_task(self.safety.book.keep_renewed(), name="live-reservations")

    async def reconcile(self, order: Order, result: pb.TradeResult) -> Outcome:
        """The runner's hook for a trade a previous process left after the point of no return:
        its outcome, decided by its signature — never by signing again."""
        key = (order.principal_id, order.request_id)
        self._followed.add(key)
        try:
            outcome, confirmed = await self._reconcile(order)
        finally:
            self._followed.discard(key)
        steps = ()
        if confirmed and _rank(result.status) < _rank(pb.TRADE_STATUS_CONFIRMED):
            steps = (Progress(pb.TRADE_STATUS_CONFIRMED, f"transaction confirmed in slot {outcome.fill.slot}"),)
        return dataclasses.replace(outcome, progress=steps)

    async def _reconcile(self, order: Order) -> tuple[Outcome, bool]:
        # (adopted from a replica that stopped: the transaction it sent, if any, from the shared journal)
        row = self.orders.for_request(order.principal_id, order.request_id) \
            or self.orders.adopt(order.principal_id, order.request_id)
        if row is None or row.state == PREPARED:
            if row is not None:
                self.orders.void(row.signature)
            return Outcome(pb.TRADE_STATUS_FAILED, error=TradewireError(
                "SHUTTING_DOWN", "the gateway stopped before the transaction was sent; nothing was sent or charged")), \
                False
        quote = quote_from_json(row.quote)
        if row.state in FINAL_STATES and row.outcome is not None:
            return outcome_from_json(row.outcome, quote)
        return await self._await(order, self._track(row), quote)

    async def close(self) -> None:
        tasks = [t for t in (self._health_task, self._book_task, *self._completions, *self._valuations)
                 if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.confirmer.stop()
        for upstream in (self.quote_upstream, self.rpc_upstream, self.jito_upstream):
            if upstream is not None:
                await upstream.close()
        self.orders.close()

    # -- health --------------------------------------------------------------------------

    async def wallet_balance(self) -> int:
        """A read-only check of the wallet's SOL balance (lamports)."""
        lamports = await self.rpc.get_balance(self.wallet.address)
        self._balance_read(lamports)
        return lamports

    def _balance_read(self, lamports: int) -> None:
        self._lamports = lamports
        self._balance_unknown = None

    def _balance_unreadable(self, why: str) -> None:
        """Health stops vouching for a balance it can no longer read (since the first failure)."""
        since = self._balance_unknown[0] if self._balance_unknown else time.time()
        self._balance_unknown = (since, why)

    async def _refresh_health(self) -> None:
        while True:
            try:
                await self.wallet_balance()
            except (UpstreamError, CircuitOpen, RpcError) as exc:
                self._balance_unreadable(str(exc))
            except Exception as exc:  # noqa: BLE001
                log.exception("wallet balance read failed")
                self._balance_unreadable(f"unexpected {type(exc).__name__}")
            await asyncio.sleep(self.config.health_refresh_s)

    def health(self) -> ExecutorHealth:
        problems = [b.describe() for b in self.breakers if b.state == OPEN]
        try:
            switch = self.safety.kill_switch()
        except TradewireError:
            switch = "unknown"
            problems.append("kill switch unknown: the shared store does not answer (no LIVE trade is admitted)")
        if switch == "halt":
            problems.append("kill switch engaged: LIVE trading is halted")
        reserve = int(self.config.min_sol_reserve.scaleb(9))
        unknown = self._balance_unknown
        if unknown is not None:
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unknown[0]))
            problems.append(f"wallet balance unknown since {since}: it cannot be read ({unknown[1]})")
        elif self._lamports is not None and self._lamports < reserve:
            problems.append("wallet SOL balance below the fee reserve")
        stalled = self.confirmer.stalled(self.config.stalled_after_s)
        if stalled:
            problems.append(f"{stalled} transaction(s) unconfirmed for over {self.config.stalled_after_s:.0f}s")
        undetermined = self.confirmer.undetermined()
        if undetermined:
            problems.append(f"{len(undetermined)} transaction(s) past their blockhash validity that the RPC node "
                            f"cannot look up ({undetermined[0].undetermined}): their trades stay SUBMITTED until "
                            "a node with their transaction history answers")
        in_flight = len(self.confirmer.watches)
        balance = "unknown" if self._lamports is None or unknown else ("ok" if self._lamports >= reserve else "low")
        summary = f"live on Solana: wallet balance {balance}, {in_flight} transaction(s) awaiting confirmation"
        if switch == "reduce_only":
            summary += "; kill switch reduce-only: only trades into the reduce-only mints are admitted"
        return ExecutorHealth(not problems, summary + ("; " + "; ".join(problems) if problems else ""))

    # -- execute -------------------------------------------------------------------------

    async def execute(self, order: Order):
        key = (order.principal_id, order.request_id)
        if key in self._active:  # the runner de-duplicates; this is defence in depth
            yield Outcome(pb.TRADE_STATUS_FAILED, error=TradewireError("INTERNAL", "internal error"))
            return
        self._active.add(key)
        self._followed.add(key)
        try:
            existing = self.orders.for_request(order.principal_id, order.request_id)
            if existing is not None and existing.state == PREPARED:
                self.orders.void(existing.signature)  # signed by an attempt that ended before sending
                existing = None
            if existing is not None:
                async for item in self._resume(order, existing):
                    yield item
                return
            attempt = _Attempt()
            try:
                async for item in self._fresh(order, attempt):
                    yield item
            finally:
                if not attempt.sent:  # whatever it reserved will not be spent
                    self.safety.release(key)
                if attempt.signature and not attempt.sent:
                    self.orders.void(attempt.signature)
        finally:
            self._active.discard(key)
            self._followed.discard(key)

    async def _resume(self, order: Order, row: LiveOrder):
        """The request already has a transaction that may be live: follow it, never re-sign."""
        quote = quote_from_json(row.quote)
        yield Progress(pb.TRADE_STATUS_SUBMITTED, f"transaction {row.signature} was already sent for this request; "
                                                  f"following it")
        if row.state in FINAL_STATES and row.outcome is not None:
            outcome, confirmed = outcome_from_json(row.outcome, quote)
        else:
            outcome, confirmed = await self._await(order, self._track(row), quote)
        if confirmed:
            yield Progress(pb.TRADE_STATUS_CONFIRMED, f"transaction confirmed in slot {outcome.fill.slot}")
        yield outcome

    async def _fresh(self, order: Order, attempt: _Attempt):
        quote: Quote | None = None

        def refused(error: TradewireError, status: int = pb.TRADE_STATUS_REJECTED) -> Outcome:
            return Outcome(status, error=error, quote=quote)  # a refusal after quoting shows the quote

        try:
            refusal = self.safety.before_quote(order)
            if refusal is None and order.mev.uses_jito and self.jito is None:
                refusal = TradewireError("LIVE_NOT_CONFIGURED", "Jito strategies need live.jito_url")
            if refusal is not None:
                yield refused(refusal)
                return
            raw_quote = await self.jupiter.quote(order.input_mint, order.output_mint, order.amount_atomic,
                                                 order.exact_out, order.slippage_bps)
            quote = to_quote(raw_quote)
            self._check_quote(order, raw_quote, quote)
            yield Progress(pb.TRADE_STATUS_QUOTED, self._describe(order, quote))

            impact_limit = order.max_price_impact_bps or self.config.max_price_impact_bps
            if impact_limit and Decimal(quote.price_impact_pct) * 100 > impact_limit:
                yield refused(TradewireError(
                    "PRICE_IMPACT_TOO_HIGH",
                    f"price impact {quote.price_impact_pct}% exceeds max_price_impact_bps {impact_limit}"))
                return
            balances = await self._balances()
            values = await self._unit_values(order)
            # Every limit, counting the trades in flight, and this one's reservation, in one step.
            # The quoted input must be in the wallet before /swap builds the swap: its simulation
            # would fail first, in the chain's terms. Only the fees known before building here.
            refusal = self.safety.admit(order, quote, balances, self._fee_need(order, [], balances), values)
            if refusal is not None:
                yield refused(refusal)
                return
            await self._ensure_books(order, balances)

            for _ in range(BUILD_ATTEMPTS):
                built = await self._build(order, raw_quote, quote)
                if isinstance(built, Outcome):
                    yield built
                    return
                txs, primary, route = self._protect(order, built.tx)
                # Again, with every fee of the built transactions (priority fee, signatures).
                refusal = self.safety.refit(order, quote, balances, self._fee_need(order, txs, balances), values)
                if refusal is not None:
                    yield refused(refusal)
                    return
                signed = [self.wallet.sign(tx) for tx in txs]
                swap_tx = signed[primary]
                signature = str(swap_tx.signatures[0])
                if self.orders.claim_signature(signature, order.principal_id, order.request_id):
                    break
                # Another request built the byte-identical swap in the same slot (here, or on
                # another replica): its signature would land once for both. Rebuild on a later blockhash.
                await asyncio.sleep(self.config.poll_interval_s)
            else:
                # Identical trades in one burst: every build in the slots waited through came out
                # as one another request had signed. Nothing was signed into the journal or sent.
                log.warning("could not build a transaction distinct from another request's",
                            extra={"trade_request_id": order.request_id})
                raise TradewireError(
                    "UPSTREAM_UNAVAILABLE",
                    "the swap API built the very transaction of another request for the same trade "
                    f"{BUILD_ATTEMPTS} times (identical trades in the same block would land once for both); "
                    "nothing was sent or charged, and the trade can be retried as it is")
            wires = [bytes(tx) for tx in signed]
            try:  # no await since the check above: the insert cannot collide on the signature
                row = self.orders.prepare(
                    signature=signature, principal=order.principal_id, request_id=order.request_id, route=route,
                    tx=wires[primary], bundle=wires if route == ROUTE_JITO else (),
                    bundle_id=bundle_id(signed) if route == ROUTE_JITO else None,
                    last_valid_block_height=int(built.swap["lastValidBlockHeight"]),
                    request=order.request.SerializeToString(), quote=quote_to_json(quote))
            except AlreadyRecorded:
                log.error("refusing to sign a second transaction for one request",
                          extra={"trade_request_id": order.request_id})
                yield refused(TradewireError("INTERNAL", "internal error"), pb.TRADE_STATUS_FAILED)
                return
            attempt.signature = signature
            budget = compute_budget(swap_tx)
            yield Progress(pb.TRADE_STATUS_SIGNED, (
                f"transaction {signature} signed (CU limit {budget.unit_limit}, priority fee "
                f"{budget.priority_fee} lamports{self._tip_text(order)}), valid until block height "
                f"{row.last_valid_block_height}"))

            sim = await self.rpc.simulate(wires[primary])
            if sim.get("err") is not None:
                status, error = chain_error(order, sim["err"], where="before send", charged=False, sent=False)
                yield refused(error, status)
                return
            if order.deadline_unix_ns is not None and order.deadline_unix_ns <= time.time_ns():
                yield refused(TradewireError("TRADE_EXPIRED", "deadline passed before the trade could be sent"),
                              pb.TRADE_STATUS_EXPIRED)
                return
            # The kill switch again, last thing before the point of no return: one engaged while
            # this trade was quoted, built and signed must stop it too.
            refusal = self.safety.before_quote(order)
            if refusal is not None:
                yield refused(refusal)
                return
            send_breaker = (self.jito_upstream if route == ROUTE_JITO else self.rpc_upstream).breaker
            send_breaker.before_call()  # an open breaker refuses before anything is sent
            yield Progress(pb.TRADE_STATUS_SIMULATED, f"simulation succeeded ({sim.get('unitsConsumed') or 0} compute units)")
        except CircuitOpen as exc:
            yield refused(TradewireError(
                "CIRCUIT_OPEN", f"the {_upstream_label(exc.upstream)} is failing; LIVE trades are paused "
                                f"for {exc.retry_after_s:.1f}s", retry_after_s=round(exc.retry_after_s, 3)))
            return
        except UpstreamError as exc:  # a refusal the caller may retry (lifecycle.may_run_again)
            log.warning("live trade refused before send: the %s is unavailable", _upstream_label(exc.upstream),
                        extra={"trade_request_id": order.request_id, "error": str(exc)})
            yield refused(TradewireError(
                "UPSTREAM_UNAVAILABLE", f"the {_upstream_label(exc.upstream)} is unavailable ({exc.message}); "
                                        f"nothing was sent"))
            return
        except RpcError as exc:  # the node answered a read or the simulation with an error object
            log.warning("live trade refused before send: the Solana RPC answered an error",
                        extra={"trade_request_id": order.request_id, "code": exc.code})
            yield refused(TradewireError(
                "UPSTREAM_UNAVAILABLE", f"the Solana RPC answered error {exc.code} before the trade was sent; "
                                        f"nothing was sent"))
            return
        except TradewireError as exc:
            yield refused(exc, pb.TRADE_STATUS_REJECTED if exc.reason in _PRE_SEND_REJECTIONS
                          else pb.TRADE_STATUS_FAILED)
            return
        except Exception:  # noqa: BLE001 - nothing was sent: fail closed, say nothing internal
            log.exception("live trade failed before send", extra={"trade_request_id": order.request_id})
            yield refused(TradewireError("INTERNAL", "internal error"), pb.TRADE_STATUS_FAILED)
            return

        # ---- the point of no return: from here the transaction may be on the network ----
        try:
            marked = self.orders.mark_pending(signature)
        except TradewireError as exc:  # (STORE_UNAVAILABLE: the shared journal could not record it; voided)
            yield refused(exc)
            return
        if not marked:  # no longer prepared: never send it
            log.error("prepared transaction was voided before send", extra={"signature": signature})
            yield Outcome(pb.TRADE_STATUS_FAILED, error=TradewireError("INTERNAL", "internal error"))
            return
        attempt.sent = True  # its reservation now ends with the transaction (_finalize)
        row = self.orders.get(signature)
        watch = self.confirmer.track(row)
        refused_at_send, unclear = await self._first_send(row, watch)
        if refused_at_send is not None:
            yield refused_at_send
            return
        via = "the Jito block engine as a bundle" if route == ROUTE_JITO else "the RPC"
        doubt = f" ({unclear}: its signature decides)" if unclear else ""
        yield Progress(pb.TRADE_STATUS_SUBMITTED,
                       f"transaction {signature} sent to {via}{doubt}; awaiting confirmation", signature=signature)
        outcome, confirmed = await self._await(order, watch, quote)
        if confirmed:
            yield Progress(pb.TRADE_STATUS_CONFIRMED, f"transaction confirmed in slot {outcome.fill.slot}")
        yield outcome

    def _track(self, row: LiveOrder) -> Watch:
        """Watch a transaction that may be live, holding its reservation until it is final
        (one found pending at start-up, or adopted, has none yet)."""
        key = (row.principal, row.request_id)
        if not self.safety.holds(key):
            self._reserve_sent(key, row)
        return self.confirmer.track(row)

    def _reserve_sent(self, key: tuple[str, str], row: LiveOrder) -> None:
        """Its amounts are reserved at once; its worst-case loss once the mints are valued, in
        the background (a quote API that hangs must not hold up the start)."""
        try:
            order, quote = self._order_of(row), quote_from_json(row.quote)
            fees = self._fee_need(order, [VersionedTransaction.from_bytes(w) for w in row.wires], None)
        except Exception as exc:  # noqa: BLE001 - it is still followed by signature; only not counted
            log.warning("a transaction in flight cannot be counted against the risk limits",
                        extra={"signature": row.signature, "error": str(exc)})
            return
        reservation = self.safety.reservation(order, quote, fees, {})
        self.safety.hold(key, reservation)

        async def value() -> None:
            try:
                loss = self.safety.reservation(order, quote, fees, await self._unit_values(order)).loss
                if self.safety.holds(key):  # (not final meanwhile)
                    self.safety.hold(key, dataclasses.replace(reservation, loss=loss))
            except Exception as exc:  # noqa: BLE001 - its amounts stay reserved
                log.warning("cannot value a transaction in flight; its worst-case loss is not counted",
                            extra={"signature": row.signature, "error": str(exc)})

        task = asyncio.create_task(value(), name=f"live-value-{row.request_id}")
        self._valuations.add(task)
        task.add_done_callback(self._valuations.discard)

    # -- steps -----------------------------------------------------------------------------

    def _check_quote(self, order: Order, raw: dict[str, Any], quote: Quote) -> None:
        wanted = quote.out_amount if order.exact_out else quote.in_amount
        if (raw.get("inputMint") != order.input_mint.address or raw.get("outputMint") != order.output_mint.address
                or wanted != order.amount_atomic or quote.in_amount <= 0 or quote.out_amount <= 0):
            log.error("quote does not match the order", extra={"trade_request_id": order.request_id})
            raise TradewireError("INTERNAL", "internal error")

    async def _balances(self) -> WalletBalances:
        """The wallet at ``confirmed``, and the trades in flight whose transaction it already
        shows (their reservations are not counted again: safety.py, "Trades in flight")."""
        owner = self.wallet.address
        epoch = self.safety.epoch()  # reservations released from now on may not show in what is read
        sent = {w.signature: (w.order.principal, w.order.request_id) for w in self.confirmer.watches.values()}
        (lamports, lamports_slot), (tokens, tokens_slot), landed = await asyncio.gather(
            self.rpc.balance_at(owner), self.rpc.token_balances_at(owner), self._landed_slots(list(sent)))
        self._balance_read(lamports)
        # Landed in a slot before both reads' (a read at its very slot may be from before it).
        read_at = min(lamports_slot, tokens_slot)
        settled = frozenset(sent[signature] for signature, slot in landed.items() if slot < read_at)
        return WalletBalances(lamports, tokens, epoch, settled)

    async def _landed_slots(self, signatures: list[str]) -> dict[str, int]:
        """The slot of each of these transactions that is ``confirmed`` (or finalized); a status
        the RPC does not give leaves the transaction counted as in flight (the safe side)."""
        if not signatures:
            return {}
        try:
            statuses = await self.rpc.get_signature_statuses(signatures)
        except UPSTREAM_FAILURES as exc:
            log.debug("statuses of the transactions in flight not read; all of them count against the limits",
                      extra={"error": str(exc)})
            return {}
        return {signature: status.slot for signature, status in zip(signatures, statuses)
                if status is not None and status.confirmation_status in ("confirmed", "finalized")}

    async def _ensure_books(self, order: Order, balances: WalletBalances) -> None:
        """A principal's LIVE book starts from the wallet as it is on its first LIVE trade."""
        if order.principal_id in self._books_ready:
            return
        holdings = []
        for mint in self.market.mints():
            amount = balances.holding(mint.address)
            if amount > 0:
                holdings.append(Holding(mint.address, amount, await self.quotes.value(mint, amount)))
        self.store.ensure_wallet(order.principal_id, LIVE, holdings)
        self._books_ready.add(order.principal_id)

    def _fee_cap(self, order: Order) -> int:
        cap = self.config.max_priority_fee_lamports
        if order.mev.max_priority_fee_lamports:
            cap = min(cap, order.mev.max_priority_fee_lamports)
        if order.mev.compute_unit_limit and order.mev.compute_unit_price_micro_lamports:
            # The router sizes the transaction's limit (a co-signed transaction cannot be changed):
            # the fee the request named, its price × its limit, is kept as a cap instead.
            cap = min(cap, priority_fee_lamports(order.mev, order.mev.compute_unit_limit))
        return cap

    def _swap_body(self, order: Order, raw_quote: dict[str, Any], price: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "quoteResponse": raw_quote, "userPublicKey": self.wallet.address, "wrapAndUnwrapSol": True,
            "dynamicComputeUnitLimit": True, "asLegacyTransaction": False,
        }
        mev = order.mev
        if mev.uses_jito:
            body["prioritizationFeeLamports"] = {"jitoTipLamports": mev.jito_tip_lamports}
        elif price is not None or mev.compute_unit_price_micro_lamports or mev.strategy != pb.MEV_STRATEGY_PRIORITY_FEE:
            body["computeUnitPriceMicroLamports"] = price if price is not None else mev.compute_unit_price_micro_lamports
        else:
            body["prioritizationFeeLamports"] = {"priorityLevelWithMaxLamports": {
                "priorityLevel": self.config.priority_level, "maxLamports": self._fee_cap(order)}}
        return body

    async def _build(self, order: Order, raw_quote: dict[str, Any], quote: Quote) -> _Built | Outcome:
        built = await self._build_once(order, raw_quote, quote)
        if isinstance(built, Outcome):
            return built
        cap = self._fee_cap(order)
        budget = compute_budget(built.tx)
        if budget.priority_fee > cap and not order.mev.uses_jito:
            # Rebuild at the highest CU price whose fee fits the cap.
            built = await self._build_once(order, raw_quote, quote, price=cap * 1_000_000 // max(1, budget.unit_limit))
            if isinstance(built, Outcome):
                return built
            budget = compute_budget(built.tx)
        if budget.priority_fee > cap:
            return Outcome(pb.TRADE_STATUS_REJECTED, error=TradewireError(
                "RISK_LIMIT", f"risk check PRIORITY_FEE: the priority fee of {budget.priority_fee} lamports exceeds "
                              f"the {cap} lamport cap", metadata={"check": "PRIORITY_FEE"}), quote=quote)
        # The tip is the router's to build, as the priority fee is: paid only as the request asked.
        tip, asked = sum(t for _, t in tip_transfers(built.tx.message)), order.mev.jito_tip_lamports
        if tip > asked:
            return Outcome(pb.TRADE_STATUS_REJECTED, error=TradewireError(
                "RISK_LIMIT", f"risk check JITO_TIP: the built swap tips {tip} lamports to Jito, more than the {asked} "
                              f"lamports requested", metadata={"check": "JITO_TIP"}), quote=quote)
        return built

    async def _build_once(self, order: Order, raw_quote: dict[str, Any], quote: Quote,
                          price: int | None = None) -> _Built | Outcome:
        swap = await self.jupiter.swap(self._swap_body(order, raw_quote, price))
        if swap.get("simulationError"):
            status, error = chain_error(order, swap_simulation_err(swap["simulationError"]),
                                        where="when the swap was built", charged=False, sent=False)
            return Outcome(status, error=error, quote=quote)
        with reading("quote", "swap"):
            tx = VersionedTransaction.from_bytes(base64.b64decode(swap["swapTransaction"]))
            int(swap["lastValidBlockHeight"])
        msg = tx.message
        signers = list(msg.account_keys)[: msg.header.num_required_signatures]
        others_signed = all(sig != Signature.default() for key, sig in zip(signers, tx.signatures)
                            if key != self.wallet.pubkey)
        if not signers or signers[0] != self.wallet.pubkey or not others_signed:
            log.error("swap transaction is not payable and signable by the LIVE wallet alone",
                      extra={"trade_request_id": order.request_id})
            raise TradewireError("INTERNAL", "internal error")
        return _Built(swap, tx)

    def _protect(self, order: Order, tx: VersionedTransaction) -> tuple[list[VersionedTransaction], int, str]:
        """(transactions in send order, index of the swap, route) for the request's MEV strategy."""
        strategy = order.mev.strategy
        if not order.mev.uses_jito:
            return [tx], 0, ROUTE_RPC
        if strategy != pb.MEV_STRATEGY_JITO_DONT_FRONT:
            return [tx], 0, ROUTE_JITO
        msg = tx.message
        if msg.header.num_required_signatures == 1:
            marked = _with_dont_front(msg)
            if marked is not None:  # our own transaction: the marker goes into it (re-signed below)
                return [VersionedTransaction.populate(marked, [Signature.default()])], 0, ROUTE_JITO
        # Co-signed by the router: its message cannot change. The marker rides in our own
        # transaction at bundle index 0, in front of the swap.
        tip_account = Pubkey.from_string(TIP_ACCOUNTS[0])
        ix = transfer(TransferParams(from_pubkey=self.wallet.pubkey, to_pubkey=tip_account, lamports=0))
        ix = Instruction(ix.program_id, bytes(ix.data), [*ix.accounts, AccountMeta(DONT_FRONT_ACCOUNT, False, False)])
        lead = MessageV0.try_compile(self.wallet.pubkey, [ix], [], msg.recent_blockhash)
        return [VersionedTransaction.populate(lead, [Signature.default()]), tx], 1, ROUTE_JITO

    def _fee_need(self, order: Order, txs: list[VersionedTransaction], balances: WalletBalances | None) -> int:
        """Every lamport the built transactions can cost the wallet (fees, tip, new accounts);
        without ``balances``, every account they may create counts."""
        need = 0
        for tx in txs:
            need += BASE_FEE_LAMPORTS_PER_SIGNATURE * tx.message.header.num_required_signatures
            need += compute_budget(tx).priority_fee
        if order.mev.uses_jito:
            need += order.mev.jito_tip_lamports
        if balances is None or not balances.has_account(order.output_mint.address):
            need += ATA_RENT_LAMPORTS
        if order.input_mint.address == WSOL_MINT and (balances is None or WSOL_MINT not in balances.tokens):
            need += ATA_RENT_LAMPORTS  # the temporary wrapped-SOL account, refunded in the same transaction
        return need

    def _tip_text(self, order: Order) -> str:
        return f", Jito tip {order.mev.jito_tip_lamports} lamports" if order.mev.uses_jito else ""

    def _describe(self, order: Order, quote: Quote) -> str:
        return (f"quoted {order.input_mint.to_units(quote.in_amount)} {order.input_mint.symbol} → "
                f"{order.output_mint.to_units(quote.out_amount)} {order.output_mint.symbol} "
                f"({quote.price_impact_pct}% price impact)")

    async def _first_send(self, row: LiveOrder, watch: Watch) -> tuple[Outcome | None, str]:
        """Send once: (the outcome of a definite refusal — nothing is on the network — or None,
        and what was unclear about the answer, "" when it accepted). Anything but a refusal
        (accepted, an error answer, no answer), and a refusal that came after a re-broadcast
        went out, leaves the signature to decide."""
        self.orders.note_broadcast(row.signature)
        refusal: RpcError
        try:
            if row.route == ROUTE_JITO:
                self.confirmer.note_bundle_id(watch, await self.jito.send_bundle(row.wires, check_breaker=False))
            else:
                await self.rpc.send(row.tx, skip_preflight=self.config.skip_preflight, check_breaker=False)
            return None, ""
        except RpcError as exc:
            refusal = exc
            preflight = row.route == ROUTE_RPC and exc.code in (-32002, -32003)
            bundle_refused = row.route == ROUTE_JITO and exc.code in (-32602, -32600)
            if not (preflight or bundle_refused):
                log.warning("send answered an error; reconciling by signature",
                            extra={"signature": row.signature, "code": exc.code})
                return None, f"it answered error {exc.code}"
        except (UpstreamError, CircuitOpen) as exc:
            log.warning("send outcome unknown; reconciling by signature",
                        extra={"signature": row.signature, "error": str(exc)})
            return None, "it gave no clear answer"
        # Refused outright: the node / engine did not take it, so it was never forwarded.
        # Only the refused send ever carried these bytes: no re-broadcast, nothing seen on chain.
        unsent = watch.broadcasts == 0 and not watch.finalizing and not watch.in_block
        err = refusal.data.get("err") if preflight and isinstance(refusal.data, dict) else None
        if not unsent:
            # A re-broadcast of these bytes (no preflight) went out before this answer, or the
            # chain already shows them: the refusal proves nothing. The signature decides — also
            # for BlockhashNotFound, which a validator's preflight answers for a blockhash's last
            # blocks (Agave keeps back MAX_TRANSACTION_FORWARDING_DELAY) while the same bytes sent
            # without preflight can still land.
            log.warning("first send refused after the transaction had gone out; reconciling by signature",
                        extra={"signature": row.signature, "code": refusal.code})
            return None, f"it refused the first send (error {refusal.code}) after a re-broadcast had gone out"
        self.confirmer.forget(row.signature)  # (no await since the line above: none can start now)
        order = self._order_of(row)
        if (is_blockhash_not_found(err) and refusal.code == -32002 and unsent
                and self.orders.void_refused(row.signature)):
            # "Transaction simulation failed": a preflight refusal is never forwarded, so nothing
            # is on the network and the request may sign anew, from a fresh quote.
            self.safety.release((row.principal, row.request_id))
            return Outcome(pb.TRADE_STATUS_REJECTED, error=TradewireError(
                "UPSTREAM_UNAVAILABLE", "the RPC refused the transaction at its preflight: its blockhash expired "
                                        "before the send; nothing was sent or charged, and the trade can be "
                                        "retried as it is"), quote=quote_from_json(row.quote)), ""
        if is_blockhash_not_found(err):  # signed for a block height the chain has passed: it can never land
            status, error = blockhash_expired(f"before the RPC took transaction {row.signature} (preflight)")
        elif err is not None:
            status, error = chain_error(order, err, where="in the RPC's preflight", charged=False, sent=False)
        elif preflight:
            status, error = pb.TRADE_STATUS_FAILED, TradewireError("INTERNAL", "the RPC refused the transaction")
        else:  # (not a fault of the gateway's: nothing went out, so the request may be sent again)
            status, error = pb.TRADE_STATUS_REJECTED, TradewireError(
                "BUNDLE_NOT_LANDED", f"the block engine refused the Jito bundle ({refusal.message[:200]}); nothing "
                                     f"was sent or charged. Submit the trade again under a new request id",
                metadata={"bundle_id": row.bundle_id or ""})
        fill = Fill(quote_from_json(row.quote), 0, 0, FeeBreakdown(), row.signature)
        state = STATE_EXPIRED if status == pb.TRADE_STATUS_EXPIRED else STATE_DROPPED
        self.orders.finalize(row.signature, state, outcome_to_json(status, error, fill, False))
        self.safety.release((row.principal, row.request_id))
        return Outcome(status, fill, error), ""

    async def _await(self, order: Order, watch: Watch, quote: Quote) -> tuple[Outcome, bool]:
        watch.attached += 1
        try:
            data = await asyncio.shield(watch.future)
        except asyncio.CancelledError:
            watch.attached -= 1
            self._followed.discard((order.principal_id, order.request_id))
            if watch.future.done() and not watch.future.cancelled():
                self._complete_later(watch.order, watch.future.result())  # nobody will report it now
            raise
        watch.attached -= 1
        return outcome_from_json(data, quote)

    # -- finalization (the confirmer calls this once per transaction) ------------------------

    async def _finalize(self, watch: Watch, resolution: Resolution) -> dict[str, Any] | None:
        row = self.orders.get(watch.signature) or watch.order
        if row.state in FINAL_STATES and row.outcome is not None:
            self.safety.release((row.principal, row.request_id))
            return row.outcome  # finalized before (e.g. by a previous run)
        order = self._order_of(row)
        quote = quote_from_json(row.quote)
        dropped = watch.extra.get("dropped")  # why the block engine's Failed bundle did not land
        fill = Fill(quote, 0, 0, FeeBreakdown(), row.signature)
        rest: list[ChainFill] = []  # the swap never landed: what of the rest of its bundle did, alone
        if resolution.kind == EXPIRED and dropped is not None:
            (status, error), state, confirmed = dropped, STATE_DROPPED, False
            rest, _ = await self._rest_of_bundle(row, resolution.slot, resolution.slot)
        elif resolution.kind == EXPIRED:
            state = STATE_EXPIRED
            status, error, confirmed = pb.TRADE_STATUS_EXPIRED, TradewireError(
                "TRADE_EXPIRED", f"blockhash expired: transaction {row.signature} never landed (block height "
                                 f"{resolution.height} passed its last valid height {row.last_valid_block_height}); "
                                 f"nothing was charged"), False
            rest, _ = await self._rest_of_bundle(row, resolution.slot, resolution.slot)
        elif resolution.kind == DROPPED:
            diagnosis = await self._diagnose_dropped(order, row, resolution.slot)
            if diagnosis is None or diagnosis[0] != pb.TRADE_STATUS_EXPIRED:
                # "Failed" is the engine's word for its own attempts; the signed bytes are out and may
                # still land (a re-broadcast in flight, a leader) until their last valid height has
                # passed. Told then, if they did not: "submit again" must never mean trading twice.
                # (None: its blockhash is in its last blocks; if it never lands, it expired.)
                if diagnosis is not None:
                    watch.extra["dropped"] = diagnosis
                return None
            status, error = diagnosis
            state = STATE_EXPIRED
            confirmed = False
            rest, _ = await self._rest_of_bundle(row, resolution.slot, 0)  # (the node said: no longer valid)
        else:
            fills = await self._landed_fills(row, watch, resolution)
            if fills is None:  # the rest of its bundle may still land: looked at again next round
                return None
            state = STATE_LANDED
            swap = fills[0]
            # SOL moved that no leg of the trade accounts for (e.g. an account a venue opened, paid
            # by the wallet) counts as rent paid or refunded: the book follows the wallet.
            sol_leg = WSOL_MINT in (order.input_mint.address, order.output_mint.address)
            fees = _fees_of(fills, sum(f.sol_change for f in fills[1:]) + (0 if sol_leg else swap.sol_change))
            if swap.err is None:
                amount_in = -swap.change(order.input_mint.address)
                amount_out = swap.change(order.output_mint.address)
                if amount_in <= 0 or amount_out <= 0:
                    log.error("landed swap shows no balance change for the wallet",
                              extra={"signature": row.signature, "amount_in": amount_in, "amount_out": amount_out})
                fill = Fill(quote, max(0, amount_in), max(0, amount_out), fees, row.signature, swap.slot)
                status, error, confirmed = pb.TRADE_STATUS_FILLED, None, True
            else:
                fill = Fill(quote, 0, 0, fees, row.signature, swap.slot)
                status, error = chain_error(order, swap.err, where="before the swap landed", charged=True)
                status, confirmed = pb.TRADE_STATUS_FAILED, False
        if rest:  # (our dont-front marker's transaction, sent on alone by whoever took the bundle apart)
            log.warning("transactions of a Jito bundle landed without its swap; their fees are booked",
                        extra={"signature": row.signature, "landed": [f.signature for f in rest]})
            fill = Fill(quote, 0, 0, _fees_of(rest, sum(f.sol_change for f in rest)), row.signature, rest[0].slot)
            error = _charged_alone(error, fill.fees)
        value = await self._trade_value(order, fill) if status == pb.TRADE_STATUS_FILLED else 0
        unit_values = await self._unit_values(order)
        outcome = outcome_to_json(status, error, fill, confirmed)
        self.orders.finalize(row.signature, state, outcome)
        booked = True
        if fill.fees.total_lamports or status == pb.TRADE_STATUS_FILLED:
            booked = self._book_or_retry(row, order, fill, value, unit_values)
        if hasattr(self.quotes, "invalidate"):
            self.quotes.invalidate()
        if booked:  # the chain and the day's PnL now show what it reserved
            self.safety.release((row.principal, row.request_id))
        if watch.attached == 0:
            self._complete_later(row, outcome)
        log.info("live transaction final", extra={"signature": row.signature, "trade_request_id": row.request_id,
                                                  "state": state, "status": pb.TradeStatus.Name(status),
                                                  "rent_refunded_lamports": fill.fees.rent_refunded_lamports})
        return outcome

    async def _landed_fills(self, row: LiveOrder, watch: Watch, resolution: Resolution) -> list[ChainFill] | None:
        """The swap's fill first, then those of the other transactions of its bundle that landed.

        A bundle lands whole, but a swap can land without the rest (its bundle taken apart, its
        transactions sent on one by one): the rest (our dont-front marker's transaction) can then
        land after it, paying its fee (and any tip) from the wallet, until their blockhash — the
        swap's — expires. So the swap is final only with all of them, or once the rest can no
        longer land, concluded as the confirmer concludes expiry: the height read at the start of
        this round past their last valid height, then lookups by a node at least as far along
        finding nothing. None until then (the trade stays SUBMITTED, its reservation held)."""
        swap = watch.extra.get("swap_fill") or await self._read(row.tx)
        watch.extra["swap_fill"] = swap  # (read once: it is looked at again each round)
        expired_from = resolution.slot if resolution.height > row.last_valid_block_height else None
        rest, pending = await self._rest_of_bundle(row, swap.slot, expired_from)
        if pending:
            if "unbundled" not in watch.extra:
                watch.extra["unbundled"] = pending
                log.warning("the swap landed without the rest of its Jito bundle; the rest is followed until it "
                            "lands or its blockhash expires", extra={"signature": row.signature, "not_landed": pending})
            return None
        if len(rest) < len(row.wires) - 1:
            log.warning("the swap landed without the rest of its Jito bundle", extra={"signature": row.signature})
        return [swap, *rest]

    async def _rest_of_bundle(self, row: LiveOrder, floor_slot: int,
                              expired_from: int | None) -> tuple[list[ChainFill], list[str]]:
        """(the fills of the other transactions of the row's bundle that landed, the signatures of
        those that may still land). Statuses answered from a slot before ``floor_slot`` prove nothing
        (UnreadableTransaction: tried again). The ones not found can never land when their blockhash
        expired as seen from ``expired_from`` (a slot the answering node must have reached; None:
        not expired): the ledger is asked for them too (history search can cover rooted slots only),
        and what it does not have never landed."""
        others = [wire for wire in row.wires if wire != row.tx]
        if not others:
            return [], []
        signatures = [str(VersionedTransaction.from_bytes(wire).signatures[0]) for wire in others]
        statuses, seen_at = await self.rpc.signature_statuses_at(signatures, search_history=True)
        if seen_at < floor_slot:  # a node behind cannot say what landed
            raise UnreadableTransaction(f"statuses of the bundle answered at slot {seen_at}, before slot {floor_slot}")
        fills, missing = [], []
        for wire, signature, status in zip(others, signatures, statuses):
            if status is not None:
                fills.append(await self._read(wire))
            else:
                missing.append((wire, signature))
        if expired_from is None or seen_at < expired_from:
            return fills, [signature for _, signature in missing]
        for wire, signature in missing:
            if await self.rpc.get_transaction(signature, self.config.commitment) is not None:
                fills.append(await self._read(wire))
        return fills, []

    async def _read(self, wire: bytes) -> ChainFill:
        """getTransaction for a landed transaction (retried: a node can lag its own statuses)."""
        signature = str(VersionedTransaction.from_bytes(wire).signatures[0])
        for attempt in range(20):
            result = await self.rpc.get_transaction(signature, self.config.commitment)
            if result is not None:
                return read_transaction(result, self.wallet.address, wire)
            await asyncio.sleep(min(1.0, 0.02 * 2 ** attempt))
        raise UnreadableTransaction(f"transaction {signature} confirmed but not readable yet")

    async def _blockhash_maybe_valid(self, row: LiveOrder, slot: int) -> bool:
        """False only when the node says the swap's blockhash is no longer valid, answering from a
        bank at the configured commitment and at least at ``slot``; an error or a malformed answer
        cannot tell (True: the signature decides)."""
        blockhash = str(VersionedTransaction.from_bytes(row.tx).message.recent_blockhash)
        config: dict[str, Any] = {"commitment": self.config.commitment}
        if slot:
            config["minContextSlot"] = slot
        try:
            result = await self.rpc.call("isBlockhashValid", [blockhash, config])
            valid = result["value"]
        except (*UPSTREAM_FAILURES, TypeError, KeyError) as exc:
            log.warning("whether a Failed bundle's blockhash is still valid cannot be read; following its signature",
                        extra={"signature": row.signature, "error": str(exc)})
            return True
        return valid is not False

    async def _diagnose_dropped(self, order: Order, row: LiveOrder, slot: int) -> tuple[int, TradewireError] | None:
        """A Failed bundle landed nothing; re-simulating the swap tells the likely reason. When
        the swap would still run, the block engine dropped it for its own reasons (an auction
        lost to higher tips, a leader that did not take bundles): not a fault of ours.

        A simulation that no longer knows the blockhash is no proof that it expired: simulation
        keeps back a blockhash's last blocks (Agave's MAX_TRANSACTION_FORWARDING_DELAY) that a
        leader still executes it in. Expired (EXPIRED, final) only when the node, at least as far
        along as the bank that read the height at ``slot``, says the blockhash is no longer valid
        (isBlockhashValid: its whole life); else None: followed by signature until it expires."""
        try:
            sim = await self.rpc.simulate(row.tx)
            err = sim.get("err")
        except Exception:  # noqa: BLE001 - a diagnosis only
            err = None
        if is_blockhash_not_found(err):
            if await self._blockhash_maybe_valid(row, slot):
                return None
            return blockhash_expired(f"before the Jito bundle {row.bundle_id} landed")  # expired, not outbid
        if err is not None and err != "AlreadyProcessed":
            return chain_error(order, err, where="and the Jito bundle did not land", charged=False)
        return pb.TRADE_STATUS_FAILED, TradewireError(
            "BUNDLE_NOT_LANDED",
            f"the block engine dropped the Jito bundle {row.bundle_id} without landing it (typically outbid: its "
            f"tip of {order.mev.jito_tip_lamports} lamports was not enough at that moment); nothing was charged. Submit the trade "
            f"again under a new request id, with a higher mev_protection.jito_tip_lamports if it recurs",
            metadata={"bundle_id": row.bundle_id or ""})

    async def _trade_value(self, order: Order, fill: Fill) -> int:
        valuation = self.market.valuation.address
        if order.input_mint.address == valuation:
            return fill.amount_in
        if order.output_mint.address == valuation:
            return fill.amount_out
        return await self.quotes.value(order.output_mint, fill.amount_out)

    async def _unit_values(self, order: Order) -> dict[str, tuple[int, int]]:
        """(value of one token, atomic units per token) for the mints a booking can touch."""
        out = {}
        for mint in {order.input_mint, order.output_mint, *( [self.sol] if self.sol else [])}:
            unit = 10 ** mint.decimals
            out[mint.address] = (await self.quotes.value(mint, unit), unit)
        return out

    def _book_or_retry(self, row: LiveOrder, order: Order, fill: Fill, value: int,
                       unit_values: dict[str, tuple[int, int]]) -> bool:
        """Book the fill now (True), or, when the trade store refuses, again in the background
        until it takes it — the trade's reservation, its worst-case loss included, held until then."""
        try:
            self._book(row, order, fill, value, unit_values)
            return True
        except Exception as exc:  # noqa: BLE001 - the journal keeps the outcome; the booking is retried
            log.warning("booking a LIVE fill failed; retrying", extra={"signature": row.signature, "error": str(exc)})
        key = (row.principal, row.request_id)

        async def retry() -> None:
            delay = self.config.poll_interval_s
            while True:
                await asyncio.sleep(delay)
                try:
                    await self._finish_booking(self.orders.get(row.signature) or row)
                    break
                except Exception as exc:  # noqa: BLE001 - tried again, backing off
                    delay = min(BOOKING_RETRY_MAX_S, delay * 2)
                    log.warning("booking a LIVE fill failed again; retrying", extra={
                        "signature": row.signature, "error": str(exc), "retry_in_s": delay})
            self.safety.release(key)

        task = asyncio.create_task(retry(), name=f"live-book-{row.request_id}")
        self._completions.add(task)
        task.add_done_callback(self._completions.discard)
        return False

    async def _finish_booking(self, row: LiveOrder) -> None:
        """Book a final row whose booking did not finish: from its start, or, claimed before,
        again with the same fill ids (what was applied is skipped)."""
        if row.booked == 2:
            return
        inputs = await self._booking_inputs(row)
        if inputs is None:
            self.orders.claim_booking(row.signature)
            self.orders.booked(row.signature, 0)
            return
        order, fill, value, unit_values = inputs
        if row.booked == 0:
            self._book(row, order, fill, value, unit_values)
            return
        self._apply_booking(row, order, fill, value, unit_values)

    def _book(self, row: LiveOrder, order: Order, fill: Fill, value: int,
              unit_values: dict[str, tuple[int, int]]) -> None:
        """Book the real fill in the principal's LIVE positions exactly once (no await inside).

        The journal's claim keeps a second booking from starting; the fill ids of the holdings
        changes make a claimed booking safe to run again after a crash (at start-up)."""
        if not self.orders.claim_booking(row.signature):
            return
        self._apply_booking(row, order, fill, value, unit_values)

    def _apply_booking(self, row: LiveOrder, order: Order, fill: Fill, value: int,
                       unit_values: dict[str, tuple[int, int]]) -> None:
        """The holdings changes of a claimed booking, each with a fill id derived from the
        signature: run again, it applies only what was not applied yet. Then marks it booked,
        with the realised-PnL change the store recorded with the fill's id as it applied it: the
        holdings' totals read around the apply would count other bookings of the principal made
        meanwhile (another replica's, or another process's on the same store).

        Rent refunded by a closed token account comes back to the wallet: it first offsets the
        transaction's fees and rent paid; what exceeds them is SOL the book gains."""
        fee_lamports, gained = net_of_rent_refund(fill.fees.total_lamports, fill.fees.rent_refunded_lamports)
        if gained:
            self._book_deposit(order.principal_id, WSOL_MINT, gained, unit_values, f"{row.signature}:rent-refund")
        legs = FillLegs(input_mint=order.input_mint.address, amount_in=fill.amount_in,
                        output_mint=order.output_mint.address, amount_out=fill.amount_out,
                        fee_mint=WSOL_MINT, fee_lamports=fee_lamports, trade_value=value)
        for attempt in range(4):
            try:
                after_holdings = self.store.apply_fill(order.principal_id, LIVE, legs, fill_id=row.signature)
                break
            except InsufficientBalance as exc:
                # The book lags the wallet (another principal traded it, or a transfer): the
                # chain is the truth, so the shortfall is booked as a deposit at market value.
                shortfall = exc.needed - exc.available
                log.warning("LIVE book below the wallet; booking a deposit", extra={
                    "principal": order.principal_id, "mint": exc.mint, "amount": shortfall})
                # An id per attempt: a re-run skips the deposits booked before the crash, and
                # still books a new shortfall.
                self._book_deposit(order.principal_id, exc.mint, shortfall, unit_values,
                                   f"{row.signature}:deposit:{attempt}")
        else:
            log.error("could not book a LIVE fill (tried again at the next start)",
                      extra={"signature": row.signature})
            return
        # (deposits realise nothing: the fill's change is the booking's)
        change = self.store.fill_realized_change(order.principal_id, LIVE, row.signature)
        if change is None:
            # Applied by an earlier version, which recorded no change: what the realised PnL moved
            # since its claim noted it (0 when it did not note it).
            after = sum(h.realized_pnl for h in after_holdings.values())
            change = 0 if row.realized_before is None else after - row.realized_before
        self.orders.booked(row.signature, change)

    def _book_deposit(self, principal_id: str, mint: str, amount: int, unit_values: dict[str, tuple[int, int]],
                      fill_id: str) -> None:
        """Tokens that came into the wallet outside a trade, at market value (no PnL)."""
        price, unit = unit_values.get(mint, (0, 1))
        self.store.apply_fill(principal_id, LIVE, FillLegs(
            input_mint=mint, amount_in=0, output_mint=mint, amount_out=amount,
            fee_mint=WSOL_MINT, fee_lamports=0, trade_value=amount * price // unit), fill_id=fill_id)

    async def _booking_inputs(self, row: LiveOrder) -> tuple[Order, Fill, int, dict[str, tuple[int, int]]] | None:
        """What :meth:`_book` needs for a final row, or None when its outcome books nothing."""
        order = self._order_of(row)
        outcome, _ = outcome_from_json(row.outcome, quote_from_json(row.quote))
        fill = outcome.fill
        if fill is None or not (fill.fees.total_lamports or outcome.status == pb.TRADE_STATUS_FILLED):
            return None
        value = await self._trade_value(order, fill) if outcome.status == pb.TRADE_STATUS_FILLED else 0
        return order, fill, value, await self._unit_values(order)

    async def _finish_interrupted_bookings(self) -> None:
        """Bookings the previous run claimed but did not finish: run them again with the same
        fill ids, so the fill is applied if the crash came before the holdings changed and
        skipped if it came after."""
        for row in self.orders.booking_interrupted():
            log.warning("finishing a LIVE booking the previous run was interrupted in",
                        extra={"signature": row.signature, "trade_request_id": row.request_id})
            try:
                await self._finish_booking(row)
            except Exception:  # noqa: BLE001 - the row stays claimed and is tried again at the next start
                log.exception("could not finish an interrupted LIVE booking", extra={"signature": row.signature})

    async def _complete_unbooked(self) -> None:
        """Recently final rows the previous run may not have finished: book them if their booking
        never started, and complete their trade record if it is still open."""
        for row in self.orders.final_since(time.time_ns() - RECENT_FINAL_NS):
            if row.outcome is None:
                continue
            if row.booked == 0:
                try:
                    await self._finish_booking(row)
                except (TradewireError, UpstreamError, CircuitOpen) as exc:
                    # The quote source that values the fill does not answer: the start goes on, the
                    # trade record gets its outcome, and the row, still unbooked, is booked at the next start.
                    log.warning("a final LIVE fill cannot be valued; it is booked at the next start",
                                extra={"signature": row.signature, "trade_request_id": row.request_id,
                                       "error": str(exc)})
            self._complete_later(row, row.outcome)

    # -- trade records nobody else will complete -----------------------------------------------

    def _order_of(self, row: LiveOrder) -> Order:
        from tradewire.core.validation import validate_trade  # the same normalisation as at admission

        return validate_trade(pb.TradeRequest.FromString(row.request), row.principal, self.market)

    def _complete_later(self, row: LiveOrder, data: dict[str, Any]) -> None:
        """Complete the trade record unless an execute()/reconcile() call reports this outcome.
        Waits a moment first: at start-up the runner's reconcile calls arrive just after us."""
        async def complete() -> None:
            await asyncio.sleep(COMPLETION_GRACE_S)
            if (row.principal, row.request_id) not in self._followed:
                self._complete_trade_record(row, data)

        task = asyncio.create_task(complete(), name=f"live-complete-{row.request_id}")
        self._completions.add(task)
        task.add_done_callback(self._completions.discard)

    def _complete_trade_record(self, row: LiveOrder, data: dict[str, Any]) -> None:
        """Write the final state into the trade record when no executor call is there to
        return it (after a restart, or when the caller went away), with the audit events."""
        try:
            record = self.store.get(row.principal, row.request_id)
            if record is None or lifecycle.is_terminal(record.result.status):
                return
            order = self._order_of(row)
            outcome, confirmed = outcome_from_json(data, quote_from_json(row.quote))
            result = pb.TradeResult()
            result.CopyFrom(record.result)
            events = list(record.events)
            # after every number its runner may have published, stored or not (a CONFIRMED is not)
            sequence = max(lifecycle.last_sequence(events), record.published or 0)
            steps: list[tuple[int, str]] = []
            if _rank(result.status) < _rank(pb.TRADE_STATUS_SUBMITTED):
                steps.append((pb.TRADE_STATUS_SUBMITTED, f"transaction {row.signature} submitted"))
            if confirmed:
                steps.append((pb.TRADE_STATUS_CONFIRMED, f"transaction confirmed in slot {outcome.fill.slot}"))
            apply_outcome(result, order, outcome)  # the runner's own way of filling a result
            result.status = outcome.status
            result.updated_at.CopyFrom(lifecycle.now_timestamp())
            steps.append((outcome.status, (outcome.error.message if outcome.error else "") +
                          " (reconciled by signature)"))
            for status, message in steps:
                sequence += 1
                terminal = lifecycle.is_terminal(status)
                event = lifecycle.status_event(row.request_id, sequence, status, message, result if terminal else None)
                events.append(event)
                self.recorder.transition(order, event)
            if outcome.fill is not None:  # booked: a fill, or the fee a failed transaction paid
                self.recorder.fill(order, outcome.fill, result)
            self.store.save(row.principal, result, events)
        except TakenOver:  # another replica adopted the trade while this one was away: it completes it
            log.warning("trade record left to the replica that took the trade over",
                        extra={"trade_request_id": row.request_id})
        except Exception:  # noqa: BLE001 - the live journal stays authoritative; log and go on
            log.exception("could not complete the trade record", extra={"trade_request_id": row.request_id})


def _fees_of(fills: list[ChainFill], unexplained: int) -> FeeBreakdown:
    """What these landed transactions cost the wallet; ``unexplained``: SOL they moved that no
    leg of the trade accounts for, counted as rent paid (below 0) or refunded."""
    return FeeBreakdown(
        base_fee_lamports=sum(f.base_fee for f in fills),
        priority_fee_lamports=sum(f.priority_fee for f in fills),
        jito_tip_lamports=sum(f.tip for f in fills),
        ata_rent_lamports=sum(f.rent for f in fills) + max(0, -unexplained),
        rent_refunded_lamports=sum(f.rent_refund for f in fills) + max(0, unexplained),
    )


def _charged_alone(error: TradewireError, fees: FeeBreakdown) -> TradewireError:
    """The error of a swap that never landed while other transactions of its bundle did: their
    fees were charged (its words said nothing was)."""
    return dataclasses.replace(error, message=error.message.replace(
        "nothing was charged", f"only the {fees.total_lamports} lamports of fees of the transactions of its Jito "
                               f"bundle that landed without it were charged"))


def _rank(status: int) -> int:
    return lifecycle.PATH.index(status) if status in lifecycle.PATH else -1


def _upstream_label(name: str) -> str:
    return {"quote": "quote API", "rpc": "Solana RPC", "jito": "Jito block engine"}.get(name, name)


def _with_dont_front(msg: MessageV0 | Message) -> MessageV0 | Message | None:
    """The message with the jitodontfront marker as a read-only account of its tip transfer
    (only for a message we alone sign). Appending a static key shifts looked-up indices by one."""
    keys = list(msg.account_keys)
    if DONT_FRONT_ACCOUNT in keys:
        return msg
    n = len(keys)
    tips = tip_transfers(msg)
    if not tips:
        return None
    tip_ix = tips[0][0]

    def shift(index: int) -> int:
        return index + 1 if index >= n else index

    ixs = []
    for i, ix in enumerate(msg.instructions):
        accounts = [shift(a) for a in bytes(ix.accounts)]
        if i == tip_ix:
            accounts.append(n)
        ixs.append(CompiledInstruction(shift(ix.program_id_index), bytes(ix.data), bytes(accounts)))
    h = msg.header
    header = MessageHeader(h.num_required_signatures, h.num_readonly_signed_accounts, h.num_readonly_unsigned_accounts + 1)
    if isinstance(msg, MessageV0):
        return MessageV0(header, [*keys, DONT_FRONT_ACCOUNT], msg.recent_blockhash, ixs, list(msg.address_table_lookups))
    return Message.new_with_compiled_instructions(h.num_required_signatures, h.num_readonly_signed_accounts,
                                                  h.num_readonly_unsigned_accounts + 1, [*keys, DONT_FRONT_ACCOUNT],
                                                  msg.recent_blockhash, ixs)
