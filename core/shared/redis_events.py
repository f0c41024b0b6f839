"""Trade status events through Redis Streams, so a stream on one replica can follow a trade
running on another.

Each trade has one stream (``tw:events:{principal}:{request_id}``) whose entries carry the
serialized ExecutionStatus; the entry id is ``0-{sequence}`` so resuming from a sequence is
an XREAD from the previous id, gap-free and in order. Following is a blocking XREAD on an
asyncio connection.

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
from collections.abc import AsyncIterator

import redis
import redis.asyncio as aredis

from tradewire.core.retry import RetryPolicy
from tradewire.core.shared import blocking_read_s, per_trade
from tradewire.v1 import trade_pb2 as pb

Key = tuple[str, str]
log = logging.getLogger("tradewire.shared")

# (stream key, entry id, serialized event, terminal)
_Entry = tuple[str, str, bytes, bool]
# What Redis answers when an XADD's explicit id is not above the stream's last: already sent.
_ALREADY_THERE = "equal or smaller"
_RECONNECT = RetryPolicy(max_attempts=1_000_000, initial_backoff_s=0.05, max_backoff_s=2.0)
_ENTRIES_PER_CALL = 500  # a backlog after an outage goes in several calls: Redis is not held long

# A stream whose trade never publishes its end (lost to a Redis that restarted empty, whose
# runner re-sends what it had queued) still expires: this long after its last event.
_UNFINISHED_KEPT_S = 86_400

# KEYS: one stream per entry; ARGV: retain_s, the unfinished streams' expiry, then (entry id,
# event, "1" if terminal) per entry. An entry already there is skipped (a re-send after a reply
# that was lost); any other error ends the call, and the sender sends the batch again after a
# backoff. A terminal entry sets the stream's expiry to retain_s, any other one added pushes it
# to the unfinished streams' (a skipped one leaves it as it is).
_APPEND = """
for i, stream in ipairs(KEYS) do
  local at = 3 + (i - 1) * 3
  local added = redis.pcall('XADD', stream, ARGV[at], 'e', ARGV[at + 1])
  local skipped = type(added) == 'table' and added.err
  if skipped and not string.find(added.err, '%s', 1, true) then
    return added
  end
  if ARGV[at + 2] == '1' then
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

    def publish(self, key: Key, event: pb.ExecutionStatus) -> None:
        """Queue ``event`` for its trade's stream (sent within one loop pass)."""
        self._queue.append((events_stream_key(*key), f"0-{event.sequence}", event.SerializeToString(), event.terminal))
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
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
            self._sender = None

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
        for _, entry_id, raw, terminal in entries:
            args += (entry_id, raw, "1" if terminal else "0")
        await self._append(keys=[stream for stream, *_ in entries], args=args)

    async def latest(self, key: Key) -> pb.ExecutionStatus | None:
        """The last event in the trade's stream (None when it has none)."""
        entries = await self._ar.xrevrange(events_stream_key(*key), count=1)
        return pb.ExecutionStatus.FromString(entries[0][1][b"e"]) if entries else None

    async def follow(self, key: Key, from_sequence: int, heartbeat_s: float | None) -> AsyncIterator[pb.ExecutionStatus]:
        """Events with sequence >= from_sequence up to the terminal one; heartbeats while idle."""
        last = f"0-{max(0, from_sequence - 1)}"
        heartbeat_s = heartbeat_s or 15.0
        block_s = blocking_read_s(self._ar, heartbeat_s)  # shorter reads; a heartbeat when idle long enough
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while True:
            answer = await self._ar.xread({events_stream_key(*key): last}, count=100, block=max(1, int(block_s * 1000)))
            if not answer:
                if loop.time() - idle_since >= heartbeat_s:
                    idle_since = loop.time()
                    yield pb.ExecutionStatus(request_id=key[1], kind=pb.STATUS_KIND_HEARTBEAT)
                continue
            idle_since = loop.time()
            for entry_id, fields in answer[0][1]:
                last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                event = pb.ExecutionStatus.FromString(fields[b"e"])
                yield event
                if event.terminal:
                    return
