"""Rate limiting (pipeline step 4): token buckets behind a small interface.

A bucket holds up to ``burst`` tokens and refills at ``rate_per_s``; a request costs
tokens, and a refused request costs nothing. Memory stays bounded: a bucket that has
refilled completely carries no information (a fresh bucket is identical), so it is
dropped. Buckets are kept in least-recently-used order and every bucket untouched for
``burst / rate_per_s`` seconds is necessarily full, so the table only ever holds the keys
seen in that window — plus a hard ``max_keys`` cap for floods of distinct keys (the
oldest bucket then goes first, which at worst hands that key a fresh burst).

:class:`RateLimiter` is the interface a shared (Redis) implementation will provide for
several replicas; :class:`RateLimits` composes the buckets the pipeline uses.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tradewire.core.errors import QuotaViolation, TradewireError

_EPSILON = 1e-9
# The longest wait a refusal names: google.protobuf.Duration's range (10,000 years). A tiny
# configured rate (1e-300/s) made RetryInfo fail to build (OverflowError: a bare INTERNAL) and
# Retry-After a 300-digit number.
MAX_WAIT_S = 315_576_000_000.0


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int  # bucket size (burst)
    remaining: int  # whole tokens left after this decision
    retry_after_s: float  # 0 when allowed; else wait this long for ``cost`` tokens
    reset_after_s: float  # until the bucket is full again

    def headers(self) -> dict[str, str]:
        """Response headers (IETF RateLimit fields; Retry-After in whole seconds)."""
        out = {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(math.ceil(min(self.reset_after_s, MAX_WAIT_S))),
        }
        if not self.allowed:
            out["retry-after"] = str(max(1, math.ceil(min(self.retry_after_s, MAX_WAIT_S))))
        return out


@runtime_checkable
class RateLimiter(Protocol):
    def acquire(self, key: str, cost: float = 1) -> RateDecision:
        """Take ``cost`` tokens from ``key``'s bucket if it has them."""
        ...

    def peek(self, key: str, cost: float = 1) -> RateDecision:
        """What ``acquire`` would decide, without taking anything."""
        ...

    def give_back(self, key: str, cost: float = 1) -> None:
        """Return ``cost`` tokens ``acquire`` took (up to the bucket's size)."""
        ...


