"""Scale-out backends: state shared by several gateway replicas through Redis."""

import redis.asyncio as aredis


# redis-py's own default read timeout, which a client built without ``socket_timeout`` gets
# (its connection_kwargs then do not name it); the gateway gives its clients this one too.
READ_TIMEOUT_S = 5.0


def blocking_read_s(client: aredis.Redis, wanted_s: float) -> float:
    """How long one blocking read (XREAD/BLPOP BLOCK, a pub/sub wait) may block: ``wanted_s``,
    but within half the connection's read timeout — redis-py otherwise fails the read as a
    timeout."""
    kwargs = client.connection_pool.connection_kwargs
    read_timeout = kwargs["socket_timeout"] if "socket_timeout" in kwargs else READ_TIMEOUT_S
    return min(wanted_s, read_timeout / 2) if read_timeout else wanted_s
