"""The Redis token bucket agrees with the in-process one and is shared by every client."""

import time
import uuid

import pytest

from tradewire.core.ratelimit import raise_if_limited
from tradewire.core.errors import TradewireError
from tradewire.core.shared.redis_limiter import RedisTokenBucketLimiter


def test_burst_then_refusal_then_refill(redis_server):
    limiter = RedisTokenBucketLimiter(redis_server.client(), "t", rate_per_s=50, burst=3)
    key = uuid.uuid4().hex
    decisions = [limiter.acquire(key) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    refused = decisions[-1]
    assert 0 < refused.retry_after_s <= 1 / 50 + 1e-6
    with pytest.raises(TradewireError) as caught:
        raise_if_limited(refused, key)
    assert caught.value.reason == "RATE_LIMITED"
    time.sleep(refused.retry_after_s)  # the delay under test: waiting it out must be enough
    assert limiter.acquire(key).allowed


def test_peek_takes_nothing(redis_server):
    limiter = RedisTokenBucketLimiter(redis_server.client(), "t", rate_per_s=1, burst=2)
    key = uuid.uuid4().hex
    assert all(limiter.peek(key).allowed for _ in range(10))
    assert limiter.acquire(key).remaining == 1


def test_two_clients_share_one_bucket(redis_server):
    """Two replicas = two connections: the limit holds across both."""
    a = RedisTokenBucketLimiter(redis_server.client(), "shared", rate_per_s=0.01, burst=4)
    b = RedisTokenBucketLimiter(redis_server.client(), "shared", rate_per_s=0.01, burst=4)
    key = uuid.uuid4().hex
    allowed = [limiter.acquire(key).allowed for limiter in (a, b, a, b, a, b)]
    assert allowed == [True, True, True, True, False, False]


def test_idle_buckets_expire(redis_server):
    client = redis_server.client()
    limiter = RedisTokenBucketLimiter(client, "ttl", rate_per_s=1000, burst=2)
    key = uuid.uuid4().hex
    limiter.acquire(key)
    ttl_ms = client.pttl(f"tw:rl:ttl:{key}")
    assert 0 < ttl_ms <= 1000 + 2
