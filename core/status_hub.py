"""In-process fan-out of trade status events, and the registry of open streams.

Each running trade has one append-only event list shared by all its subscribers; a
subscriber is only an index into that list plus a wait on the next publish. So any number
of subscribers, joining at any moment, see every event once and in order, and a slow one
costs no memory of its own. Finished trades are kept for a while (LRU), then served from
the store.

Open streams (status streams and trade sessions) register a :class:`Subscription`, which
is what shutdown and the slow-consumer watchdog act on:

* ``shutdown()`` wakes every stream; a stream whose trade has not ended then sends one
  ``STATUS_KIND_SHUTDOWN`` message saying where to resume, and ends.
* slow consumers: the core never buffers per subscriber, and each transport applies
  backpressure (HTTP/2 flow control for gRPC, uvicorn's write buffer for HTTP/1.1), so a
  consumer that does not read blocks its own stream at ``yield`` and nothing grows. A stream
  parked at ``yield`` for longer than ``slow_consumer_s`` (its transport accepted no
  message for that long) is dropped: the task serving it is cancelled, which frees
  everything it held, and a transport that registered a terminator (:meth:`on_drop`; the
  gRPC adapter does) first ends the call with RESOURCE_EXHAUSTED (SLOW_CONSUMER), which the
  client reads after the messages already in its buffers. Over HTTP/1.1 the connection is
  closed instead (there is no way to put a status after a body the client does not read). Trade sessions, which queue events of many trades,
  additionally bound their queue (see core/service.py).
* memory: once a burst of streams has closed (``TRIM_AFTER_CLOSED`` fewer open than at the
  peak, and no change over a whole watchdog period), the watchdog asks glibc to give freed
  heap pages back (``malloc_trim``), so the process's RSS follows the load back down
  instead of staying at its high-water mark.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable

from tradewire.core import lifecycle
from tradewire.core.errors import TradewireError
from tradewire.v1 import trade_pb2 as pb

Key = tuple[str, str]  # (principal id, request id)

log = logging.getLogger("tradewire.streams")

TRIM_AFTER_CLOSED = 200


def _malloc_trim() -> Callable[[], int] | None:
    """glibc's malloc_trim(0), or None where there is none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class _Channel:
    __slots__ = ("events", "_changed", "closed")

    def __init__(self, events: tuple[pb.ExecutionStatus, ...] | list[pb.ExecutionStatus] = ()) -> None:
        self.events: list[pb.ExecutionStatus] = list(events)
        # Made when someone first waits: most trades finish with nobody following them.
        self._changed: asyncio.Event | None = None
        self.closed = bool(self.events) and self.events[-1].terminal

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next publish (or wake): what a subscriber at the end of ``events`` waits on."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def publish(self, event: pb.ExecutionStatus) -> None:
        self.events.append(event)
        self.closed = self.closed or event.terminal
        self.wake()

    def wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()  # wake everyone waiting for this publish; later waits get a new event


class Subscription:
    """One open stream: the task serving it, and since when it waits for its transport."""

    __slots__ = ("kind", "caller", "task", "parked_since", "dropped", "following")

    def __init__(self, kind: str, caller: str = "") -> None:
        self.kind = kind  # "status" | "session"
        self.caller = caller  # the principal it is open for
        self.task: asyncio.Task | None = asyncio.current_task()
        self.parked_since: float | None = None
        self.dropped = False
        self.following = False  # StatusHub.follow has begun: its trade exists (see StatusHub.awaiting)

    def parked(self) -> None:
        """About to yield a message: the transport has it until the consumer asks for the next."""
        self.parked_since = time.monotonic()

    def resumed(self) -> None:
        self.parked_since = None
        self.task = asyncio.current_task()


def too_many_streams(why: str) -> TradewireError:
    return TradewireError("TOO_MANY_STREAMS", f"too many open streams: {why}")


