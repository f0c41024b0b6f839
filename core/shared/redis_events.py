"""Trade status events through Redis Streams, so a stream on one replica can follow a trade
running on another.

Each trade has one stream (``tw:events:{principal}:{request_id}``) whose entries carry the
serialized ExecutionStatus; the entry id is ``0-{sequence}`` so resuming from a sequence is
an XREAD from the previous id, gap-free and in order. Publishing is one XADD on the trade's
own replica; following is a blocking XREAD on an asyncio connection, so no replica's event
loop ever waits on Redis. Streams expire a while after their trade ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis
import redis.asyncio as aredis

from tradewire.v1 import trade_pb2 as pb

Key = tuple[str, str]


class RedisEventBus:
    def __init__(self, client: redis.Redis, async_client: aredis.Redis, retain_s: int = 3600) -> None:
        self._r = client
        self._ar = async_client
        self.retain_s = retain_s

    @staticmethod
    def _stream(key: Key) -> str:
        return f"tw:events:{key[0]}:{key[1]}"

    def publish(self, key: Key, event: pb.ExecutionStatus) -> None:
        stream = self._stream(key)
        pipe = self._r.pipeline(transaction=False)
        pipe.xadd(stream, {"e": event.SerializeToString()}, id=f"0-{event.sequence}")
        if event.terminal:
            pipe.expire(stream, self.retain_s)
        pipe.execute()

    def exists(self, key: Key) -> bool:
        return bool(self._r.exists(self._stream(key)))

    async def follow(self, key: Key, from_sequence: int, heartbeat_s: float | None) -> AsyncIterator[pb.ExecutionStatus]:
        """Events with sequence >= from_sequence up to the terminal one; heartbeats while idle."""
        last = f"0-{max(0, from_sequence - 1)}"
        block_ms = int((heartbeat_s or 15.0) * 1000)
        while True:
            answer = await self._ar.xread({self._stream(key): last}, count=100, block=block_ms)
            if not answer:
                yield pb.ExecutionStatus(request_id=key[1], kind=pb.STATUS_KIND_HEARTBEAT)
                continue
            for entry_id, fields in answer[0][1]:
                last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                event = pb.ExecutionStatus.FromString(fields[b"e"])
                yield event
                if event.terminal:
                    return

    async def close(self) -> None:
        await self._ar.aclose()
