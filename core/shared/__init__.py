"""Scale-out backends: state shared by several gateway replicas through Redis."""

import asyncio
import logging
import sys
from collections.abc import Callable

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from tradewire.core.outage import Outage

# What redis-py raises when Redis does not answer: callers get UNAVAILABLE STORE_UNAVAILABLE
# (retryable), and a trade caught by one ends once Redis is back.
STORE_OUTAGES: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)


def per_trade(principal_id: str, request_id: str) -> str:
    """The part of a key that names one trade: ``{principal}:{request id}``, the request id's
    colons written ``%3A``. Both may hold ':' (jwt:alice, bot:t1): as they were, principal
    ``alice`` with request id ``bot:t1`` and ``alice:bot`` with ``t1`` shared a key — one caller
    read, and claimed, another's trades. With none in its request id, a key splits at its last
    colon. (The adoption and history scripts in redis_store.py write it the same way.)"""
    return f"{principal_id}:{request_id.replace(':', '%3A')}"


def log_failure(logger: logging.Logger, message: str, *args) -> None:
    """Log the exception being handled: Redis not answering as one warning line (expected, and
    its traceback says nothing more), anything else as an error with its traceback."""
    exc = sys.exc_info()[1]
    if isinstance(exc, STORE_OUTAGES):
        logger.warning(message + ": the shared store did not answer (%s: %s)", *args, type(exc).__name__, exc)
    else:
        logger.exception(message, *args)


def count_failure(outage: Outage, logger: logging.Logger, message: str, *args) -> None:
    """The exception being handled, in a loop that retries: Redis not answering counts toward
    ``outage`` (said when it starts and ends, not per attempt), anything else is an error with
    its traceback."""
    exc = sys.exc_info()[1]
    if isinstance(exc, STORE_OUTAGES):
        outage.failed(exc)
    else:
        logger.exception(message, *args)


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


def streaming_client(url: str) -> aredis.Redis:
    """The asyncio client (status streams, remote cancels). A pooled connection Redis closed
    (it restarted) fails its next command however long Redis has been back: such a failure is
    sent again once, on a new connection. Timeouts are not (the call already waited its time)."""
    return aredis.Redis.from_url(url, socket_timeout=READ_TIMEOUT_S,
                                 retry=AsyncRetry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))


def not_answering(exc: Exception) -> str:
    """What a command or a start-up says when Redis does not answer (redis-py's message names
    host and port, never the password)."""
    return f"the shared store ([shared] redis_url) does not answer: {exc}"


def store_location(client: redis.Redis) -> str:
    """Which Redis a client talks to, without credentials: host:port/db, or its socket's path."""
    kwargs = client.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return f"{where}/{kwargs.get('db', 0)}"


def command_client(url: str) -> redis.Redis:
    """A client for one administration command (tradewire keys, kill-switch): waits at most
    5 s for Redis."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


async def keep_renewed(lease_s: float, renew: Callable[[], object], outage: Outage, logger: logging.Logger,
                       failure: str) -> None:
    """Call ``renew()`` every lease/3 until cancelled (a third: two renewals may fail before a
    lease lapses); Redis not answering counts toward ``outage``, anything else is logged."""
    while True:
        await asyncio.sleep(lease_s / 3)
        try:
            renew()
            outage.answered()
        except Exception:  # keep renewing: Redis may be back by the next period
            count_failure(outage, logger, failure)
