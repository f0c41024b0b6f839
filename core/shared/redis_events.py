"""Trade status events through Redis Streams, so a stream on one replica can follow a trade
running on another.

Each trade has one stream (``tw:events:{principal}:{request_id}``) whose entries carry the
serialized ExecutionStatus; the entry id is ``0-{sequence}`` so resuming from a sequence is
an XREAD from the previous id, gap-free and in order.

Following: one reader task per replica reads every stream its followers want in one blocking
XREAD, on one connection, into a feed per trade that all of that trade's followers share (as
the status hub shares a trade's events in memory). A blocking read per follower held a pooled
connection each: past the asyncio pool's 100, streams were refused STORE_UNAVAILABLE, and the
event sender and remote cancels shared the exhausted pool. A new trade to follow wakes the
read through this replica's wake stream.

Publishing never waits on Redis: :meth:`RedisEventBus.publish` queues the event and one
sender task writes everything queued since its last pass in one script call on the asyncio
connection — a share of one non-blocking round trip per loop pass for a trade's nine
transitions, in order (one sender). A script rather than a pipeline of XADDs: packing and
parsing one command per event cost the event loop ~0.45 ms per paper trade (bench/PROFILE.md).
While Redis is unreachable the sender keeps the queue and retries with backoff; re-sending an
entry that did land is harmless (its id already exists). Streams expire a while after their
trade ends (and a day after the last event of one whose end never came).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator

import redis
import redis.asyncio as aredis

from tradewire.core.retry import RetryPolicy
from tradewire.core.shared import blocking_read_s, per_trade
from tradewire.v1 import trade_pb2 as pb

Key = tuple[str, str]
log = logging.getLogger("tradewire.shared")

# (stream key, entry id, serialized event, terminal, run: see _APPEND)
_Entry = tuple[str, str, bytes, bool, str]
# What Redis answers when an XADD's explicit id is not above the stream's last: already sent.
_ALREADY_THERE = "equal or smaller"
_RECONNECT = RetryPolicy(max_attempts=1_000_000, initial_backoff_s=0.05, max_backoff_s=2.0)
_ENTRIES_PER_CALL = 500  # a backlog after an outage goes in several calls: Redis is not held long

# A stream whose trade never publishes its end (lost to a Redis that restarted empty, whose
# runner re-sends what it had queued) still expires: this long after its last event.
_UNFINISHED_KEPT_S = 86_400
_RUNS_KEPT = 100_000  # trades whose run this replica remembers while it publishes them
# The longest a read blocks (a wake ends it sooner): it sees that nothing is followed any more.
_READ_BLOCK_S = 10.0

# KEYS: one stream per entry; ARGV: retain_s, the unfinished streams' expiry, then (entry id,
# event, "1" if terminal, run) per entry. An entry already there is skipped (a re-send after a
# reply that was lost); any other error ends the call, and the sender sends the batch again
# after a backoff. A terminal entry sets the stream's expiry to retain_s, any other one added
# pushes it to the unfinished streams' (a skipped one leaves it as it is).
#
# A request id that runs again is a new trade numbered from 1, and its claim drops the stream;
# but the earlier run's last events may land after that claim (queued, in flight, or from a
# replica whose sender is behind): left there, that run's end stayed the stream's, and the new
# run's events with the same numbers were skipped as "already there". So each entry carries
# its run: the time of the run's first event (sequence 1: only a fresh claim starts there, a
# resumed trade goes on after its numbers), 20 digits, or '' when its publisher did not see it
# (a resumed trade: it belongs to whatever run the stream holds). A run's first event replaces
# the stream, unless the stream holds a later run; any other entry of a run the stream does not
# hold (the stream's first entry says which it holds) is an earlier run's, and skipped.
_APPEND = """
for i, stream in ipairs(KEYS) do
  local at = 3 + (i - 1) * 4
  local id, run = ARGV[at], ARGV[at + 3]
  local first = redis.call('XRANGE', stream, '0-1', '0-1')[1]
  local holds = first and (first[2][4] or '')
  local stale = false
  if id == '0-1' then
    stale = holds and holds > run
    if not stale and holds ~= run then redis.call('DEL', stream) end
  elseif run ~= '' then
    stale = holds ~= run
  end
  local added = stale or redis.pcall('XADD', stream, id, 'e', ARGV[at + 1], 'r', run)
  local skipped = stale or (type(added) == 'table' and added.err)
  if type(skipped) == 'string' and not string.find(skipped, '%s', 1, true) then
    return added
  end
  if ARGV[at + 2] == '1' and not stale then
    redis.call('EXPIRE', stream, ARGV[1])
  elseif not skipped then
    redis.call('EXPIRE', stream, ARGV[2])
  end
