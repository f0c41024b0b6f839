"""Running one trade: de-duplicate, route to its executor, publish every transition, persist.

The same request id with the same payload gives back the original outcome (waiting for it
if the first attempt is still running); with a different payload it is ALREADY_EXISTS.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal

from tradewire.core import lifecycle
from tradewire.core.errors import Code, FieldViolation, TradewireError, internal_error
from tradewire.core.executors.base import Executor, Outcome, Progress
from tradewire.core.market import format_units
from tradewire.core.order import Fill, Order, fingerprint
from tradewire.core.recorder import Recorder
from tradewire.core.status_hub import StatusHub
from tradewire.core.store.base import TradeRecord, TradeStore
from tradewire.v1 import trade_pb2 as pb

log = logging.getLogger("tradewire.trades")


class TradeRunner:
    def __init__(self, store: TradeStore, hub: StatusHub, executors: Mapping[int, Executor],
                 recorder: Recorder) -> None:
        self.store = store
        self.hub = hub
        self.executors = executors
        self.recorder = recorder
        self._running: dict[tuple[str, str], pb.TradeResult] = {}

    # -- the pipeline's last steps: deduplicate, then route --------------------------------

    async def execute(self, order: Order) -> pb.TradeResult:
        """The filled trade's result; a trade that ends otherwise raises its error."""
        existing = self.deduplicate(order)
        if existing is not None:
            return await self._replay(existing)
        result = await self.route(order)
        return raise_unless_filled(result)

    def deduplicate(self, order: Order) -> TradeRecord | None:
        initial = _initial_result(order)
        existing = self.store.claim(order.principal_id, order.request_id, fingerprint(order.request), initial)
        if existing is None:
            key = (order.principal_id, order.request_id)
            self._running[key] = initial
            self.hub.open(key)
            return None
        if existing.fingerprint != fingerprint(order.request):
            raise TradewireError(
                "DUPLICATE_REQUEST_MISMATCH",
                f"request_id {order.request_id!r} was already used with a different payload",
                field_violations=(FieldViolation("request_id", "already used with a different payload"),),
            )
        return existing

    async def route(self, order: Order) -> pb.TradeResult:
        key = (order.principal_id, order.request_id)
        result = self._running[key]
        sequence = 0

        def transition(status: int, message: str = "") -> None:
            nonlocal sequence
            sequence += 1
            lifecycle.check_transition(result.status or None, status)
            result.status = status
            result.updated_at.CopyFrom(lifecycle.now_timestamp())
            event = lifecycle.status_event(order.request_id, sequence, status, message or None,
                                           result if lifecycle.is_terminal(status) else None)
            self.hub.publish(key, event)
            self.recorder.transition(order, event)

        try:
            transition(pb.TRADE_STATUS_RECEIVED)
            transition(pb.TRADE_STATUS_VALIDATED)
            executor = self.executors.get(order.mode)
            if executor is None:
                outcome = Outcome(pb.TRADE_STATUS_REJECTED, error=TradewireError(
                    "LIVE_NOT_CONFIGURED", "live executor not configured"))
            elif order.deadline_unix_ns is not None and order.deadline_unix_ns <= time.time_ns():
                outcome = Outcome(pb.TRADE_STATUS_EXPIRED, error=TradewireError(
                    "TRADE_EXPIRED", "deadline passed before the trade could be sent"))
            else:
                transition(pb.TRADE_STATUS_ROUTED, f"routed to the {executor.name} executor")
                outcome = await self._run(executor, order, transition)
        except Exception:
            log.exception("trade %s failed unexpectedly", order.request_id)
            outcome = Outcome(pb.TRADE_STATUS_FAILED, error=internal_error())
        _apply_outcome(result, order, outcome)
        if outcome.fill is not None and outcome.status == pb.TRADE_STATUS_FILLED:
            self.recorder.fill(order, outcome.fill, result)
        terminal_message = outcome.error.message if outcome.error else None
        transition(outcome.status, terminal_message or "")
        self.store.save(order.principal_id, result, self.hub.channel_events(key) or ())
        del self._running[key]
        return result

    async def _run(self, executor: Executor, order: Order, transition) -> Outcome:
        async for item in executor.execute(order):
            if isinstance(item, Progress):
                transition(item.status, item.message)
            else:
                return item
        raise RuntimeError(f"{executor.name} executor ended without an outcome")

    async def _replay(self, record: TradeRecord) -> pb.TradeResult:
        key = (record.principal_id, record.request_id)
        if not lifecycle.is_terminal(record.result.status):
            async for event in self.hub.follow(key, 1, load_stored=lambda: self._stored_events(key)):
                if event.terminal:
                    return raise_unless_filled(event.result)
            record = self.store.get(*key) or record
        return raise_unless_filled(record.result)

    # -- queries -------------------------------------------------------------------------

    def current(self, principal_id: str, request_id: str) -> pb.TradeResult | None:
        running = self._running.get((principal_id, request_id))
        if running is not None:
            return running
        record = self.store.get(principal_id, request_id)
        return None if record is None else record.result

    def _stored_events(self, key: tuple[str, str]) -> tuple[pb.ExecutionStatus, ...]:
        record = self.store.get(*key)
        return () if record is None else record.events

    def events(self, principal_id: str, request_id: str, from_sequence: int):
        """Follow a trade's events (live or stored); NOT_FOUND when the caller has no such trade."""
        key = (principal_id, request_id)
        if key not in self._running and self.hub.channel_events(key) is None and self.store.get(*key) is None:
            raise trade_not_found(request_id)
        return self.hub.follow(key, from_sequence, load_stored=lambda: self._stored_events(key))

    def in_flight(self) -> int:
        return len(self._running)


