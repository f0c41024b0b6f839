"""In-process fan-out of trade status events.

Each running trade has one append-only event list shared by all its subscribers; a
subscriber is only an index into that list plus a wait on the next publish. So any number
of subscribers, joining at any moment, see every event once and in order, and a slow one
costs no memory of its own. Finished trades are kept for a while (LRU), then served from
the store.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

from tradewire.v1 import trade_pb2 as pb

Key = tuple[str, str]  # (principal id, request id)


class _Channel:
    __slots__ = ("events", "changed", "closed")

    def __init__(self) -> None:
        self.events: list[pb.ExecutionStatus] = []
        self.changed = asyncio.Event()
        self.closed = False

    def publish(self, event: pb.ExecutionStatus) -> None:
        self.events.append(event)
        self.closed = self.closed or event.terminal
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()  # wake everyone waiting for this publish; later waits use the new event


class StatusHub:
    def __init__(self, keep_finished: int = 10_000) -> None:
        self._live: dict[Key, _Channel] = {}
        self._finished: OrderedDict[Key, _Channel] = OrderedDict()
        self._keep_finished = keep_finished

    def open(self, key: Key) -> None:
        self._live[key] = _Channel()

    def publish(self, key: Key, event: pb.ExecutionStatus) -> None:
        channel = self._live[key]
        channel.publish(event)
        if channel.closed:
            del self._live[key]
            self._finished[key] = channel
            while len(self._finished) > self._keep_finished:
                self._finished.popitem(last=False)

    def running(self) -> int:
        return len(self._live)

    def channel_events(self, key: Key) -> list[pb.ExecutionStatus] | None:
        channel = self._live.get(key) or self._finished.get(key)
        return None if channel is None else channel.events

    async def follow(self, key: Key, from_sequence: int, heartbeat_s: float | None = None,
                     load_stored: Callable[[], tuple[pb.ExecutionStatus, ...]] | None = None,
                     ) -> AsyncIterator[pb.ExecutionStatus]:
        """Events with sequence >= from_sequence, up to the terminal one.

        A heartbeat (kind HEARTBEAT) is yielded after ``heartbeat_s`` without events.
        Trades no longer in memory are replayed from ``load_stored``.
        """
        channel = self._live.get(key) or self._finished.get(key)
        if channel is None:
            for event in load_stored() if load_stored else ():
                if event.sequence >= from_sequence:
                    yield event
            return
        index = max(0, from_sequence - 1)  # sequences are 1-based and gap-free
        while True:
            waiter = channel.changed
            while index < len(channel.events):
                event = channel.events[index]
                index += 1
                yield event
            if channel.closed:
                return
            try:
                await asyncio.wait_for(waiter.wait(), heartbeat_s)
            except TimeoutError:
                yield pb.ExecutionStatus(request_id=key[1], kind=pb.STATUS_KIND_HEARTBEAT)