end
return #KEYS
""" % _ALREADY_THERE


def events_stream_key(principal_id: str, request_id: str) -> str:
    return f"tw:events:{per_trade(principal_id, request_id)}"


class RedisEventBus:
    def __init__(self, async_client: aredis.Redis, retain_s: int = 3600) -> None:
        self._ar = async_client
        self._append = async_client.register_script(_APPEND)
        self.retain_s = retain_s
        self._queue: list[_Entry] = []
        self._queued = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sender: asyncio.Task | None = None
        self._runs: OrderedDict[str, str] = OrderedDict()  # by stream key: the run this replica publishes
        self._feeds: dict[str, _Feed] = {}  # by stream key: the trades followed here
        self._reader: asyncio.Task | None = None
        self._waking = False  # a wake is on its way to the reader's current read
        self._wake = f"tw:events-wake:{uuid.uuid4().hex}"  # an entry here ends the reader's wait

    def publish(self, key: Key, event: pb.ExecutionStatus) -> None:
        """Queue ``event`` for its trade's stream (sent within one loop pass)."""
        stream = events_stream_key(*key)
        if event.sequence == 1:  # a new run (see _APPEND)
            self._runs[stream] = f"{event.timestamp.ToNanoseconds():020d}"
            while len(self._runs) > _RUNS_KEPT:  # (runs abandoned here never publish their end)
                self._runs.popitem(last=False)
        run = self._runs.pop(stream, "") if event.terminal else self._runs.get(stream, "")
        self._queue.append((stream, f"0-{event.sequence}", event.SerializeToString(), event.terminal, run))
        self._idle.clear()
        self._queued.set()
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_forever(), name="redis-event-sender")

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is in Redis; False if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout``), then stop the sender."""
        if not await self.flush(timeout):
            log.warning("%d status events not published to Redis at shutdown", len(self._queue))
        for task in (self._sender, self._reader):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._sender = self._reader = None

    async def _send_forever(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            batch, self._queue = self._queue, []
            try:
                await self._send(batch)
            except Exception:  # not Redis being away (that is retried): never stop publishing for good
                log.exception("dropped %d status events that could not be published to Redis", len(batch))
            if not self._queue:
                self._idle.set()

    async def _send(self, batch: list[_Entry]) -> None:
        failures = 0
        while True:
            try:
                for start in range(0, len(batch), _ENTRIES_PER_CALL):
                    await self._append_entries(batch[start:start + _ENTRIES_PER_CALL])
                if failures:
                    log.warning("status events reach Redis again after %d failed attempts", failures)
                return
            except (redis.RedisError, OSError) as exc:
                failures += 1
                if failures == 1:
                    log.warning("cannot publish %d status events to Redis (%s); retrying", len(batch), exc)
                await asyncio.sleep(_RECONNECT.delay(failures))  # backoff while Redis is away

    async def _append_entries(self, entries: list[_Entry]) -> None:
        args: list[str | bytes | int] = [self.retain_s, max(self.retain_s, _UNFINISHED_KEPT_S)]
        for _, entry_id, raw, terminal, run in entries:
            args += (entry_id, raw, "1" if terminal else "0", run)
        await self._append(keys=[stream for stream, *_ in entries], args=args)

    async def latest(self, key: Key) -> pb.ExecutionStatus | None:
        """The last event in the trade's stream (None when it has none)."""
        entries = await self._ar.xrevrange(events_stream_key(*key), count=1)
        return pb.ExecutionStatus.FromString(entries[0][1][b"e"]) if entries else None

    async def follow(self, key: Key, from_sequence: int, heartbeat_s: float | None) -> AsyncIterator[pb.ExecutionStatus]:
        """Events with sequence >= from_sequence up to the terminal one; heartbeats while idle."""
        heartbeat_s = heartbeat_s or 15.0
        feed = await self._feed(events_stream_key(*key))
        feed.followers += 1
        index = 0
        try:
            while True:
                changed = feed.changed
                while index < len(feed.events):
                    event = feed.events[index]
                    index += 1
                    if event.sequence >= from_sequence:
                        yield event
                        if event.terminal:
                            return
                try:
                    await asyncio.wait_for(changed.wait(), heartbeat_s)
                except TimeoutError:
                    yield pb.ExecutionStatus(request_id=key[1], kind=pb.STATUS_KIND_HEARTBEAT)
        finally:
            feed.followers -= 1
            if not feed.followers and self._feeds.get(feed.stream) is feed:
                del self._feeds[feed.stream]  # (the reader leaves it out from its next read)

    async def _feed(self, stream: str) -> _Feed:
        """The feed of ``stream``, shared by its followers; a new one is read from its start. One
        that saw its trade's end is not joined: the request id may run again (a new stream)."""
        feed = self._feeds.get(stream)
        if feed is not None and not feed.ended:
            return feed
        feed = self._feeds[stream] = _Feed(stream)
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_forever(), name="redis-event-reader")
        elif not self._waking:  # the reader may be blocked in a read without this stream: wake it (once)
            self._waking = True
            try:
                async with self._ar.pipeline(transaction=False) as wake:
                    await wake.xadd(self._wake, {"w": "1"}, maxlen=1, approximate=False).expire(
                        self._wake, _UNFINISHED_KEPT_S).execute()
            except BaseException:
                self._waking = False
                if self._feeds.get(stream) is feed and not feed.followers:
                    del self._feeds[stream]
                raise
        return feed

    async def _read_forever(self) -> None:
        """Read every followed stream in one blocking XREAD, until none is followed."""
        block_ms = max(1, int(blocking_read_s(self._ar, _READ_BLOCK_S) * 1000))
        woken = "0-0"  # the wake stream's last entry read
        failures = 0
        while True:
            feeds = {stream: feed for stream, feed in self._feeds.items() if not feed.ended}
            if not feeds:  # (checked and left in one step: a feed added after this starts a new reader)
                self._reader = None
                return
            self._waking = False  # this read has every feed added so far
            try:
                answer = await self._ar.xread({self._wake: woken, **{s: f.last_id for s, f in feeds.items()}},
                                              count=100, block=block_ms)
            except (redis.RedisError, OSError) as exc:  # Redis away: the followers get heartbeats meanwhile
                failures += 1
                if failures == 1:
                    log.warning("cannot read status events from Redis (%s); retrying", exc)
                await asyncio.sleep(_RECONNECT.delay(failures))
                continue
            failures = 0
            for name, entries in answer or ():
                stream = _text(name)
                if stream == self._wake:
                    woken = _text(entries[-1][0])
                elif stream in feeds:
                    feeds[stream].add(entries)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class _Feed:
    """One trade's stream as this replica reads it: its events so far, shared by its followers."""

    __slots__ = ("stream", "events", "last_id", "ended", "followers", "changed")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.events: list[pb.ExecutionStatus] = []
        self.last_id = "0-0"
        self.ended = False  # its trade's end was read
        self.followers = 0
        self.changed = asyncio.Event()  # set when the next entries arrive

    def add(self, entries) -> None:
        for entry_id, fields in entries:
            self.last_id = _text(entry_id)
            event = pb.ExecutionStatus.FromString(fields[b"e"])
            self.events.append(event)
            self.ended = self.ended or event.terminal
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()