def trade_not_found(request_id: str) -> TradewireError:
    # Same answer whether the trade does not exist or belongs to someone else.
    return TradewireError("TRADE_NOT_FOUND", f"no trade with request_id {request_id!r}",
                          field_violations=(FieldViolation("request_id", "no such trade"),))


def raise_unless_filled(result: pb.TradeResult) -> pb.TradeResult:
    if result.status == pb.TRADE_STATUS_FILLED:
        return result
    err = result.error
    raise TradewireError(
        err.reason or "INTERNAL",
        err.message or "trade did not fill",
        field_violations=tuple(FieldViolation(v.field, v.description) for v in err.field_violations),
        metadata={"trade_id": result.trade_id, "status": pb.TradeStatus.Name(result.status),
                  "fees_lamports": str(result.fees.total_lamports)},
    )


def _initial_result(order: Order) -> pb.TradeResult:
    now = lifecycle.now_timestamp()
    return pb.TradeResult(
        request_id=order.request_id,
        trade_id=uuid.uuid4().hex,
        mode=order.mode,
        status=pb.TRADE_STATUS_UNSPECIFIED,
        input_mint=order.input_mint.address,
        output_mint=order.output_mint.address,
        swap_mode=pb.SWAP_MODE_EXACT_OUT if order.exact_out else pb.SWAP_MODE_EXACT_IN,
        created_at=now,
        updated_at=now,
        client_metadata=order.client_metadata,
    )


def _apply_outcome(result: pb.TradeResult, order: Order, outcome: Outcome) -> None:
    if outcome.fill is not None:
        _apply_fill(result, order, outcome.fill)
    if outcome.error is not None:
        err = outcome.error
        result.error.CopyFrom(pb.TradeError(
            code=int(err.code if err.code != Code.OK else Code.INTERNAL), reason=err.reason, message=err.message,
            field_violations=[pb.FieldViolation(field=v.field, description=v.description) for v in err.field_violations],
        ))


def _apply_fill(result: pb.TradeResult, order: Order, fill: Fill) -> None:
    quote = fill.quote
    result.amount_in = order.input_mint.to_units(fill.amount_in) if fill.amount_in else "0"
    result.amount_out = order.output_mint.to_units(fill.amount_out) if fill.amount_out else "0"
    result.quoted_amount_out = order.output_mint.to_units(quote.out_amount)
    threshold_mint = order.input_mint if order.exact_out else order.output_mint
    result.other_amount_threshold = threshold_mint.to_units(quote.other_amount_threshold)
    result.price_impact_pct = quote.price_impact_pct
    result.fees.CopyFrom(fill.fees.to_proto())
    result.signature = fill.signature
    result.slot = fill.slot
    if fill.amount_in and fill.amount_out:
        price = (Decimal(fill.amount_out).scaleb(-order.output_mint.decimals)
                 / Decimal(fill.amount_in).scaleb(-order.input_mint.decimals))
        result.executed_price = format_units(price.quantize(Decimal(1).scaleb(-12)))
        if order.exact_out:
            slip = (fill.amount_in - quote.in_amount) * 10_000 / quote.in_amount
        else:
            slip = (quote.out_amount - fill.amount_out) * 10_000 / quote.out_amount
        result.realized_slippage_bps = round(slip)
