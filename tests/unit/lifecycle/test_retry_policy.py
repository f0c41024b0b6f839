"""The shared retry policy: bounded, exponential, jittered; what counts as transient."""

import random

import httpx
import pytest

from tradewire.core.config import RetryConfig
from tradewire.core.errors import TradewireError
from tradewire.core.retry import RetryPolicy, TransientError, as_error, transient_reason


def test_delays_grow_exponentially_up_to_the_cap_without_jitter():
    policy = RetryPolicy(max_attempts=6, initial_backoff_s=0.1, max_backoff_s=0.5, multiplier=2, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert [policy.retries_left(n) for n in (1, 5, 6)] == [True, True, False]


def test_jitter_stays_within_its_band_and_varies():
    policy = RetryPolicy(max_attempts=10, initial_backoff_s=1, max_backoff_s=8, jitter=0.2, rng=random.Random(1))
    delays = [policy.delay(3) for _ in range(200)]
    assert all(3.2 <= d <= 4.8 for d in delays)
    assert len(set(delays)) > 100


def test_from_config_and_bad_values():
    policy = RetryPolicy.from_config(RetryConfig(max_attempts=4, initial_backoff_s=0.5))
    assert policy.max_attempts == 4 and policy.initial_backoff_s == 0.5
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize("exc, reason", [
    (TransientError("rpc timed out"), "UPSTREAM_UNAVAILABLE"),
    (TradewireError("UPSTREAM_UNAVAILABLE", "quote API answered 502"), "UPSTREAM_UNAVAILABLE"),
    (httpx.ReadTimeout("slow"), "ReadTimeout"),
    (ConnectionRefusedError(), "ConnectionRefusedError"),
    (TimeoutError(), "TimeoutError"),
    (TradewireError("SLIPPAGE_EXCEEDED", "moved"), None),
    (TradewireError("CIRCUIT_OPEN", "open"), None),  # an open breaker is not retried at once
    (ValueError("bug"), None),
])
def test_what_is_transient(exc, reason):
    assert transient_reason(exc) == reason


def test_what_the_caller_sees_when_retries_run_out():
    assert as_error(httpx.ConnectError("x")).reason == "UPSTREAM_UNAVAILABLE"
    assert as_error(TransientError("rpc", reason="UPSTREAM_UNAVAILABLE")).message == "rpc"
