"""Token buckets with an injected clock; the RateLimits composition; RATE_LIMITED errors."""

from __future__ import annotations

import pytest
from support.auth_material import FakeClock
from google.rpc import error_details_pb2

from tradewire.core.errors import Code, TradewireError
from tradewire.core.ratelimit import (
    RateDecision,
    RateLimitConfig,
    RateLimiter,
    RateLimits,
    TokenBucketLimiter,
    raise_if_limited,
)


def test_burst_then_refusal_then_retry_after_allows(fake_clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=3, burst=5, clock=fake_clock)
    remaining = [limiter.acquire("alice").remaining for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]
    refused = limiter.acquire("alice")
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after_s == pytest.approx(1 / 3)
    assert refused.reset_after_s == pytest.approx(5 / 3)
    fake_clock.advance(refused.retry_after_s * 0.99)
    assert not limiter.acquire("alice").allowed  # not yet
    fake_clock.advance(refused.retry_after_s * 0.01)
    assert limiter.acquire("alice").allowed  # exactly when promised
    assert not limiter.acquire("alice").allowed


def test_keys_are_independent(fake_clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(1, 1, fake_clock)
    assert limiter.acquire("a").allowed
    assert not limiter.acquire("a").allowed
    assert limiter.acquire("b").allowed


def test_refusals_cost_nothing_and_peek_takes_nothing(fake_clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1, burst=2, clock=fake_clock)
    limiter.acquire("k")
    limiter.acquire("k")
    fake_clock.advance(0.5)  # half a token: refusals must not throw it away
    for _ in range(10):
        assert not limiter.acquire("k").allowed
    fake_clock.advance(0.5)
    peeked = limiter.peek("k")
    assert peeked.allowed and peeked.remaining == 0
    assert limiter.peek("k").allowed
    assert limiter.acquire("k").allowed
    assert not limiter.acquire("k").allowed


def test_cost(fake_clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=2, burst=10, clock=fake_clock)
    assert limiter.acquire("k", cost=8).remaining == 2
    refused = limiter.acquire("k", cost=4)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(1.0)
    with pytest.raises(ValueError):
        limiter.acquire("k", cost=11)
    with pytest.raises(ValueError):
        limiter.acquire("k", cost=0)


def test_idle_buckets_are_evicted(fake_clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=10, burst=20, clock=fake_clock)
    for i in range(1000):
        limiter.acquire(f"peer-{i}")
    assert len(limiter) == 1000
    fake_clock.advance(0.05)  # 0.5 token refilled: none full yet
    limiter.acquire("one-more")
    assert len(limiter) == 1001
    fake_clock.advance(0.1)  # every 1-token deficit refilled: all full, all dropped
    limiter.acquire("last")
    assert len(limiter) == 1


def test_evicted_bucket_behaves_like_the_full_one(fake_clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=1, burst=3, clock=fake_clock)
    for _ in range(3):
        limiter.acquire("a")
    fake_clock.advance(10)
    limiter.acquire("b")  # sweeps "a"
    assert len(limiter) == 1
    assert [limiter.acquire("a").allowed for _ in range(4)] == [True, True, True, False]


def test_hard_cap_bounds_memory_under_a_flood(fake_clock: FakeClock) -> None:
    limiter = TokenBucketLimiter(rate_per_s=0.001, burst=2, clock=fake_clock, max_keys=50)
    for i in range(10_000):
        limiter.acquire(f"spoofed-{i}")
    assert len(limiter) == 50


def test_decision_headers() -> None:
    refused = RateDecision(allowed=False, limit=5, remaining=0, retry_after_s=0.2, reset_after_s=1.4)
    assert refused.headers() == {
        "ratelimit-limit": "5",
        "ratelimit-remaining": "0",
        "ratelimit-reset": "2",
        "retry-after": "1",
    }
    assert "retry-after" not in RateDecision(True, 5, 4, 0.0, 0.2).headers()


def test_raise_if_limited() -> None:
    raise_if_limited(RateDecision(True, 5, 4, 0.0, 0.2), "principal:alice")  # no-op
    with pytest.raises(TradewireError) as caught:
        raise_if_limited(RateDecision(False, 5, 0, 0.2501, 1.0), "principal:alice")
    err = caught.value
    assert err.reason == "RATE_LIMITED" and err.code is Code.RESOURCE_EXHAUSTED
    assert err.retry_after_s == 0.251  # rounded up, never down
    assert err.quota_violations[0].subject == "principal:alice"
    kinds = {d.TypeName() for d in err.details()}
    assert {"google.rpc.RetryInfo", "google.rpc.QuotaFailure", "google.rpc.ErrorInfo"} <= kinds
    retry = error_details_pb2.RetryInfo()
    next(d for d in err.details() if d.TypeName() == "google.rpc.RetryInfo").Unpack(retry)
    assert retry.retry_delay.ToNanoseconds() == 251_000_000


def test_protocol() -> None:
    assert isinstance(TokenBucketLimiter(1, 1), RateLimiter)


# -- composition ---------------------------------------------------------------------------


@pytest.fixture
def limits(fake_clock: FakeClock) -> RateLimits:
    config = RateLimitConfig(
        principal_rate_per_s=1,
        principal_burst=10,
        live_rate_per_s=0.5,
        live_burst=2,
        stream_rate_per_s=1,
        stream_burst=3,
        auth_failure_rate_per_s=0.1,
        auth_failure_burst=3,
    )
    return RateLimits(config, clock=fake_clock)


def _reason(call) -> str | None:
    try:
        call()
    except TradewireError as exc:
        return exc.reason
    return None


def test_live_bucket_is_stricter_and_refusal_spends_nothing(limits: RateLimits) -> None:
    assert limits.check_call("alice", "ExecuteTrade", "LIVE").remaining == 1  # the tighter of 9 and 1
    limits.check_call("alice", "ExecuteTrade", "LIVE")
    with pytest.raises(TradewireError) as caught:
        limits.check_call("alice", "ExecuteTrade", "LIVE")
    assert caught.value.quota_violations[0].subject == "live:alice"
    assert caught.value.retry_after_s == pytest.approx(2.0)
    # PAPER still flows, and the refused LIVE call did not spend a principal token
    assert limits.check_call("alice", "ExecuteTrade", "PAPER").remaining == 7
    assert _reason(lambda: limits.check_call("bob", "ExecuteTrade", "LIVE")) is None


def test_principal_refusal_does_not_spend_live_tokens(limits: RateLimits) -> None:
    for _ in range(10):
        limits.check_call("alice", "GetTrade")
    assert _reason(lambda: limits.check_call("alice", "ExecuteTrade", "LIVE")) == "RATE_LIMITED"
    assert limits.live.peek("live:alice").remaining == 1  # 2 - 1 (peek), untouched


def test_streams_have_their_own_bucket(limits: RateLimits) -> None:
    for _ in range(3):
        limits.check_call("alice", "StreamExecutionStatus")
    assert _reason(lambda: limits.check_call("alice", "TradeSession")) == "RATE_LIMITED"
    assert limits.check_call("alice", "GetTrade").remaining == 9  # unary bucket untouched


def test_auth_failures_per_peer(limits: RateLimits, fake_clock: FakeClock) -> None:
    for _ in range(3):
        limits.check_peer("10.0.0.1:5555")
        limits.record_auth_failure("10.0.0.1:5555")
    with pytest.raises(TradewireError) as caught:
        limits.check_peer("10.0.0.1:5555")
    assert caught.value.reason == "RATE_LIMITED"
    assert caught.value.retry_after_s == pytest.approx(10.0)
    limits.check_peer("10.0.0.2:5555")  # other peers unaffected
    fake_clock.advance(10)
    limits.check_peer("10.0.0.1:5555")


def test_config_from_mapping() -> None:
    assert RateLimitConfig.from_mapping({"live_burst": 1}).live_burst == 1
    with pytest.raises(ValueError):
        RateLimitConfig.from_mapping({"live_brust": 1})
