"""The synchronous Redis client the event loop calls: bounded, and quick to give up.

Store calls run on the event loop, so while Redis does not answer every call blocks the loop
for its whole timeout — one after another, the replica freezes (a hung Redis, unlike a
stopped one, accepts connections and never answers). Here a call waits at most
``timeout_s``, and once one has failed every call fails at once (redis.ConnectionError, i.e.
STORE_UNAVAILABLE for the caller) for ``cooldown_s``; then the next call tries Redis again.
The replica then stalls at most once per cool-down, and serves everything else meanwhile.
"""

from __future__ import annotations

import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


class CoolingDown(redis.ConnectionError):
    """Not sent: Redis did not answer a moment ago."""


class Cooldown:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.until = 0.0

    def check(self) -> None:
        if time.monotonic() < self.until:
            raise CoolingDown("Redis did not answer a moment ago; not waiting for it again yet")

    def trip(self) -> None:
        self.until = time.monotonic() + self.seconds


def fail_fast_client(url: str, timeout_s: float, cooldown_s: float) -> redis.Redis:
    """A redis.Redis for ``url`` whose connections trip one shared cool-down when Redis does not
    answer (any command: plain calls, scripts and pipelines alike)."""
    cooldown = Cooldown(cooldown_s)
    # No retries either (redis-py retries three times by default, each waiting its timeout).
    pool = redis.ConnectionPool.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                         retry=Retry(NoBackoff(), 0))
    base = pool.connection_class  # TCP, TLS or unix socket, as the URL says

    class Connection(base):  # type: ignore[valid-type, misc]
        def connect(self, *args, **kwargs):
            cooldown.check()
            return _tripping(cooldown, super().connect, *args, **kwargs)

        def send_packed_command(self, *args, **kwargs):
            cooldown.check()
            return _tripping(cooldown, super().send_packed_command, *args, **kwargs)

        def read_response(self, *args, **kwargs):
            return _tripping(cooldown, super().read_response, *args, **kwargs)

    pool.connection_class = Connection
    return redis.Redis(connection_pool=pool)


def _tripping(cooldown: Cooldown, call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except CoolingDown:
        raise
    except (redis.ConnectionError, redis.TimeoutError):
        cooldown.trip()
        raise