class StatusHub:
    def __init__(self, keep_finished: int = 1_000, heartbeat_s: float | None = 15.0,
                 slow_consumer_s: float = 30.0, metrics=None, bus=None,
                 max_open_per_caller: int | None = None, max_open_total: int | None = None) -> None:
        # With a bus (core.shared.redis_events.RedisEventBus), every event is also published
        # to it, and trades running on other replicas are followed through it.
        self.bus = bus
        self._live: dict[Key, _Channel] = {}
        self._finished: OrderedDict[Key, _Channel] = OrderedDict()
        self._keep_finished = keep_finished
        self._pending: dict[Key, tuple[asyncio.Event, int]] = {}
        self.heartbeat_s = heartbeat_s
        self.slow_consumer_s = slow_consumer_s
        self.metrics = metrics
        self.closing = False
        self._shut_down = asyncio.Event()  # set with closing: wakes streams that follow the shared bus
        self._subscriptions: set[Subscription] = set()
        # Open streams hold memory and a task each until their caller closes them (a session
        # never ends by itself): bounded per caller and in all, as running trades are.
        self.max_open_per_caller, self.max_open_total = max_open_per_caller, max_open_total
        self._open_by_caller: Counter[str] = Counter()
        self._no_streams = asyncio.Event()
        self._no_streams.set()
        self._watchdog: asyncio.Task | None = None
        self._shutdown_callbacks: set[Callable[[], None]] = set()
        self._terminators: dict[asyncio.Task, Callable[[TradewireError], None]] = {}
        self._peak_streams = 0
        self._streams_at_last_look = 0
        self._trim = _malloc_trim()

    # -- channels ------------------------------------------------------------------------

    def open(self, key: Key, events: tuple[pb.ExecutionStatus, ...] = ()) -> None:
        """A trade starts (or resumes after a restart with its stored ``events``)."""
        self._finished.pop(key, None)
        self._live[key] = _Channel(events)
        pending = self._pending.get(key)
        if pending is not None:
            pending[0].set()

    def publish(self, key: Key, event: pb.ExecutionStatus) -> None:
        channel = self._live[key]
        channel.publish(event)
        if self.bus is not None:
            self.bus.publish(key, event)
        if channel.closed:
            del self._live[key]
            self._finished[key] = channel
            while len(self._finished) > self._keep_finished:
                self._finished.popitem(last=False)

    async def latest(self, key: Key) -> pb.ExecutionStatus | None:
        """A trade's last event: this process's, else the shared bus's (a trade running on another
        replica); None when neither has one."""
        channel = self._live.get(key) or self._finished.get(key)
        if channel is not None and channel.events and not self._may_be_outrun(channel):
            return channel.events[-1]
        return None if self.bus is None else await self.bus.latest(key)

    def _may_be_outrun(self, channel: _Channel) -> bool:
        """A finished run here whose end lets its request id run again: with a bus, another
        replica may have run it again since (the shared stream and store then know better)."""
        return self.bus is not None and channel.closed and lifecycle.may_run_again(channel.events[-1].result)

    def _channel(self, key: Key, load_stored: Callable[[], tuple[pb.ExecutionStatus, ...]] | None
                 ) -> _Channel | None:
        """The trade's channel here, but not a finished run the store shows was followed by
        another (run again on another replica): that one is dropped, and the trade followed anew."""
        channel = self._live.get(key) or self._finished.get(key)
        if channel is not None and load_stored is not None and self._may_be_outrun(channel):
            stored = load_stored()
            if not stored or stored[-1] != channel.events[-1]:
                self._finished.pop(key, None)
                return None
        return channel

    def abandon(self, key: Key) -> None:
        """A trade stops here without a terminal event (shutdown): it resumes elsewhere."""
        channel = self._live.pop(key, None)
        if channel is not None:
            channel.wake()

    def running(self) -> int:
        return len(self._live)

    def is_live(self, key: Key) -> bool:
        return key in self._live

    def channel_events(self, key: Key) -> list[pb.ExecutionStatus] | None:
        channel = self._live.get(key) or self._finished.get(key)
        return None if channel is None else channel.events

    async def wait_opened(self, key: Key, timeout: float) -> bool:
        """Wait up to ``timeout`` for a trade to be opened (a subscriber that came first)."""
        if key in self._live or key in self._finished:
            return True
        if timeout <= 0 or self.closing:
            return False
        event, users = self._pending.get(key, (None, 0))
        if event is None:
            event = asyncio.Event()
        self._pending[key] = (event, users + 1)
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            event, users = self._pending[key]
            if users <= 1:
                del self._pending[key]
            else:
                self._pending[key] = (event, users - 1)
        return key in self._live or key in self._finished

    # -- following ----------------------------------------------------------------------

    async def follow(self, key: Key, from_sequence: int, heartbeat_s: float | None = None,
                     load_stored: Callable[[], tuple[pb.ExecutionStatus, ...]] | None = None,
                     subscription: Subscription | None = None) -> AsyncIterator[pb.ExecutionStatus]:
        """Events with sequence >= from_sequence, up to the terminal one.

        A heartbeat (kind HEARTBEAT) is yielded after ``heartbeat_s`` without events; when
        the hub shuts down before the trade ends, one SHUTDOWN message ends the stream.
        Trades no longer in memory are replayed from ``load_stored``. With a
        ``subscription``, the time spent parked at each ``yield`` is tracked for the
        slow-consumer watchdog.
        """
        if subscription is not None:
            subscription.following = True
        events = self._events(key, from_sequence, heartbeat_s, load_stored, subscription is not None)
        try:
            async for event in events:
                if subscription is not None:
                    subscription.parked()
                yield event
                if subscription is not None:
                    subscription.resumed()
        finally:
            await events.aclose()

    async def awaiting(self, key: Key, events: AsyncIterator[pb.ExecutionStatus], heartbeat_s: float | None,
                       subscription: Subscription) -> AsyncIterator[pb.ExecutionStatus]:
        """``events``, a stream that may first wait for its trade to exist (a subscriber that came
        before it; core.trades.TradeRunner.events) and then follows it (:meth:`follow`, with
        ``subscription``), with a heartbeat after each ``heartbeat_s`` of that wait: a stream
        waiting for its trade is kept alive and tells its client the server is there, as one
        following a quiet trade is. Once :meth:`follow` has begun, its own heartbeats take over.
        Whatever ends the wait (the trade's first event, NOT_FOUND, SHUTTING_DOWN) comes as it
        would without the heartbeats.

        The wait runs in a task of its own, beside the heartbeats' timer; the rest of the stream
        in the caller's (so the watchdog and the transports see the task that serves the stream).
        """
        if heartbeat_s is None or key in self._live or key in self._finished:
            # (a trade this hub has is followed at once: no wait, and no task for one)
            try:
                async for event in events:
                    yield event
            finally:
                await events.aclose()
            return
        step: asyncio.Future = asyncio.ensure_future(anext(events))
        try:
            while not subscription.following:
                done, _ = await asyncio.wait((step,), timeout=heartbeat_s)
                if done or subscription.following:
                    break
                beat = lifecycle.heartbeat_event(key[1], None)
                beat.message = "waiting for the trade to start: none with this request id has started yet"
                subscription.parked()
                yield beat
                subscription.resumed()
            try:
                first = await step
            except StopAsyncIteration:
                return
            subscription.parked()  # (again: a heartbeat's resumption may have come after follow's)
            yield first
            async for event in events:
                yield event
        finally:
            if not step.done():
                step.cancel()
            await asyncio.gather(step, return_exceptions=True)  # (its error, if left unread, is read)
            await events.aclose()

    async def _events(self, key: Key, from_sequence: int, heartbeat_s: float | None,
                      load_stored: Callable[[], tuple[pb.ExecutionStatus, ...]] | None, stream: bool
                      ) -> AsyncIterator[pb.ExecutionStatus]:
        channel = self._channel(key, load_stored)
        if channel is None and self.bus is not None:
            stored = load_stored() if load_stored else ()
            if not (stored and stored[-1].terminal):  # not finished: it runs on another replica
                async for event in self._from_bus(key, from_sequence, heartbeat_s, load_stored, stream):
                    yield event
                return
        if channel is None:
            for event in load_stored() if load_stored else ():
                if event.sequence >= from_sequence:
                    yield event
            return
        # Sequences are 1-based and increasing; gap-free but for a trade resumed or ended after
        # its runner stopped without storing what it had published, hence the check per event.
        index = min(max(0, from_sequence - 1), len(channel.events))
        while index and channel.events[index - 1].sequence >= from_sequence:
            index -= 1
        while True:
            waiter = channel.changed
            while index < len(channel.events):
                event = channel.events[index]
                index += 1
                if event.sequence >= from_sequence:
                    yield event
            if channel.closed:
                return
            if self.closing or (self._live.get(key) is not channel):
                # shutting down, or the trade was abandoned here: tell the client where to resume
                yield lifecycle.shutdown_event(key[1], channel.events[-1] if channel.events else None,
                                               left_here=not self.closing)
                return
            try:
                await asyncio.wait_for(waiter.wait(), heartbeat_s)
            except TimeoutError:
                yield lifecycle.heartbeat_event(key[1], channel.events[-1] if channel.events else None)

    async def _from_bus(self, key: Key, from_sequence: int, heartbeat_s: float | None,
                        load_stored: Callable[[], tuple[pb.ExecutionStatus, ...]] | None, stream: bool
                        ) -> AsyncIterator[pb.ExecutionStatus]:
        """A trade running on another replica, from the shared bus; at each quiet spell its
        stored record is looked at too: a replica stopped between storing the trade's end and
        publishing it would leave the stream waiting for good. Heartbeats say where the trade
        is, as for a trade running here, and an open ``stream`` (a subscription's) ends at shutdown
        with one SHUTDOWN message, as it does for a trade running here (a call waiting for the
        trade's end, or a session's follower, is ended by its own call).

        The shared stream is followed from its start (this replica reads it whole anyway) so that a
        heartbeat says where the trade is even while none of the events the client asked for has
        come (a stream resumed past the trade's last one); what it asked to skip is not yielded.
        The SHUTDOWN message's resume point is what the client has: a stored transition it was
        not sent (the shared stream behind the store) must not be skipped by its resumption."""
        next_sequence = max(1, from_sequence)  # the client has every transition before this one
        latest: pb.ExecutionStatus | None = None  # the trade's last transition known here
        events = self.bus.follow(key, 1, heartbeat_s or self.heartbeat_s)
        closing = asyncio.ensure_future(self._shut_down.wait() if stream else asyncio.Future())
        step: asyncio.Future | None = None
        try:
            while True:
                # (the bus knows nothing of the shutdown: it is waited for beside the next event)
                step = asyncio.ensure_future(anext(events))
                await asyncio.wait((step, closing), return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    where = pb.ExecutionStatus(sequence=next_sequence - 1)
                    if latest is not None:
                        where.stage, where.percent_complete = latest.stage, latest.percent_complete
                    yield lifecycle.shutdown_event(key[1], where)
                    return
                try:
                    event = step.result()
                except StopAsyncIteration:
                    return
                if event.kind == pb.STATUS_KIND_HEARTBEAT:
                    stored = load_stored() if load_stored else ()
                    if stored and stored[-1].terminal:
                        for ending in stored:
                            if ending.sequence >= next_sequence:
                                yield ending
                        return
                    if stored and (latest is None or stored[-1].sequence > latest.sequence):
                        latest = stored[-1]
                    event = lifecycle.heartbeat_event(key[1], latest)
                else:
                    if latest is None or event.sequence > latest.sequence:
                        latest = event
                    if event.sequence < next_sequence:
                        continue  # (asked to be skipped)
                    next_sequence = event.sequence + 1
                yield event
        finally:
            closing.cancel()
            if step is not None and not step.done():
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
            await events.aclose()

    # -- open streams: registry, shutdown, slow consumers ---------------------------------

    def subscribe(self, kind: str, caller: str = "") -> Subscription:
        """Register a stream of ``caller`` (RESOURCE_EXHAUSTED TOO_MANY_STREAMS past a limit)."""
        if self.max_open_total is not None and len(self._subscriptions) >= self.max_open_total:
            raise too_many_streams(f"{len(self._subscriptions)} streams are open on this gateway "
                                   f"(limit {self.max_open_total})")
        if caller and self.max_open_per_caller is not None and \
                self._open_by_caller[caller] >= self.max_open_per_caller:
            raise too_many_streams(f"{self._open_by_caller[caller]} streams of this caller are open "
                                   f"(limit {self.max_open_per_caller}): close one first")
        sub = Subscription(kind, caller)
        self._open_by_caller[caller] += 1
        self._subscriptions.add(sub)
        self._no_streams.clear()
        self._peak_streams = max(self._peak_streams, len(self._subscriptions))
        if self.metrics is not None:
            (self.metrics.stream_subscribers if kind == "status" else self.metrics.sessions_open).inc()
        return sub

    def unsubscribe(self, sub: Subscription, reason: str) -> None:
        if sub not in self._subscriptions:
            return
        self._subscriptions.discard(sub)
        self._open_by_caller[sub.caller] -= 1
        if not self._open_by_caller[sub.caller]:
            del self._open_by_caller[sub.caller]
        if not self._subscriptions:
            self._no_streams.set()
        if self.metrics is not None:
            (self.metrics.stream_subscribers if sub.kind == "status" else self.metrics.sessions_open).dec()
            self.metrics.stream_closes.labels(sub.kind, "slow_consumer" if sub.dropped else reason).inc()

    @property
    def open_streams(self) -> int:
        return len(self._subscriptions)

    def shutdown(self) -> None:
        """Every open stream ends: after its trade's events, with a SHUTDOWN message."""
        self.closing = True
        self._shut_down.set()
        for channel in list(self._live.values()):
            channel.wake()
        for event, _ in list(self._pending.values()):
            event.set()
        for callback in list(self._shutdown_callbacks):
            callback()

    def on_shutdown(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Register a wake-up for a stream that does not follow a channel (trade sessions);
        returns the function that unregisters it."""
        self._shutdown_callbacks.add(callback)
        return lambda: self._shutdown_callbacks.discard(callback)

    def on_drop(self, task: asyncio.Task, terminate: Callable[[TradewireError], None]) -> Callable[[], None]:
        """How a transport ends the stream served by ``task`` when the watchdog drops it;
        returns the function that unregisters it."""
        self._terminators[task] = terminate
        return lambda: self._terminators.pop(task, None)

    async def wait_streams_closed(self, timeout: float) -> bool:
        if not self._subscriptions:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._no_streams.wait()
        except TimeoutError:
            return False
        return True

    def drop_all(self) -> int:
        """Cancel the tasks of streams still open (the final step of shutdown)."""
        dropped = 0
        for sub in list(self._subscriptions):
            if sub.task is not None and not sub.task.done():
                sub.task.cancel()
                dropped += 1
        return dropped

    def start(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name="slow-consumer-watchdog")

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        if self.bus is not None:
            await self.bus.close()  # what other replicas follow must reach Redis first

    def sweep(self, now: float | None = None) -> int:
        """Drop the streams parked longer than ``slow_consumer_s``; returns how many."""
        now = time.monotonic() if now is None else now
        dropped = 0
        for sub in list(self._subscriptions):
            since = sub.parked_since
            if since is not None and not sub.dropped and now - since > self.slow_consumer_s:
                sub.dropped = True
                dropped += 1
                log.warning("dropping a slow %s stream: its transport accepted nothing for %.1f s",
                            sub.kind, now - since)
                terminate = self._terminators.pop(sub.task, None) if sub.task is not None else None
                if terminate is not None:
                    terminate(TradewireError(
                        "SLOW_CONSUMER", f"the stream's reader accepted nothing for {now - since:.0f} s and was "
                        "dropped; reconnect (resume a status stream with from_sequence)"))
                if sub.task is not None and not sub.task.done():
                    sub.task.cancel()
        return dropped

    async def _watch(self) -> None:
        period = max(0.05, min(1.0, self.slow_consumer_s / 4))
        while True:
            await asyncio.sleep(period)
            try:
                self.sweep()
                await self.release_memory()
            except Exception:  # the watchdog must outlive any bug in one sweep
                log.exception("slow-consumer sweep failed")

    async def release_memory(self, force: bool = False) -> bool:
        """Return freed heap to the OS once a burst of streams has closed and things are quiet."""
        current = len(self._subscriptions)
        quiet, self._streams_at_last_look = current == self._streams_at_last_look, current
        if self._trim is None or not (force or (quiet and self._peak_streams - current >= TRIM_AFTER_CLOSED)):
            return False
        self._peak_streams = current
        await asyncio.to_thread(self._trim)  # off the loop: it walks the heap
        if self.metrics is not None:
            self.metrics.memory_releases.inc()
        return True
