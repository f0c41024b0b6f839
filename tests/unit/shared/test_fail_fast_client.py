"""A hung Redis (it accepts connections, never answers) stalls the event loop's store calls once
per cool-down, not once per call: the first call waits its timeout, the next ones fail at once
(STORE_UNAVAILABLE for their callers), and Redis is tried again once the cool-down is over."""

import os
import signal
import time

import pytest
import redis

from support.redis_server import RedisServer
from support.trading import eventually
from tradewire.core.shared import STORE_OUTAGES
from tradewire.core.shared.fail_fast import fail_fast_client


@pytest.fixture
def hung_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    os.kill(server.proc.pid, signal.SIGCONT)
    server.stop()


def timed(call) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except STORE_OUTAGES as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


async def test_a_hung_redis_costs_one_timeout_per_cooldown(hung_redis):
    client = fail_fast_client(hung_redis.url, timeout_s=0.3, cooldown_s=2.0)
    assert client.set("k", "v")
    os.kill(hung_redis.proc.pid, signal.SIGSTOP)

    waited, error = timed(lambda: client.get("k"))
    assert isinstance(error, redis.TimeoutError) and 0.25 <= waited < 1.0  # one timeout, no retries
    for call in (lambda: client.get("k"), lambda: client.pipeline().get("k").get("k").execute(),
                 lambda: client.register_script("return 1")()):
        waited, error = timed(call)
        assert isinstance(error, redis.ConnectionError) and waited < 0.05  # at once, during the cool-down

    os.kill(hung_redis.proc.pid, signal.SIGCONT)
    assert await eventually(lambda: timed(lambda: client.get("k"))[1] is None, timeout=10, what="Redis again")
    assert client.get("k") == b"v"
