"""A circuit breaker per upstream: closed → open after N consecutive failures → half-open
after the cool-down (one probe call) → closed on success, open again on failure.

While open, calls fail fast with :class:`CircuitOpen`, which carries how long until the
next probe is allowed (the caller's retry-after). The clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpen(Exception):
    def __init__(self, upstream: str, retry_after_s: float) -> None:
        super().__init__(f"{upstream} circuit open")
        self.upstream = upstream
        self.retry_after_s = retry_after_s


class CircuitBreaker:
    def __init__(self, name: str, failure_threshold: int, cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1 or cooldown_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s > 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None
        self.opened_count = 0  # how many times it opened (metrics, tests)

    @property
    def state(self) -> str:
        if self._state == OPEN and self._clock() >= self._opened_at + self.cooldown_s:
            return HALF_OPEN
        return self._state

    def retry_after_s(self) -> float:
        return max(0.0, self._opened_at + self.cooldown_s - self._clock())

    def before_call(self) -> None:
        """Raise CircuitOpen unless a call may go out now (in half-open: one probe at a time)."""
        now = self._clock()
        if self._state == OPEN:
            if now < self._opened_at + self.cooldown_s:
                raise CircuitOpen(self.name, self._opened_at + self.cooldown_s - now)
            self._state = HALF_OPEN
            self._probe_started = None
        if self._state == HALF_OPEN:
            # A probe that never reported back (cancelled) does not block the breaker forever.
            if self._probe_started is not None and now < self._probe_started + self.cooldown_s:
                raise CircuitOpen(self.name, self._probe_started + self.cooldown_s - now)
            self._probe_started = now

    def record_success(self) -> None:
        self._state = CLOSED
        self._failures = 0
        self._probe_started = None

    def record_failure(self) -> None:
        self._failures += 1
        if self._state == HALF_OPEN or self._failures >= self.failure_threshold:
            if self._state != OPEN:
                self.opened_count += 1
            self._state = OPEN
            self._opened_at = self._clock()
            self._probe_started = None

    def describe(self) -> str:
        state = self.state
        if state == OPEN:
            return f"{self.name} open (retry in {self.retry_after_s():.1f}s)"
        return f"{self.name} {state}"
