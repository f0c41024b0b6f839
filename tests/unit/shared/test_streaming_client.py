"""The asyncio Redis client (status streams, remote cancels) survives a Redis restart: the
connections it pooled before are closed by then, and the first command on each is sent again on
a new one instead of failing a caller's stream with STORE_UNAVAILABLE."""

import asyncio

from support.redis_server import RedisServer
from tradewire.core.shared import streaming_client


async def test_the_first_commands_after_a_redis_restart_succeed(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    client = streaming_client(server.url)
    try:
        await client.xadd("s", {"e": "1"})
        # three connections in the pool, each left open when its read ends
        await asyncio.gather(*(client.xread({"s": "0-0"}, block=50) for _ in range(3)))
        assert len(client.connection_pool._available_connections) == 3

        server.halt(keep_data=True)
        server.start()

        reads = await asyncio.gather(*(client.xread({"s": "0-0"}, block=50) for _ in range(3)))
        assert [len(entries) for (_, entries), in reads] == [1, 1, 1]
    finally:
        await client.aclose()
        server.stop()
