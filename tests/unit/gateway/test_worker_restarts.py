"""How long the supervisor waits before restarting a worker that died (gateway/workers.py)."""

from __future__ import annotations

from tradewire.core.retry import RetryPolicy
from tradewire.gateway.workers import SETTLED_S, _Restarts


def restarts() -> _Restarts:
    return _Restarts(RetryPolicy(max_attempts=5, initial_backoff_s=0.5, max_backoff_s=10.0, jitter=0.0))


def test_a_crash_loop_backs_off_to_the_longest_delay():
    backoff = restarts()
    assert [backoff.delay_after(1.0) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_worker_that_ran_settled_starts_the_backoff_again():
    backoff = restarts()
    for _ in range(6):
        backoff.delay_after(1.0)  # a crash loop: 10 s by now
    assert backoff.delay_after(SETTLED_S) == 0.5  # then a month of service, and one crash
    assert backoff.delay_after(1.0) == 1.0  # and crashing again at once backs off anew