class TokenBucketLimiter:
    """In-process token buckets (one process; see :class:`RateLimiter` for scale-out)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = 100_000,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_s must be > 0, burst >= 1 and max_keys >= 1")
        self.rate = float(rate_per_s)
        self.burst = int(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def acquire(self, key: str, cost: float = 1) -> RateDecision:
        return self._decide(key, cost, take=True)

    def peek(self, key: str, cost: float = 1) -> RateDecision:
        return self._decide(key, cost, take=False)

    def give_back(self, key: str, cost: float = 1) -> None:
        with self._lock:
            now = self._clock()
            if key in self._buckets:  # (a bucket not kept is full)
                self._buckets[key] = (min(float(self.burst), self._tokens(key, now) + cost), now)

    def __len__(self) -> int:
        return len(self._buckets)

    def _decide(self, key: str, cost: float, take: bool) -> RateDecision:
        if not 0 < cost <= self.burst:
            raise ValueError(f"cost must be in (0, {self.burst}]")
        with self._lock:
            now = self._clock()
            self._evict_full(now)
            state = self._buckets.get(key)
            if state is not None and state[1] > now:
                # The clock went back: count from now. Else a refused caller stays refused until
                # the clock is back where it was, whatever the retry delay it was told.
                self._buckets[key] = (state[0], now)
            tokens = self._tokens(key, now)
            # Float error must not make a due request wait: the refill's, and the clock's own
            # resolution (time.monotonic() 115 days after boot moves in steps of 2 ns).
            allowed = tokens >= cost - _EPSILON - 4 * math.ulp(now) * self.rate
            after = max(0.0, tokens - cost) if allowed else tokens
            if take and allowed:
                self._buckets[key] = (after, now)
                self._buckets.move_to_end(key)
                while len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
        return RateDecision(
            allowed=allowed,
            limit=self.burst,
            remaining=int(after + _EPSILON),
            retry_after_s=0.0 if allowed else (cost - tokens) / self.rate,
            reset_after_s=(self.burst - after) / self.rate,
        )

    def _tokens(self, key: str, now: float) -> float:
        state = self._buckets.get(key)
        if state is None:
            return float(self.burst)
        tokens, at = state
        return min(float(self.burst), tokens + max(0.0, now - at) * self.rate)

    def _evict_full(self, now: float) -> None:
        """Drop full buckets from the least-recently-used end (amortised O(1))."""
        buckets = self._buckets
        while buckets:
            key, (tokens, at) = next(iter(buckets.items()))
            if tokens + (now - at) * self.rate < self.burst:
                return
            del buckets[key]


# -- composition used by the pipeline -------------------------------------------------------


@dataclass(frozen=True)
class RateLimitConfig:
    """Defaults are per principal. ``streams`` counts stream opens (TradeSession,
    StreamExecutionStatus); ``auth_failures`` counts failed logins per peer address."""

    principal_rate_per_s: float = 20.0
    principal_burst: int = 40
    live_rate_per_s: float = 1.0
    live_burst: int = 5
    stream_rate_per_s: float = 0.5
    stream_burst: int = 10
    auth_failure_rate_per_s: float = 0.2
    auth_failure_burst: int = 10
    max_keys: int = 100_000

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RateLimitConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown rate-limit field(s): {', '.join(sorted(unknown))}")
        return cls(**data)


STREAM_METHODS = frozenset({"TradeSession", "StreamExecutionStatus"})


class RateLimits:
    """The buckets of pipeline step 4, composed.

    * unary calls take from the principal bucket; stream opens from the streams bucket;
    * LIVE trades additionally take from the stricter LIVE bucket (both or neither: a
      refusal by one bucket does not spend tokens in the other);
    * failed authentications take from a per-peer bucket (an IPv6 peer's: its /64), checked
      BEFORE authenticating, so a peer guessing credentials is stopped even if a later guess
      would be right.
    Inside a TradeSession, call :meth:`check_call` per trade with method "ExecuteTrade".
    """

    def __init__(
        self,
        config: RateLimitConfig = RateLimitConfig(),
        clock: Callable[[], float] = time.monotonic,
        limiter_factory: Callable[[str, float, int], RateLimiter] | None = None,
    ) -> None:
        self.config = config

        def make(name: str, rate: float, burst: int) -> RateLimiter:
            if limiter_factory is not None:
                return limiter_factory(name, rate, burst)
            return TokenBucketLimiter(rate, burst, clock, max_keys=config.max_keys)

        self.principal = make("principal", config.principal_rate_per_s, config.principal_burst)
        self.live = make("live", config.live_rate_per_s, config.live_burst)
        self.streams = make("streams", config.stream_rate_per_s, config.stream_burst)
        self.auth_failures = make("auth_failures", config.auth_failure_rate_per_s, config.auth_failure_burst)

    def check_call(self, principal_id: str, method: str, mode: str | None = None) -> RateDecision:
        """Take tokens for one call or raise RATE_LIMITED. Returns the tightest decision
        (for response headers)."""
        first = (self.streams, f"streams:{principal_id}") if method in STREAM_METHODS else (
            self.principal,
            f"principal:{principal_id}",
        )
        if mode is None or str(mode).upper().removeprefix("TRADING_MODE_") != "LIVE":
            # One bucket: acquire takes nothing when it refuses, so no peek is needed (with
            # Redis that is one round trip per call instead of two).
            decision = first[0].acquire(first[1])
            raise_if_limited(decision, first[1])
            return decision
        checks = [first, (self.live, f"live:{principal_id}")]
        peeks = [(limiter.peek(key), key) for limiter, key in checks]
        refused = [(d, key) for d, key in peeks if not d.allowed]
        if refused:
            decision, key = max(refused, key=lambda item: item[0].retry_after_s)
            raise_if_limited(decision, key)
        taken: list[tuple[RateLimiter, str, RateDecision]] = []
        for limiter, key in reversed(checks):  # the LIVE bucket, the one most often short, first
            # Another replica (a shared bucket) may have taken the last token since the peek:
            # then this call is refused too, and the token it took already goes back.
            decision = limiter.acquire(key)
            if not decision.allowed:
                for took, took_key, _ in taken:
                    took.give_back(took_key)
            raise_if_limited(decision, key)
            taken.append((limiter, key, decision))
        return min((d for _, _, d in taken), key=lambda d: d.remaining)

    def check_peer(self, peer: str) -> None:
        """Before authenticating: refuse a peer whose failure budget is spent."""
        if peer:
            subject = f"peer:{peer_bucket(peer)}"
            raise_if_limited(self.auth_failures.peek(subject), subject)

    def record_auth_failure(self, peer: str) -> RateDecision | None:
        """After a failed authentication: spend one of the peer's failure tokens."""
        return self.auth_failures.acquire(f"peer:{peer_bucket(peer)}") if peer else None


def peer_bucket(peer: str) -> str:
    """The address whose failures ``peer``'s count towards. One host holds a whole IPv6 /64
    (and may use any of its 2^64 addresses), so an IPv6 peer is counted by its /64; an IPv4
    address mapped into IPv6 (``::ffff:192.0.2.1``, a dual-stack listener's view of an IPv4
    caller) is that IPv4 address. Anything that is not an IP address stays as it is."""
    try:
        address = ipaddress.ip_address(peer.strip("[]"))
    except ValueError:
        return peer
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


def raise_if_limited(decision: RateDecision, subject: str) -> None:
    """RATE_LIMITED with RetryInfo and QuotaFailure details when ``decision`` refuses."""
    if decision.allowed:
        return
    retry = math.ceil(min(decision.retry_after_s, MAX_WAIT_S) * 1000) / 1000  # round UP: waiting this long suffices
    raise TradewireError(
        "RATE_LIMITED",
        f"rate limit exceeded for {subject}; retry after {retry:g} s",
        retry_after_s=retry,
        quota_violations=(QuotaViolation(subject, f"bucket of {decision.limit} requests is empty"),),
        metadata={"subject": subject, "limit": str(decision.limit)},
        headers=decision.headers(),
    )
