"""Retry policy shared by everything that retries: bounded, exponential, jittered.

Executors use it through TradeRunner, which retries an attempt that failed with a
*transient* error **before the trade was sent** (before the executor passed SIMULATED, the
point of no return): a fresh ``executor.execute(order)`` re-quotes, rebuilds and re-signs,
so no state of the failed attempt is reused. After send nothing is retried: the trade's
fate is then the chain's, and retrying could pay twice.

An error is transient when it is a :class:`TransientError` (what an executor raises to ask
for a retry), a TradewireError whose reason is in :data:`TRANSIENT_REASONS`, or a network
failure (``OSError``, ``TimeoutError``, ``httpx.TransportError``). The webhook dispatcher uses
the same policy for its delivery backoff.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import httpx

from tradewire.core.errors import TradewireError

TRANSIENT_REASONS = frozenset({"UPSTREAM_UNAVAILABLE"})


class TransientError(Exception):
    """A failure worth retrying (quote API down, RPC node timing out, ...), raised before send.

    ``reason`` is the error reason the trade fails with when the retries are exhausted.
    """

    def __init__(self, message: str, reason: str = "UPSTREAM_UNAVAILABLE") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason

    def to_error(self) -> TradewireError:
        return TradewireError(self.reason, self.message)


def transient_reason(exc: BaseException) -> str | None:
    """A short label (for metrics and logs) when ``exc`` is transient, else None."""
    if isinstance(exc, TransientError):
        return exc.reason
    if isinstance(exc, TradewireError):
        return exc.reason if exc.reason in TRANSIENT_REASONS else None
    if isinstance(exc, httpx.TransportError):
        return type(exc).__name__
    if isinstance(exc, (OSError, TimeoutError)):
        return type(exc).__name__
    return None


def as_error(exc: BaseException) -> TradewireError:
    """What a caller sees when a transient failure exhausted its retries."""
    if isinstance(exc, TradewireError):
        return exc
    if isinstance(exc, TransientError):
        return exc.to_error()
    return TradewireError("UPSTREAM_UNAVAILABLE", f"upstream unavailable ({type(exc).__name__})")


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` attempts in all; the delay after failed attempt n (1-based) is
    ``min(max_backoff_s, initial_backoff_s × multiplier^(n-1))`` scaled by a random factor
    in ``[1 - jitter, 1 + jitter]`` (never above ``max_backoff_s × (1 + jitter)``)."""

    max_attempts: int = 3
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    multiplier: float = 2.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within 0..1")

    @classmethod
    def from_config(cls, config, rng: random.Random | None = None) -> RetryPolicy:
        """From a core.config.RetryConfig (or anything with the same attributes)."""
        return cls(max_attempts=config.max_attempts, initial_backoff_s=config.initial_backoff_s,
                   max_backoff_s=config.max_backoff_s, multiplier=config.multiplier, jitter=config.jitter,
                   rng=rng or random.Random())

    def retries_left(self, failed_attempts: int) -> bool:
        """Whether another attempt may follow ``failed_attempts`` failures."""
        return failed_attempts < self.max_attempts

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th failure (1-based)."""
        if failed_attempts < 1:
            return 0.0
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (failed_attempts - 1))
        if self.jitter:
            base *= 1 + self.rng.uniform(-self.jitter, self.jitter)
        return max(0.0, base)
