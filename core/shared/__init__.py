"""Scale-out backends: state shared by several gateway replicas through Redis."""

import redis.asyncio as aredis


def blocking_read_s(client: aredis.Redis, wanted_s: float) -> float:
    """How long one blocking read (XREAD/BLPOP BLOCK, a pub/sub wait) may block: ``wanted_s``,
    but within half the connection's read timeout — redis-py (5 s by default) otherwise fails
    the read as a timeout."""
    read_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    return min(wanted_s, read_timeout / 2) if read_timeout else wanted_s
