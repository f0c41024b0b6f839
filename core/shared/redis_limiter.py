"""Token buckets in Redis, so a caller's limit holds across every replica.

The bucket arithmetic runs inside Redis (one Lua script: atomic, one round trip) on Redis's
own clock, so replicas with drifting clocks still agree. Same semantics as the in-process
TokenBucketLimiter: ``peek`` decides without taking, ``acquire`` takes when allowed. A
bucket's key expires once it would be full again, so idle callers cost no memory.
"""

from __future__ import annotations

import redis

from tradewire.core.ratelimit import RateDecision

_EPSILON = 1e-9

# KEYS[1] bucket; ARGV: rate/s, burst, cost, take (1/0). Returns {allowed, tokens_after*1e6}.
_SCRIPT = """
local now = redis.call('TIME')
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1e6
local rate, burst, cost, take = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = burst
if state[1] then
  tokens = math.min(burst, tonumber(state[1]) + math.max(0, now_s - tonumber(state[2])) * rate)
end
local allowed = tokens >= cost - 1e-9
local after = tokens
if allowed then after = math.max(0, tokens - cost) end
if take and allowed then
  redis.call('HSET', KEYS[1], 'tokens', tostring(after), 'at', tostring(now_s))
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - after) / rate * 1000) + 1000)
end
return {allowed and 1 or 0, tostring(after), tostring(tokens)}
"""


class RedisTokenBucketLimiter:
    """Implements core.ratelimit.RateLimiter against a shared Redis."""

    def __init__(self, client: redis.Redis, name: str, rate_per_s: float, burst: int, prefix: str = "tw:rl") -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate = float(rate_per_s)
        self.burst = int(burst)
        self._prefix = f"{prefix}:{name}:"
        self._script = client.register_script(_SCRIPT)

    def acquire(self, key: str, cost: float = 1) -> RateDecision:
        return self._decide(key, cost, take=True)

    def peek(self, key: str, cost: float = 1) -> RateDecision:
        return self._decide(key, cost, take=False)

    def _decide(self, key: str, cost: float, take: bool) -> RateDecision:
        if not 0 < cost <= self.burst:
            raise ValueError(f"cost must be in (0, {self.burst}]")
        allowed, after, tokens = self._script(keys=[self._prefix + key],
                                              args=[self.rate, self.burst, cost, 1 if take else 0])
        after, tokens = float(after), float(tokens)
        return RateDecision(
            allowed=bool(allowed),
            limit=self.burst,
            remaining=int(after + _EPSILON),
            retry_after_s=0.0 if allowed else (cost - tokens) / self.rate,
            reset_after_s=(self.burst - after) / self.rate,
        )
