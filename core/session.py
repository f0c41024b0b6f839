"""TradeSession: one full-duplex stream carrying many trades and cancels, and every status of
every trade of the session back, multiplexed by request id (TradeService.TradeSession)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from tradewire.core.auth.permissions import authorize
from tradewire.core.context import CallContext
from tradewire.core.errors import Code, TradewireError, internal_error, nested_under
from tradewire.core.lifecycle import MOST_TRANSITIONS, heartbeat_event, is_terminal, shutdown_event, stopped_by_its_call
from tradewire.core.order import Order, mode_name
from tradewire.core.pipeline import CredentialWatch, shutting_down
from tradewire.core.trades import RUNS_AGAIN_FOR_A_FOLLOWER, ended_as, trade_error
from tradewire.core.validation import check_cancel, require_valid, validate_trade
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

if TYPE_CHECKING:
    from tradewire.core.service import TradeService

log = logging.getLogger("tradewire.service")


class Session:
    """One TradeSession: requests in (read by a task of their own), every status of every
    trade of the session out, multiplexed, through one bounded queue.

    The queue holds at most ``session_max_lag`` messages. Each trade the session follows keeps
    room for every status it may still publish, and the next request is read only once there is
    room for what it may bring: a burst of trades from a caller reading slower than they run
    waits in the transport (flow control) instead of overflowing the queue. A reader that
    accepts nothing for ``slow_consumer_s`` is dropped by the hub's watchdog with
    RESOURCE_EXHAUSTED (SLOW_CONSUMER) — the trades read go on and can be followed with
    StreamExecutionStatus; requests not read were not run. The session ends by itself
    once the client has half-closed and every trade of the session has ended; a client that
    goes away ends it at once (its trades go on). On shutdown it gets the statuses of its
    trades that ended during the drain, then one SHUTDOWN status. A request the transport could
    not take (too large, or not a TradeSessionRequest) comes as its TradewireError: it is answered
    with a SessionError without a request id, and the session goes on.
    """

    def __init__(self, service: TradeService, ctx: CallContext, requests: AsyncIterator[spb.TradeSessionRequest]):
        self.service = service
        self.runner = service.runner
        self.hub = service.hub
        self.ctx = ctx
        self.credential = CredentialWatch(service.pipeline, ctx)
        self.requests = requests
        self.max_lag = service.options.session_max_lag
        self.queue: collections.deque[spb.TradeSessionResponse] = collections.deque()
        self.ready = asyncio.Event()
        self.failed: TradewireError | None = None
        self.reading = True
        self.followers: dict[str, asyncio.Task] = {}  # by request id, while the trade is followed
        self.owed: dict[str, int] = {}  # by request id: statuses its trade may still put in the queue
        self.room = asyncio.Event()  # set as the queue is read: a paused request reader looks again

    def put(self, response: spb.TradeSessionResponse, request_id: str | None = None) -> None:
        """Queue ``response``; ``request_id`` names the followed trade whose status it is."""
        if self.failed is not None:
            return
        if request_id is not None and self.owed.get(request_id):
            self.owed[request_id] -= 1
        if len(self.queue) >= self.max_lag:  # (not reached while reading waits for room: a guard)
            self.failed = TradewireError(
                "SLOW_CONSUMER", f"the session's reader fell {self.max_lag} messages behind and was dropped; its "
                                 "trades go on: follow them with StreamExecutionStatus (from_sequence)",
                metadata={"max_lag": str(self.max_lag)})
        else:
            self.queue.append(response)
        self.ready.set()

    async def run(self) -> AsyncIterator[spb.TradeSessionResponse]:
        sub = self.hub.subscribe("session", self.ctx.principal.id)
        unregister = self.hub.on_shutdown(self.ready.set)
        reader = asyncio.create_task(self._read(), name="trade-session-reader")
        ended = "client_gone"
        try:
            while True:
                while self.queue:
                    sub.parked()
                    yield self.queue.popleft()
                    sub.resumed()
                    self.room.set()
                if self.failed is not None:
                    ended = "slow_consumer" if self.failed.reason == "SLOW_CONSUMER" else "error"
                    raise self.failed
                if self.hub.closing:
                    await self._settle_followers()
                    if self.queue:
                        continue
                    sub.parked()
                    yield spb.TradeSessionResponse(status=shutdown_event("", None))
                    sub.resumed()
                    ended = "shutdown"
                    return
                if not self.reading and not self.followers:
                    ended = "completed"
                    return
                self.ready.clear()
                try:
                    async with asyncio.timeout(self.service.options.heartbeat_s):
                        await self.ready.wait()
                except TimeoutError:
                    try:
                        self.credential.check()  # an idle session ends too once its key is revoked
                    except TradewireError as exc:
                        self.failed = self.failed or exc
                        continue
                    sub.parked()
                    yield spb.TradeSessionResponse(status=heartbeat_event("", None))
                    sub.resumed()
        finally:
            unregister()
            if ended == "client_gone":
                ended = self.ctx.cut_off_as()
            tasks = [reader, *self.followers.values()]
            for task in tasks:
                task.cancel()
            try:
                await asyncio.gather(*tasks, return_exceptions=True)
            finally:  # (a second cancellation cuts this wait short: the stream is closed all the same)
                self.hub.unsubscribe(sub, ended)

    async def _settle_followers(self) -> None:
        """On shutdown: let followers deliver what their (ended or abandoned) trades published."""
        if self.followers:
            await asyncio.wait(list(self.followers.values()), timeout=1.0)

    async def _read(self) -> None:
        try:
            async for message in self.requests:
                if isinstance(message, TradewireError):  # one the transport could not take: refused alone
                    self._refuse_unread(message)
                else:
                    await self._handle(message)
                await self._room_for_one_more()
        except TradewireError as exc:  # a revoked key (an expired token) ends the session
            self.failed = self.failed or exc
        except Exception:
            log.exception("reading a trade session failed")
            self.failed = self.failed or internal_error()
        finally:
            self.reading = False
            self.ready.set()

    async def _room_for_one_more(self) -> None:
        """Wait until the queue has room for all a next request may bring (a trade's statuses)
        besides what the trades followed may still put in it."""
        while self.failed is None and \
                len(self.queue) + sum(self.owed.values()) + MOST_TRANSITIONS > self.max_lag:
            self.room.clear()
            await self.room.wait()

    def _refuse_unread(self, error: TradewireError) -> None:
        """A message that did not decode, or is too large: its error (no request id: it was not read),
        and the session goes on with the next."""
        started = time.monotonic()
        try:  # as for any message: a revoked key (an expired token) ends the session
            self.credential.check(now=True)
        except TradewireError as exc:
            self.service.record_item(self.ctx, "action", "", (exc.code, exc.reason), started)
            raise
        try:  # it costs what a malformed call costs: a token of the caller's bucket (a unary call's)
            self.service.pipeline.limit_trade(self.ctx.principal.id, 0)
        except TradewireError as exc:
            error = exc
        self.put(spb.TradeSessionResponse(error=spb.SessionError(error=trade_error(error))))
        self.service.record_item(self.ctx, "action", "", (error.code, error.reason), started)

    async def _handle(self, message: spb.TradeSessionRequest) -> None:
        action = message.WhichOneof("action")
        request_id = message.trade.request_id if action == "trade" else message.cancel.request_id
        started = time.monotonic()
        try:  # each trade or cancel is authorized: a revoked key (an expired token) ends the session
            self.credential.check(now=True)
        except TradewireError as exc:
            self.service.record_item(self.ctx, action or "action", request_id, (exc.code, exc.reason), started)
            raise
        try:
            if self.service.draining:
                raise shutting_down()
            # Refused in the order every call is: the scope, the rate limit, then the contract's
            # rules (a message they refuse costs its token too, as a malformed call does).
            if action == "trade":
                mode = pb.TRADING_MODE_LIVE if message.trade.mode == pb.TRADING_MODE_LIVE else pb.TRADING_MODE_PAPER
                authorize(self.ctx.principal, "TradeSession", mode_name(mode))
                self.service.pipeline.limit_trade(self.ctx.principal.id, mode)
            elif action == "cancel":  # (takes what a CancelTrade call takes, as a trade takes an ExecuteTrade's)
                self.service.pipeline.limit_trade(self.ctx.principal.id, 0, method="CancelTrade")
            else:  # neither: malformed, it costs what a message that does not decode costs
                self.service.pipeline.limit_trade(self.ctx.principal.id, 0)
            require_valid(message)
            if action == "cancel":
                check_cancel(message.cancel, "cancel.")
                try:
                    result = await self.runner.cancel(self.ctx.principal.id, request_id, message.cancel.reason,
                                                      self.service.cancel_scope(self.ctx))
                except TradewireError as exc:
                    raise nested_under("cancel.", exc) from None
                self.put(spb.TradeSessionResponse(cancelled=spb.CancelTradeResponse(request_id=request_id,
                                                                                    status=result.status)))
                self.service.record_item(self.ctx, action, request_id, (Code.OK, ""), started)
                return
            order = validate_trade(message.trade, self.ctx.principal.id, self.service.market, "trade.")
            self.service.check_webhook(order, "trade.")
            try:
                self.runner.admit(order)
            except TradewireError as exc:
                raise nested_under("trade.", exc) from None
        except TradewireError as exc:
            self.put(spb.TradeSessionResponse(error=spb.SessionError(request_id=request_id, error=trade_error(exc))))
            self.service.record_item(self.ctx, action or "action", request_id, (exc.code, exc.reason), started)
            return
        if request_id in self.followers:  # sent again while the session follows it: joined, nothing new
            self.service.record_item(self.ctx, action, request_id, (Code.OK, ""), started)
            return
        self.owed[request_id] = MOST_TRANSITIONS
        task = asyncio.create_task(self._follow(order, started), name=f"session-follow-{request_id}")
        self.followers[request_id] = task
        task.add_done_callback(lambda _t, rid=request_id: self._followed(rid))

    def _followed(self, request_id: str) -> None:
        self.followers.pop(request_id, None)
        self.owed.pop(request_id, None)
        self.ready.set()
        self.room.set()

    async def _follow(self, order: Order, started: float) -> None:
        """The trade's statuses into the session; its record once it ends (CANCELLED if the session
        ends first — the trade goes on — as an ExecuteTrade whose caller left is recorded).

        A trade another call started, and stopped by going away before it was sent, is run again
        for the session, which still wants it (as a retry of ExecuteTrade would): that end is not
        forwarded, and the new run's statuses follow, numbered from 1 as a new trade's."""
        request_id = order.request_id
        ended = (Code.CANCELLED, "")
        runs_left = RUNS_AGAIN_FOR_A_FOLLOWER
        try:
            while True:
                run_again = False
                async with contextlib.aclosing(self.runner.events(self.ctx.principal.id, request_id, 1)) as events:
                    async for event in events:
                        if event.kind == pb.STATUS_KIND_TRANSITION:
                            if event.terminal and runs_left and stopped_by_its_call(event.result):
                                run_again = True
                                break
                            self.put(spb.TradeSessionResponse(status=event), request_id)
                            if is_terminal(event.stage):
                                ended = ended_as(event.result)
                        if self.failed is not None:
                            return
                if not run_again:
                    return
                runs_left -= 1
                await self._room_for_a_new_run(request_id)
                if self.failed is not None:
                    return
                refused = self._admit_again(order)
                if refused is not None:
                    ended = (refused.code, refused.reason)
                    return
        finally:
            self.service.record_item(self.ctx, "trade", request_id, ended, started)

    async def _room_for_a_new_run(self, request_id: str) -> None:
        """Wait until the queue has room for every status the trade's new run may publish."""
        self.owed[request_id] = 0
        await self._room_for_one_more()
        self.owed[request_id] = MOST_TRANSITIONS

    def _admit_again(self, order: Order) -> TradewireError | None:
        """Admit ``order`` again; its refusal, also put in the session, if it is refused."""
        try:
            self.runner.admit(order)
        except TradewireError as exc:
            error = nested_under("trade.", exc)
            self.put(spb.TradeSessionResponse(error=spb.SessionError(request_id=order.request_id,
                                                                     error=trade_error(error))))
            return error
        return None
