"""Running trades: de-duplicate, admit, route to an executor, publish every transition, persist.

The same request id with the same payload gives back the original outcome (waiting for it
if the first attempt is still running); with a different payload it is ALREADY_EXISTS.

Each admitted trade runs in a task of its own, owned by the runner and tracked in the
in-flight registry, so it outlives the call that started it: callers only *wait* for it.
That is what makes cancellation honest:

* Before the point of no return (the executor yields SIMULATED right before it sends; see
  ``lifecycle.POINT_OF_NO_RETURN``) a trade can be stopped: CancelTrade, the caller going
  away or its deadline passing, or the request's own ``deadline``, cancel the task where it
  waits inside the executor; the trade ends CANCELLED or EXPIRED.
* Once the runner resumes the executor past SIMULATED the trade is *committed*: cancels are
  refused (FAILED_PRECONDITION, NOT_CANCELLABLE) and it runs to its end.
* Transient executor errors before that point are retried (core/retry.py) with a fresh
  attempt; progress the new attempt repeats is not published twice.
* Every trade's final state is stored, whoever stopped waiting for it, together with its
  webhooks (one SQLite transaction).
* If the shared store stops answering while a trade runs, its callers are told so at once
  (UNAVAILABLE STORE_UNAVAILABLE, retryable) and the trade keeps its task: it ends once the
  store answers again — a trade that may have been sent is first reconciled by its
  executor — and only then is its end published. Nothing is left running without a task.

Shutdown: :meth:`drain` waits for running trades; :meth:`interrupt_all` stops the rest and
stores them unfinished (status and events so far); at the next start :meth:`recover`
resumes the ones not yet committed and reconciles the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from tradewire.core import lifecycle
from tradewire.core.claims_in_doubt import ClaimsInDoubt
from tradewire.core.errors import Code, FieldViolation, TradewireError, internal_error, store_unavailable
from tradewire.core.executors.base import Executor, Outcome, Progress
from tradewire.core.inflight import AtInFlightLimit, InFlightRegistry
from tradewire.core.market import Market, format_units
from tradewire.core.order import Fill, Order, Quote, fingerprint, same_payload
from tradewire.core.recorder import Recorder
from tradewire.core.retry import RetryPolicy, as_error, transient_reason
from tradewire.core.status_hub import StatusHub, Subscription
from tradewire.core.store.base import TakenOver, TradeLost, TradeRecord, TradeStore, UnfinishedTrade
from tradewire.v1 import trade_pb2 as pb

log = logging.getLogger("tradewire.trades")

Key = tuple[str, str]
# How often a trade caught by a store outage asks again (the store answers within the second it is back).
_STORE_BACK = RetryPolicy(max_attempts=1_000_000, initial_backoff_s=0.1, max_backoff_s=1.0)
# How often a stream waiting for a trade not opened yet asks a shared store whether another
# replica opened it: its first events reach the stream at most this late.
OPENED_POLL_S = 0.1
# How many times a call following a trade on another replica runs it here when that trade's
# own call went away before it was sent (each time, another caller left: bounded all the same).
RUNS_AGAIN_FOR_A_FOLLOWER = 2


@dataclass(frozen=True)
class StopRequest:
    """Why a running trade should stop; ``status`` None means: shutting down (keep it unfinished)."""

    source: str  # request | caller | deadline | order_deadline | shutdown
    status: int | None
    error: TradewireError | None

    @classmethod
    def shutdown(cls) -> StopRequest:
        return cls("shutdown", None, None)


class Trade:
    """One admitted trade while it runs in this process."""

    __slots__ = ("key", "order", "result", "stage", "sequence", "committed", "stop", "task", "done", "timer",
                 "error", "callers", "owned")

    def __init__(self, order: Order, result: pb.TradeResult, sequence: int = 0) -> None:
        self.key: Key = (order.principal_id, order.request_id)
        self.order = order
        self.result = result
        self.stage: int = result.status
        self.sequence = sequence
        self.committed = lifecycle.may_have_been_sent(result.status)
        self.stop: StopRequest | None = None
        self.task: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None
        # The executor's (or the stop's) own error, raised to callers as is: the stored
        # TradeError cannot carry retry_after_s (RetryInfo), quota violations or metadata.
        self.error: TradewireError | None = None
        self.done: asyncio.Future[pb.TradeResult] = asyncio.get_running_loop().create_future()
        self.done.add_done_callback(_retrieve)
        self.callers = 0  # calls waiting for its result here: the one that admitted it, retries of its id
        self.owned = False  # admitted by a call that waits for it (ExecuteTrade, a batch), not a session


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # nobody may be waiting: do not log "exception was never retrieved"


class TradeRunner:
    def __init__(self, store: TradeStore, hub: StatusHub, executors: Mapping[int, Executor],
                 recorder: Recorder, inflight: InFlightRegistry | None = None, retry: RetryPolicy | None = None,
                 webhooks=None, market: Market | None = None) -> None:
        self.store = store
        self.hub = hub
        self.executors = executors
        self.recorder = recorder
        self.inflight: InFlightRegistry[Trade] = (
            inflight if inflight is not None else InFlightRegistry(10_000, 100_000))
        self.retry = retry or RetryPolicy(max_attempts=1)
        self.webhooks = webhooks  # core.webhooks.WebhookDispatcher | None
        self.market = market
        self._metrics = getattr(recorder, "metrics", None)
        # With a shared store: asks the replica running a trade to cancel it (core/shared/redis_cancel.py)
        self.remote_cancel = None
        # Errors that mean the shared store did not answer (set with a Redis backend, as on the pipeline).
        self.store_outages: tuple[type[Exception], ...] = ()
        self.claims_in_doubt = ClaimsInDoubt(store, lambda: self.store_outages,
                                             lambda trades: self.recover(trades, restarted=False))

    # -- admission: de-duplicate, check limits, claim, start ---------------------------------

    def admit(self, order: Order) -> Trade | TradeRecord:
        """A new running Trade, or the existing record of this request id (same payload).

        Raises DUPLICATE_REQUEST_MISMATCH or TOO_MANY_IN_FLIGHT (nothing claimed then). No
        ``await`` happens between the checks and the claim, so they are atomic.
        """
        print_ = fingerprint(order)
        inflight = self.inflight
        running = inflight.get((order.principal_id, order.request_id))
        # At a limit a replay of a known request id is still answered, a new one refused.
        at_limit = inflight.count(order.principal_id) >= inflight.max_per_principal or len(inflight) >= inflight.max_total
        if running is not None:  # running here: a retry follows it, even if the store lost its record
            # (a shared store that restarted empty while the trade waited for it to answer)
            existing = TradeRecord(order.principal_id, order.request_id, fingerprint(running.order), running.result)
        else:
            existing = self.store.get(order.principal_id, order.request_id) if at_limit else None
        if existing is not None and lifecycle.may_run_again(existing.result):
            existing = None  # it would run again: a new trade as far as the limits go
        if existing is None:
            if at_limit:
                inflight.check(order.principal_id)  # raises TOO_MANY_IN_FLIGHT (and counts it)
            # One atomic step (SQLite's INSERT … ON CONFLICT, a transaction for a trade that runs
            # again, or one Redis script): claims a new request id (or one whose trade may run
            # again, same payload: lifecycle.may_run_again, listed anew as the newest trade),
            # else returns the existing record. With Redis it takes the caller's slot across
            # replicas too, in the same step (a known request id takes none).
            key = (order.principal_id, order.request_id)
            initial, slot = _initial_result(order), inflight.slot_for(key)
            try:
                existing = self.store.claim(order.principal_id, order.request_id, print_, initial, order.request, slot)
            except AtInFlightLimit as refused:
                inflight.check(order.principal_id, refused.count)  # raises TOO_MANY_IN_FLIGHT (and counts it)
                raise
            except self.store_outages:
                self.claims_in_doubt.add(key)  # (the store may have made it: resumed here if so)
                raise
            if existing is None:
                if slot is not None:
                    inflight.taken(key)
                return self._start(Trade(order, initial))
        if not same_payload(existing.fingerprint, print_, order.request):
            first = running.order.request if running is not None else \
                self.store.request_of(order.principal_id, order.request_id)
            differing = _differing_fields(existing.result, order, first)
            raise TradewireError(
                "DUPLICATE_REQUEST_MISMATCH",
                f"request_id {order.request_id!r} was already used with a different payload"
                + (f" ({', '.join(differing)} differ{'s' if len(differing) == 1 else ''})" if differing else ""),
                field_violations=(FieldViolation("request_id", "already used with a different payload"),),
                metadata={"differing_fields": ",".join(differing)} if differing else {},
            )
        return existing

    def _start(self, trade: Trade, events: tuple[pb.ExecutionStatus, ...] = (), note: str = "") -> Trade:
        """Run a trade (admitted, or resumed from ``events``); ``note`` is the message of its
        first new event."""
        self.hub.open(trade.key, events)
        self.inflight.add(trade.key, trade)
        for status in (pb.TRADE_STATUS_RECEIVED, pb.TRADE_STATUS_VALIDATED):
            if lifecycle.rank(trade.stage) < lifecycle.rank(status):
                self._transition(trade, status, note)
                note = ""
        deadline_ns = trade.order.deadline_unix_ns
        if deadline_ns is not None and not trade.committed:
            delay = max(0.0, (deadline_ns - time.time_ns()) / 1e9)
            trade.timer = asyncio.get_running_loop().call_later(delay, self.stop, trade, StopRequest(
                "order_deadline", pb.TRADE_STATUS_EXPIRED,
                TradewireError("TRADE_EXPIRED", "deadline passed before the trade could be sent")))
        trade.task = asyncio.create_task(self._run(trade), name=f"trade-{trade.order.request_id}")
        trade.task.add_done_callback(lambda task: self._task_ended(trade))
        return trade

    def _task_ended(self, trade: Trade) -> None:
        """Safety net: a task stopped before its first step never ran ``_run``'s handlers."""
        if trade.done.done():
            return
        stop = trade.stop
        if stop is not None and stop.status is not None:
            self._finish(trade, Outcome(stop.status, error=stop.error))
        else:
            self._abandon(trade)

    # -- what callers use -------------------------------------------------------------------

    async def execute(self, order: Order, deadline: float | None = None) -> pb.TradeResult:
        """The filled trade's result; a trade that ends otherwise raises its error.

        ``deadline`` (time.monotonic) is the call's: when it passes, or the caller goes
        away, the trade is stopped if it has not been sent — and recorded either way.
        """
        return raise_unless_filled(*await self._final(order, deadline))

    async def wait(self, trade: Trade, deadline: float | None = None, *, owner: bool = True) -> pb.TradeResult:
        """Wait for the trade's final result as one of the calls waiting for it: the one that
        admitted it (``owner``) and retries of its request id. When the last of them gives up —
        its deadline passed, or it went away — a trade its owner waited for is stopped if it has
        not been sent: a retry that waits keeps it going when the first call leaves. (A session's
        trade goes on whoever leaves.)"""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        trade.owned = trade.owned or owner
        trade.callers += 1
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(trade.done)
        except TimeoutError:
            if self._last_caller_left(trade, _deadline_stop()):
                raise TradewireError("DEADLINE_EXCEEDED", "the call's deadline passed before the trade ended; "
                                     "the trade was stopped before it was sent") from None
            raise _goes_on(trade) from None
        except asyncio.CancelledError:
            past = deadline is not None and time.monotonic() >= deadline - 0.05
            self._last_caller_left(trade, _deadline_stop() if past else StopRequest(
                "caller", pb.TRADE_STATUS_CANCELLED,
                TradewireError("CANCELLED", "the caller cancelled the call before the trade was sent")))
            raise
        finally:
            trade.callers -= 1

    def _last_caller_left(self, trade: Trade, request: StopRequest) -> bool:
        """A waiting call gives up (still counted): the trade is stopped if no other call waits
        and its owner waited for it. False: it goes on."""
        return trade.owned and trade.callers == 1 and self.stop(trade, request)

    def stop(self, trade: Trade, request: StopRequest) -> bool:
        """Ask a running trade to stop; False when it is committed (sent) or already done.
        (A shutdown also stops a trade whose callers were answered while it waits for the store.)"""
        if trade.task is None or trade.task.done() or (trade.done.done() and request.source != "shutdown"):
            return False
        if trade.committed and request.source != "shutdown":
            return False
        if trade.stop is None or request.source == "shutdown":
            trade.stop = request
        trade.task.cancel()
        return True

    async def cancel(self, principal_id: str, request_id: str, reason: str = "",
                     may_cancel: Callable[[int], None] = lambda mode: None, *, counted: bool = True) -> pb.TradeResult:
        """CancelTrade: the trade's result once cancelled; NOT_CANCELLABLE once sent or final.
        ``may_cancel(mode)`` raises when the caller may not stop a trade of the found one's mode;
        ``counted`` False for a request another replica received (that replica counts it)."""
        count = self._count_cancel if counted else (lambda outcome: None)
        key = (principal_id, request_id)
        trade = self.inflight.get(key)
        if trade is None:
            record = self.store.get(*key)
            if record is None:
                count("not_found")
                raise trade_not_found(request_id)
            may_cancel(record.result.mode)
            owner = None
            if self.remote_cancel is not None and not lifecycle.is_terminal(record.result.status):
                owner = self.remote_cancel.owner(principal_id, request_id)
            if owner is not None:  # it runs on another replica: only that one can stop it
                result = await self.remote_cancel.cancel(owner, principal_id, request_id, reason)
                count("cancelled" if result.status == pb.TRADE_STATUS_CANCELLED else "not_cancellable")
                return result
            if record.result.status == pb.TRADE_STATUS_CANCELLED:
                count("already_cancelled")
                return record.result
            count("not_cancellable")
            raise _not_cancellable(request_id, record.result.status, "it has already ended")
        may_cancel(trade.order.mode)
        message = "cancelled by request" + (f": {reason}" if reason else "")
        if not self.stop(trade, StopRequest("request", pb.TRADE_STATUS_CANCELLED,
                                            TradewireError("TRADE_CANCELLED", message))):
            count("not_cancellable")
            raise _not_cancellable(request_id, trade.stage, "it has been sent; it runs to its end")
        result = await asyncio.shield(trade.done)
        count("cancelled" if result.status == pb.TRADE_STATUS_CANCELLED else "not_cancellable")
        return result

    async def cancel_for_a_peer(self, principal_id: str, request_id: str, reason: str = "") -> pb.TradeResult:
        """CancelTrade that another replica received for a trade running here."""
        return await self.cancel(principal_id, request_id, reason, counted=False)

    def _count_cancel(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.cancel_requests.labels("request", outcome).inc()

    async def result_of(self, order: Order, deadline: float | None = None) -> pb.TradeResult:
        """The order's final result, whatever its status (batches); as :meth:`execute` waits."""
        return (await self._final(order, deadline))[0]

    async def _final(self, order: Order, deadline: float | None,
                     runs_left: int = RUNS_AGAIN_FOR_A_FOLLOWER) -> tuple[pb.TradeResult, TradewireError | None]:
        """Admit ``order`` and wait for its trade's end: the result, and the error it ended with
        when it ran here. A trade running on another replica is followed until the call's
        ``deadline`` (time.monotonic), which ends the wait, not the trade."""
        admitted = self.admit(order)
        if isinstance(admitted, Trade):
            return await self.wait(admitted, deadline), admitted.error
        trade = self.inflight.get((admitted.principal_id, admitted.request_id))
        if trade is not None:  # running here: waited for as its first caller waits
            return await self.wait(trade, deadline, owner=False), trade.error
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            async with asyncio.timeout(timeout):
                result = await self._followed_to_its_end(admitted)
        except TimeoutError:
            raise _goes_on(admitted) from None
        if lifecycle.stopped_by_its_call(result) and runs_left:
            # Its caller's call on the other replica went away while this call followed it (a
            # retry that went elsewhere): this call still wants the trade, so it runs it here.
            return await self._final(order, deadline, runs_left - 1)
        return result, None

    async def _followed_to_its_end(self, record: TradeRecord) -> pb.TradeResult:
        record = self.store.get(record.principal_id, record.request_id) or record
        if not lifecycle.is_terminal(record.result.status):  # running on another replica: follow it
            key = (record.principal_id, record.request_id)
            async for event in self.hub.follow(key, 1, load_stored=lambda: self._stored_events(key)):
                if event.terminal:
                    return event.result
            record = self.store.get(*key) or record
        return record.result

    # -- the trade's task -----------------------------------------------------------------

    async def _run(self, trade: Trade) -> None:
        order = trade.order
        try:
            executor = self.executors.get(order.mode)
            if executor is None:
                outcome = Outcome(pb.TRADE_STATUS_REJECTED, error=TradewireError(
                    "LIVE_NOT_CONFIGURED", "live executor not configured"))
            elif order.deadline_unix_ns is not None and order.deadline_unix_ns <= time.time_ns() \
                    and not trade.committed:
                outcome = Outcome(pb.TRADE_STATUS_EXPIRED, error=TradewireError(
                    "TRADE_EXPIRED", "deadline passed before the trade could be sent"))
            else:
                if lifecycle.rank(trade.stage) < lifecycle.rank(pb.TRADE_STATUS_ROUTED):
                    self._transition(trade, pb.TRADE_STATUS_ROUTED, f"routed to the {executor.name} executor")
                outcome = await self._drive(trade, executor)
        except TakenOver as exc:
            await self._refused(trade, exc)
            return
        except self.store_outages as exc:
            if trade.committed:  # it may have been booked or sent: its executor says which, once it can
                self._wait_for_store(trade, exc, lambda: self._settle(trade))
                return
            outcome = Outcome(pb.TRADE_STATUS_REJECTED, error=store_unavailable())
        except asyncio.CancelledError:
            stop = trade.stop
            if stop is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if stop.status is None:
                self._abandon(trade)
                return
            outcome = Outcome(stop.status, error=stop.error)
            if self._metrics is not None and stop.source != "request":
                self._metrics.cancel_requests.labels(stop.source, "cancelled").inc()
        except Exception:
            log.exception("trade %s failed unexpectedly", order.request_id)
            outcome = Outcome(pb.TRADE_STATUS_FAILED, error=internal_error())
        self._finish(trade, outcome)

    async def _drive(self, trade: Trade, executor: Executor) -> Outcome:
        """Run the executor, retrying transient failures before the point of no return."""
        failures = 0
        while True:
            attempt = _attempt(executor, trade)
            try:
                async for item in attempt:
                    if isinstance(item, Progress):
                        if lifecycle.rank(item.status) <= lifecycle.rank(trade.stage):
                            continue  # a retried or resumed attempt repeating a published stage
                        if item.signature:
                            self._record_sent(trade, item)
                            continue
                        self._transition(trade, item.status, item.message)
                        if not trade.committed and lifecycle.may_have_been_sent(item.status):
                            self._commit(trade)
                        continue
                    reason = None if trade.committed or item.fill is not None or item.error is None \
                        else transient_reason(item.error)
                    if reason is None:
                        return item
                    failures += 1
                    if not self.retry.retries_left(failures):
                        return _refused_before_send(item)
                    break  # retry below
                else:
                    raise RuntimeError(f"{executor.name} executor ended without an outcome")
            except (asyncio.CancelledError, GeneratorExit, TakenOver):
                raise
            except Exception as exc:
                reason = None if trade.committed else transient_reason(exc)
                if reason is None:
                    if isinstance(exc, TradewireError):  # the executor's own refusal or failure
                        return Outcome(pb.TRADE_STATUS_FAILED if trade.committed else pb.TRADE_STATUS_REJECTED,
                                       error=exc)
                    raise
                failures += 1
                if not self.retry.retries_left(failures):
                    return Outcome(pb.TRADE_STATUS_REJECTED, error=as_error(exc))  # see _refused_before_send
            finally:
                if not attempt.ag_running:  # (it is, when the task itself is being torn down)
                    await attempt.aclose()
            if self._metrics is not None:
                self._metrics.executor_retries.labels(executor.name, reason).inc()
            log.info("retrying trade %s after a transient error (%s), attempt %d", trade.order.request_id,
                     reason, failures + 1)
            await asyncio.sleep(self.retry.delay(failures))

    def _commit(self, trade: Trade) -> None:
        """The point of no return: from here the executor may send; store it so a restart knows."""
        if trade.stop is not None:
            raise asyncio.CancelledError()  # a stop came first: the executor is parked, nothing was sent
        # Stored first: if the store refuses (the trade was taken over), nothing is sent from here.
        self.store.save(trade.order.principal_id, trade.result, self.hub.channel_events(trade.key) or (),
                        published=_may_publish(trade))
        self._committed(trade)

    @staticmethod
    def _committed(trade: Trade) -> None:
        """Past the point of no return (stored): no deadline stops it any more."""
        trade.committed = True
        if trade.timer is not None:
            trade.timer.cancel()

    def _record_sent(self, trade: Trade, progress: Progress) -> None:
        """A transaction on the network: its signature and status are stored before they are
        published, so a restart shows the signature and continues the same event sequence."""
        trade.result.signature = progress.signature
        event = self._advance(trade, progress.status, progress.message)
        self.store.save(trade.order.principal_id, trade.result, [*(self.hub.channel_events(trade.key) or ()), event],
                        published=_may_publish(trade))
        if not trade.committed:
            self._committed(trade)
        self._publish(trade, event)

    def _transition(self, trade: Trade, status: int, message: str = "") -> None:
        self._publish(trade, self._advance(trade, status, message))

    def _advance(self, trade: Trade, status: int, message: str) -> pb.ExecutionStatus:
        """Move the trade to ``status``; its event, not yet published."""
        lifecycle.check_transition(trade.result.status or None, status)
        trade.sequence += 1
        trade.result.status = status
        trade.stage = status
        now_ns = time.time_ns()  # one clock read: updated_at, the event and its audit row agree
        trade.result.updated_at.CopyFrom(lifecycle.timestamp_of(now_ns))
        return lifecycle.status_event(trade.order.request_id, trade.sequence, status, message or None,
                                      trade.result if lifecycle.is_terminal(status) else None, now_ns)

    def _publish(self, trade: Trade, event: pb.ExecutionStatus) -> None:
        self.hub.publish(trade.key, event)
        self.recorder.transition(trade.order, event)  # (reads the ns back from the event: two int fields)

    def _finish(self, trade: Trade, outcome: Outcome) -> None:
        order, result = trade.order, trade.result
        if trade.timer is not None:
            trade.timer.cancel()
        trade.error = outcome.error
        event = None
        try:
            apply_outcome(result, order, outcome)
            event = self._advance(trade, outcome.status, outcome.error.message if outcome.error else "")
            # (A trade that may run again is not at its end yet: its retry's end is announced.)
            announce = self.webhooks is not None and not lifecycle.may_run_again(result)
            outbox = self.webhooks.entries(order.principal_id, order.webhook_url, result) if announce else ()
            # Stored before it is published: a replica that lost the trade to another publishes nothing.
            self._store_end(trade, event, outbox)
        except TakenOver as exc:
            self._relinquish(trade, exc)
            return
        except self.store_outages as exc:
            self._wait_for_store(trade, exc, lambda: self._store_end_later(trade, outcome, event, outbox))
            return
        except Exception as exc:  # the caller must still learn the outcome
            log.exception("recording the end of trade %s failed", order.request_id)
            if event is not None:
                self._publish(trade, event)
            else:  # no end to publish: its followers and its timings are let go all the same
                self.hub.abandon(trade.key)
                self.recorder.forget(order)
            self.inflight.remove(trade.key)
            if not trade.done.done():
                trade.done.set_exception(internal_error() if not isinstance(exc, TradewireError) else exc)
            return
        self._ended(trade, outcome, event, outbox)

    def _store_end(self, trade: Trade, event: pb.ExecutionStatus, outbox) -> None:
        # With Redis the caller's in-flight slot goes back in the same script.
        self.store.save(trade.order.principal_id, trade.result,
                        (*(self.hub.channel_events(trade.key) or ()), event), outbox, self.inflight.slot_for(trade.key))

    def _ended(self, trade: Trade, outcome: Outcome, event: pb.ExecutionStatus, outbox) -> None:
        """The trade's end is stored: record its fill, publish its end, answer its callers."""
        if outcome.fill is not None:  # what was booked: a fill, or the fee a failed transaction paid
            self.recorder.fill(trade.order, outcome.fill, trade.result)
        self._publish(trade, event)
        if outbox:
            self.webhooks.notify()
        self.inflight.remove(trade.key, released=True)  # by the save that stored its end
        if not trade.done.done():
            trade.done.set_result(trade.result)

    # -- store outages while a trade runs ---------------------------------------------------

    def _wait_for_store(self, trade: Trade, exc: Exception, then: Callable[[], Awaitable[None]]) -> None:
        """The store stopped answering mid-trade: answer the callers now (retryable), and let
        ``then()`` end the trade in a task of its own once the store is back."""
        log.warning("trade %s: the shared store did not answer at %s (%s: %s); it ends once the store is back",
                    trade.order.request_id, pb.TradeStatus.Name(trade.stage), exc.__class__.__name__, exc)
        if not trade.done.done():
            trade.done.set_exception(store_unavailable())
        if self._metrics is not None:
            self._metrics.trades_awaiting_store.inc()
        trade.task = asyncio.create_task(self._after_outage(trade, then), name=f"store-wait-{trade.order.request_id}")

    async def _after_outage(self, trade: Trade, then: Callable[[], Awaitable[None]]) -> None:
        try:
            await then()
        except TakenOver as exc:
            self._relinquish(trade, exc)
        except asyncio.CancelledError:  # shutting down before the store came back
            self.hub.abandon(trade.key)
            self.inflight.remove(trade.key)
            log.warning("trade %s left at %s by the shutdown while the store did not answer; it %s after the restart",
                        trade.order.request_id, pb.TradeStatus.Name(trade.stage),
                        "is reconciled" if trade.committed else "resumes")
        except Exception:
            log.exception("ending trade %s after a store outage failed", trade.order.request_id)
            self.hub.abandon(trade.key)
            self.recorder.forget(trade.order)
            self.inflight.remove(trade.key)
        finally:
            if self._metrics is not None:
                self._metrics.trades_awaiting_store.dec()

    async def _once_store_answers(self, attempt):
        """``attempt()``'s result (awaited if need be), asked again with backoff while the store
        does not answer."""
        failures = 0
        while True:
            failures += 1
            await asyncio.sleep(_STORE_BACK.delay(failures))
            try:
                answer = attempt()
                return await answer if asyncio.iscoroutine(answer) else answer
            except self.store_outages:
                continue

    async def _store_end_later(self, trade: Trade, outcome: Outcome, event: pb.ExecutionStatus, outbox) -> None:
        await self._once_store_answers(lambda: self._store_end(trade, event, outbox))
        log.info("trade %s stored at %s after the store outage", trade.order.request_id,
                 pb.TradeStatus.Name(trade.stage))
        self._ended(trade, outcome, event, outbox)

    async def _settle(self, trade: Trade) -> None:
        """A committed trade whose executor lost the store: it may have been booked (or sent);
        its executor's reconcile says what happened, as after a restart — once the store answers,
        and only while it still holds this run of the trade as this replica's (else TakenOver, or
        TradeLost: a store that restarted empty is not written to about a run it forgot, nor is
        the run a retry started there since)."""
        reconcile = getattr(self.executors.get(trade.order.mode), "reconcile", None)

        def settled():
            self._check_still_here(trade)
            return None if reconcile is None else reconcile(trade.order, trade.result)

        outcome = await self._once_store_answers(settled)
        if outcome is None:
            outcome = Outcome(pb.TRADE_STATUS_FAILED, error=TradewireError(
                "UPSTREAM_UNAVAILABLE", "the store did not answer after the trade may have been sent and its "
                "executor cannot reconcile it; check the signature on chain"))
        self._publish_progress(trade, outcome)
        self._finish(trade, outcome)

    def _check_still_here(self, trade: Trade) -> None:
        """Raise TradeLost if the store no longer holds this run of the trade (it lost it, and a
        retry may have claimed the request id afresh since: another run), TakenOver if another
        replica owns it or it has ended (settled elsewhere)."""
        record = self.store.get(*trade.key)
        if record is None or record.result.trade_id != trade.result.trade_id:
            raise TradeLost(f"this run of trade {trade.order.request_id!r} is no longer in the store")
        owner = getattr(self.store, "owner", None) if self.store.shared else None
        if lifecycle.is_terminal(record.result.status) or (
                owner is not None and owner(*trade.key) != getattr(self.store, "replica_id", None)):
            raise TakenOver(f"trade {trade.order.request_id!r} is owned by another replica now")

    async def _refused(self, trade: Trade, why: TakenOver) -> None:
        """A save was refused (another replica owns the trade, or the store lost it), or the executor
        refused to go on (a fill id it was to book was used): the trade stops here if it is no longer
        this replica's to end. One the store still holds as this replica's must not be left unfinished
        (no replica adopts the trades of one that is alive): it ends here, settled by its executor as
        after a restart (a committed one: what was booked or sent, or nothing)."""
        if trade.committed and not isinstance(why, TradeLost):
            try:
                self._check_still_here(trade)
            except TakenOver as exc:
                why = exc
            except self.store_outages as exc:  # asked again once the store answers (_settle checks first)
                self._wait_for_store(trade, exc, lambda: self._settle(trade))
                return
            else:
                log.error("trade %s: its executor refused to go on at %s (%s), but the trade is still this "
                          "replica's; it is settled here", trade.order.request_id, pb.TradeStatus.Name(trade.stage),
                          why)
                try:
                    await self._settle(trade)
                except TakenOver as exc:
                    self._relinquish(trade, exc)
                except Exception:
                    log.exception("settling trade %s failed", trade.order.request_id)
                    self._finish(trade, Outcome(pb.TRADE_STATUS_FAILED, error=internal_error()))
                return
        self._relinquish(trade, why)

    def _abandon(self, trade: Trade) -> None:
        """Shutdown reached a trade that has not ended: keep it unfinished for the restart."""
        if trade.timer is not None:
            trade.timer.cancel()
        try:  # every event it published is stored: a restart continues right after them
            self.store.save(trade.order.principal_id, trade.result, self.hub.channel_events(trade.key) or (),
                            published=trade.sequence)
        except TakenOver as exc:
            self._relinquish(trade, exc)
            return
        except self.store_outages as exc:  # it stays as last stored: resumed or reconciled from there
            log.warning("trade %s: the shared store did not answer at the shutdown (%s)", trade.order.request_id, exc)
        self.hub.abandon(trade.key)
        self.inflight.remove(trade.key)
        self.recorder.forget(trade.order)
        # With a shared store another replica takes it over at once; else this one, restarted.
        where = "on another replica (or here after the restart)" if self.store.shared else "after the restart"
        log.warning("trade %s left unfinished at %s by the shutdown; it %s %s", trade.order.request_id,
                    pb.TradeStatus.Name(trade.stage), "is reconciled" if trade.committed else "resumes", where)
        if not trade.done.done():
            trade.done.set_exception(TradewireError(
                "SHUTTING_DOWN", f"the gateway is shutting down; trade {trade.order.request_id!r} is unfinished at "
                f"{pb.TradeStatus.Name(trade.stage)} and "
                f"{'is reconciled' if trade.committed else 'resumes'} {where} (follow it with StreamExecutionStatus)",
                metadata={"trade_id": trade.result.trade_id, "status": pb.TradeStatus.Name(trade.stage)}))

    # -- shutdown and restart ---------------------------------------------------------------

    def _relinquish(self, trade: Trade, why: TakenOver) -> None:
        """Another replica took the trade over (this one was presumed dead), or the shared store
        lost it: stop here, and write or publish nothing more about it."""
        if trade.timer is not None:
            trade.timer.cancel()
        self.hub.abandon(trade.key)
        self.inflight.remove(trade.key)
        self.recorder.forget(trade.order)
        stage = pb.TradeStatus.Name(trade.stage)
        if isinstance(why, TradeLost):
            log.error("trade %s is no longer in the shared store (did Redis restart without its data?); stopped "
                      "here at %s, its outcome unrecorded", trade.order.request_id, stage)
            error = _lost(trade)
        else:
            if self._metrics is not None:
                self._metrics.trades_handed_over.labels("lost").inc()
            log.warning("trade %s was taken over by another replica; stopped here at %s", trade.order.request_id, stage)
            error = TradewireError(
                "TRADE_TAKEN_OVER", f"trade {trade.order.request_id!r} was taken over by another replica of the "
                "gateway; follow it with GetTrade or StreamExecutionStatus")
        if not trade.done.done():
            trade.done.set_exception(error)

    async def drain(self, timeout: float) -> bool:
        """Wait (up to ``timeout``) until no trade runs; True if they all ended."""
        await self.claims_in_doubt.stop()  # (no trade starts now; the next start resumes them)
        return await self.inflight.wait_empty(timeout)

    async def interrupt_all(self, timeout: float = 2.0) -> int:
        """Stop every trade still running and keep it unfinished; returns how many."""
        await self.claims_in_doubt.stop()
        trades = list(self.inflight)
        for trade in trades:
            self.stop(trade, StopRequest.shutdown())
        tasks = [t.task for t in trades if t.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return len(trades)

    async def recover(self, trades: list[UnfinishedTrade] | None = None, restarted: bool = True) -> dict[str, int]:
        """Resume or reconcile the trades a previous process left unfinished (default: this
        replica's, from the store), or ``trades`` adopted from a replica that died, or claimed
        by the store without an answer (``restarted`` False: nothing of theirs ran yet)."""
        from tradewire.core.validation import validate_trade  # validation imports order/market only

        counts = {"resumed": 0, "reconciled": 0, "failed": 0}
        for unfinished in self.store.unfinished() if trades is None else trades:
            record = unfinished.record
            if (record.principal_id, record.request_id) in self.inflight:
                continue  # still running here (handed back after a false takeover): it goes on as it is
            result = pb.TradeResult()
            result.CopyFrom(record.result)
            try:
                if unfinished.request is None or self.market is None:
                    raise TradewireError("INTERNAL", "unfinished trade kept without its request; it cannot resume")
                order = validate_trade(unfinished.request, record.principal_id, self.market)
            except TradewireError as exc:
                await self._finalize_stored(record, result, exc)
                counts["failed"] += 1
                continue
            trade = Trade(order, result)
            events = await self._events_since_stored(trade.key, record.events) if trade.committed else record.events
            # Its numbers go on after every one it may have published: never reused.
            trade.sequence = max(lifecycle.last_sequence(events), await self._numbers_maybe_used(record))
            if not self._store_bound(trade):
                continue
            if not trade.committed:
                note = ""
                if not record.events and restarted:  # it stopped without storing what it had published (a crash):
                    # (so a stream that saw it further along knows why it starts over)
                    note = "the gateway restarted before the trade was sent: it starts over from here"
                self._start(trade, record.events, note)
                counts["resumed"] += 1
                log.info("resuming unfinished trade %s from %s", order.request_id, pb.TradeStatus.Name(trade.stage))
                continue
            self.hub.open(trade.key, events)
            self.inflight.add(trade.key, trade)
            executor = self.executors.get(order.mode)
            reconcile = getattr(executor, "reconcile", None)
            if reconcile is not None:
                trade.task = asyncio.create_task(self._reconcile(trade, reconcile),
                                                 name=f"reconcile-{order.request_id}")
            else:
                self._finish(trade, Outcome(pb.TRADE_STATUS_FAILED, error=TradewireError(
                    "UPSTREAM_UNAVAILABLE", "the gateway stopped after the trade may have been sent and its executor "
                    "cannot reconcile it; check the signature on chain")))
            counts["reconciled"] += 1
        return counts

    def _store_bound(self, trade: Trade) -> bool:
        """Store how far a recovered trade may publish before its next save, before it publishes
        anything: a crash during this run is then recovered after these numbers too. False when
        another replica has taken it over meanwhile."""
        try:
            self.store.save(trade.order.principal_id, trade.result, (), published=_may_publish(trade))
        except TakenOver:
            log.warning("unfinished trade %s was taken over by another replica; left to it", trade.order.request_id)
            return False
        except self.store_outages as exc:  # it goes on: only a crash before its next save could reuse a number
            log.warning("trade %s: the shared store did not answer at its recovery (%s)", trade.order.request_id, exc)
        return True

    async def _numbers_maybe_used(self, record: TradeRecord) -> int:
        """The highest sequence an unfinished trade may have published, stored or not (a runner
        publishes some transitions before it stores them, and streams may have shown them): its
        record's bound — for a record without one, its last stored event and as many as a trade
        publishes before it is stored again — and at least the shared status stream's last."""
        stored = lifecycle.last_sequence(record.events)
        bound = record.published
        if bound is None:
            bound = stored + lifecycle.most_unsaved(record.result.status)
        latest = await self.hub.latest((record.principal_id, record.request_id))
        return max(stored, bound, latest.sequence if latest is not None else 0)

    async def _events_since_stored(self, key: Key, stored: tuple[pb.ExecutionStatus, ...]
                                   ) -> tuple[pb.ExecutionStatus, ...]:
        """A committed trade's stored events, and the event its runner published after its last
        save (SUBMITTED, on the shared status stream): its outcome then follows that sequence,
        so a stream that saw it still sees the end."""
        latest = await self.hub.latest(key)
        if latest is not None and latest.sequence == lifecycle.last_sequence(stored) + 1 \
                and not lifecycle.is_terminal(latest.stage):
            return (*stored, latest)
        return stored

    async def _reconcile(self, trade: Trade, reconcile) -> None:
        try:
            outcome = await reconcile(trade.order, trade.result)
        except TakenOver as exc:  # (its fenced settlement: another replica has it now, or the store lost it)
            self._relinquish(trade, exc)
            return
        except self.store_outages as exc:  # it may have been sent: never guess, ask again once the store is back
            self._wait_for_store(trade, exc, lambda: self._settle(trade))
            return
        except Exception:
            log.exception("reconciling trade %s failed", trade.order.request_id)
            outcome = Outcome(pb.TRADE_STATUS_FAILED, error=internal_error())
        self._publish_progress(trade, outcome)
        self._finish(trade, outcome)

    def _publish_progress(self, trade: Trade, outcome: Outcome) -> None:
        """What a reconciled trade reached that its record does not show yet (a LIVE
        transaction's CONFIRMED), published before its end as the normal path does."""
        for step in outcome.progress:
            if lifecycle.rank(step.status) > lifecycle.rank(trade.stage):
                self._transition(trade, step.status, step.message)

    async def _finalize_stored(self, record: TradeRecord, result: pb.TradeResult, error: TradewireError) -> None:
        """End an unfinished trade that cannot go on; stored, then published after every number its
        runner may have published (some it never stored), so streams following it end."""
        status = pb.TRADE_STATUS_REJECTED if not lifecycle.may_have_been_sent(result.status) else pb.TRADE_STATUS_FAILED
        result.status = status
        result.updated_at.CopyFrom(lifecycle.now_timestamp())
        result.error.CopyFrom(pb.TradeError(code=int(error.code), reason=error.reason, message=error.message))
        key = (record.principal_id, record.request_id)
        used = await self._numbers_maybe_used(record)  # after every number it may have published
        event = lifecycle.status_event(record.request_id, used + 1, status, error.message, result)
        self.store.save(record.principal_id, result, [*record.events, event])
        self.hub.open(key, record.events)
        self.hub.publish(key, event)

    # -- queries ----------------------------------------------------------------------------

    async def current(self, principal_id: str, request_id: str) -> pb.TradeResult | None:
        """The trade as it is now. One running on another replica is stored only at its claim,
        its point of no return and its end, so its stored result is brought up to its last status
        event (the shared status stream), as a replica running it would answer."""
        key = (principal_id, request_id)
        running = self.inflight.get(key)
        if running is not None:
            return running.result
        record = self.store.get(principal_id, request_id)
        if record is None or lifecycle.is_terminal(record.result.status):
            return None if record is None else record.result
        latest = await self.hub.latest(key)
        if latest is None or latest.sequence <= lifecycle.last_sequence(record.events) or _an_earlier_run(latest, record):
            return record.result
        if latest.HasField("result"):  # its terminal event, not stored yet
            return latest.result
        result = pb.TradeResult()
        result.CopyFrom(record.result)
        result.status = latest.stage
        result.updated_at.CopyFrom(latest.timestamp)
        return result

    def _stored_events(self, key: Key) -> tuple[pb.ExecutionStatus, ...]:
        record = self.store.get(*key)
        return () if record is None else record.events

    def _known(self, key: Key) -> bool:
        return key in self.inflight or self.hub.channel_events(key) is not None or self.store.get(*key) is not None

    async def _opened(self, key: Key, await_s: float) -> bool:
        """Whether the trade is opened within ``await_s``. This hub hears of trades opened here;
        one opened on another replica is found in the shared store, asked every OPENED_POLL_S."""
        deadline = time.monotonic() + await_s
        while True:
            left = deadline - time.monotonic()
            step = min(left, OPENED_POLL_S) if self.store.shared else left
            if await self.hub.wait_opened(key, step) or self._known(key):
                return True
            if left <= step or self.hub.closing:
                return False

    async def events(self, principal_id: str, request_id: str, from_sequence: int, heartbeat_s: float | None = None,
                     await_s: float = 0.0, subscription: Subscription | None = None):
        """Follow a trade's events (live or stored). A trade not known yet is awaited for
        ``await_s`` (a subscriber may come before the trade); then NOT_FOUND — the same
        answer whether it does not exist or belongs to someone else."""
        key = (principal_id, request_id)
        if not self._known(key) and not await self._opened(key, await_s):
            if self.hub.closing:
                raise TradewireError("SHUTTING_DOWN", "the gateway is shutting down; reconnect after the restart")
            raise trade_not_found(request_id)
        async for event in self.hub.follow(key, from_sequence, heartbeat_s, lambda: self._stored_events(key),
                                           subscription):
            yield event

    def in_flight(self, principal_id: str | None = None) -> int:
        return self.inflight.count(principal_id)


def _attempt(executor: Executor, trade: Trade):
    """A fresh attempt of ``executor`` at ``trade``; one that books per run (``books_per_run``: the
    paper executor) is told which run this is — its trade id, kept by a crash re-run and by a
    replica adopting it, new when the request id runs again or is claimed afresh."""
    if getattr(executor, "books_per_run", False):
        return executor.execute(trade.order, run=trade.result.trade_id)
    return executor.execute(trade.order)


def _may_publish(trade: Trade) -> int:
    """What a save of the running ``trade`` records as TradeRecord.published: its sequence, and as
    many as it may publish before it is stored again."""
    return trade.sequence + lifecycle.most_unsaved(trade.stage)


def _goes_on(trade: Trade | TradeRecord) -> TradewireError:
    """DEADLINE_EXCEEDED for a call whose trade goes on without it (sent, or another call waits)."""
    request_id = trade.order.request_id if isinstance(trade, Trade) else trade.request_id
    return TradewireError("DEADLINE_EXCEEDED", f"the call's deadline passed before trade {request_id!r} ended; "
                          "it goes on (follow it with StreamExecutionStatus)", metadata={"trade_id": trade.result.trade_id})


def _lost(trade: Trade) -> TradewireError:
    """What the calls waiting for a trade the shared store lost are told (it restarted without its
    data: the trade, its request id and the paper positions are gone). A retry with the same
    request id runs it again (or follows the run another call started since), so they are invited
    to — unless it is a LIVE trade that may have been sent: its transaction may be on chain, which
    the emptied store no longer knows, and a run again could send a second one."""
    if trade.order.mode == pb.TRADING_MODE_LIVE and trade.committed:
        return internal_error()
    return TradewireError(
        "STORE_UNAVAILABLE", f"the gateway's shared store lost trade {trade.order.request_id!r} before it ended (it "
        "restarted without its data); retry the call with the same request_id", retry_after_s=1.0)


def _deadline_stop() -> StopRequest:
    return StopRequest("deadline", pb.TRADE_STATUS_EXPIRED,
                       TradewireError("DEADLINE_EXCEEDED", "the call's deadline passed before the trade was sent"))


def _not_cancellable(request_id: str, status: int, why: str) -> TradewireError:
    stage = pb.TradeStatus.Name(status)
    return TradewireError("NOT_CANCELLABLE", f"trade {request_id!r} can no longer be cancelled: {why} ({stage})",
                          metadata={"status": stage})


def trade_not_found(request_id: str) -> TradewireError:
    # Same answer whether the trade does not exist or belongs to someone else.
    return TradewireError("TRADE_NOT_FOUND", f"no trade with request_id {request_id!r}",
                          field_violations=(FieldViolation("request_id", "no such trade"),))


def raise_unless_filled(result: pb.TradeResult, error: TradewireError | None = None) -> pb.TradeResult:
    """The result if FILLED; else raise the trade's error with its id, status and fees.

    ``error``: the running trade's original error (keeps retry_after_s, quota violations and
    its metadata); without it (a replay from the store) the error is rebuilt from the stored
    TradeError.
    """
    if result.status == pb.TRADE_STATUS_FILLED:
        return result
    trade_metadata = {"trade_id": result.trade_id, "status": pb.TradeStatus.Name(result.status),
                      "fees_lamports": str(result.fees.total_lamports)}
    if error is not None:
        raise dataclasses.replace(error, metadata={**error.metadata, **trade_metadata})  # a copy per caller
    err = result.error
    raise TradewireError(
        err.reason or "INTERNAL",
        err.message or "trade did not fill",
        field_violations=tuple(FieldViolation(v.field, v.description) for v in err.field_violations),
        metadata={**err.metadata, **trade_metadata},
    )


def ended_as(result: pb.TradeResult) -> tuple[Code, str]:
    """(code, reason) of a trade's end as its ExecuteTrade is recorded: OK if FILLED, else its error's."""
    if result.status == pb.TRADE_STATUS_FILLED:
        return Code.OK, ""
    return Code(result.error.code) if result.error.code else Code.UNKNOWN, result.error.reason


def _an_earlier_run(event: pb.ExecutionStatus, record: TradeRecord) -> bool:
    """An event of a run before the stored one: a request id that ran again is claimed anew
    (its stream dropped), but the earlier run's last events may still reach the stream from a
    replica whose sender is behind, until the new run's first event replaces them."""
    if event.HasField("result"):
        return event.result.trade_id != record.result.trade_id
    return lifecycle.ns_of(event.timestamp) < lifecycle.ns_of(record.result.created_at)


def trade_error(err: TradewireError) -> pb.TradeError:
    """``err`` inside a result, batch item or session message, which carry no RetryInfo: a
    retryable error's delay goes in its metadata (``retry_after_s``)."""
    metadata = {key: str(value) for key, value in err.metadata.items()}
    if err.retry_after_s is not None:
        metadata.setdefault("retry_after_s", str(err.retry_after_s))
    return pb.TradeError(
        code=int(err.code if err.code != Code.OK else Code.INTERNAL), reason=err.reason, message=err.message,
        field_violations=[pb.FieldViolation(field=v.field, description=v.description) for v in err.field_violations],
        metadata=metadata,
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
        requested_amount=(order.output_mint if order.exact_out else order.input_mint).to_units(order.amount_atomic),
    )


def _differing_fields(recorded: pb.TradeResult, order: Order, first: pb.TradeRequest | None = None) -> list[str]:
    """The request fields in which ``order`` differs from the request that made the trade:
    compared field by field with ``first`` (that request, as stored), else only those the
    trade's result records (not slippage, deadline, fees or MEV settings)."""
    if first is not None:
        return [field.name for field in pb.TradeRequest.DESCRIPTOR.fields if field.name != "request_id"
                and not _same_value(field.name, getattr(first, field.name), getattr(order.request, field.name))]
    current = _initial_result(order)
    fields = ["mode", "input_mint", "output_mint", "swap_mode", "client_metadata"]
    if recorded.requested_amount:  # (not on results recorded before it was)
        fields.insert(3, "requested_amount")
    return [("amount" if name == "requested_amount" else name) for name in fields
            if getattr(recorded, name) != getattr(current, name)]


def _same_value(name: str, first, again) -> bool:
    if name == "amount":  # (as the fingerprint reads it: "1.0" is "1")
        try:
            return Decimal(first) == Decimal(again)
        except ArithmeticError:
            return first == again
    return first == again


def _refused_before_send(outcome: Outcome) -> Outcome:
    """A transient failure that outlasted its retries before the point of no return sent
    nothing: a refusal whose caller may retry it (``lifecycle.may_run_again``), not a failure."""
    return Outcome(pb.TRADE_STATUS_REJECTED, error=outcome.error) if outcome.fill is None else outcome


def apply_outcome(result: pb.TradeResult, order: Order, outcome: Outcome) -> None:
    """The TradeResult fields an executor's outcome decides (amounts, prices, fees, error)."""
    if outcome.fill is not None:
        _apply_fill(result, order, outcome.fill)
    elif outcome.quote is not None:
        _apply_quote(result, order, outcome.quote)
    if outcome.error is not None:
        result.error.CopyFrom(trade_error(outcome.error))


def _apply_quote(result: pb.TradeResult, order: Order, quote: Quote) -> None:
    result.quoted_amount_out = order.output_mint.to_units(quote.out_amount)
    threshold_mint = order.input_mint if order.exact_out else order.output_mint
    result.other_amount_threshold = threshold_mint.to_units(quote.other_amount_threshold)
    result.price_impact_pct = quote.price_impact_pct


def _apply_fill(result: pb.TradeResult, order: Order, fill: Fill) -> None:
    quote = fill.quote
    result.amount_in = order.input_mint.to_units(fill.amount_in) if fill.amount_in else "0"
    result.amount_out = order.output_mint.to_units(fill.amount_out) if fill.amount_out else "0"
    _apply_quote(result, order, quote)
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
