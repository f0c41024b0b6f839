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

# KEYS[1] bucket; ARGV: rate/s, burst, cost, op ('take', 'peek' or 'give'). Returns {allowed,
# tokens after, tokens before}.
_SCRIPT = """
local t = redis.call('TIME')
-- Stamped to the microsecond: tostring() keeps 14 digits, 100 us of a Unix time, which took up
-- to 0.01 token per call from a caller at 200/s (one pacing at its rate was refused by turns).
local stamp = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local now = tonumber(stamp)
local rate, burst, cost, op = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, stepped_back = burst, false
if state[1] then
  local at = tonumber(state[2])
  -- Redis's clock stepped back (NTP, a failover): counted from now, else the bucket would not
  -- refill before the clock is back where it was, however short the retry delay it names.
  stepped_back = now < at
  tokens = math.min(burst, tonumber(state[1]) + math.max(0, now - at) * rate)
end
local allowed = tokens >= cost - 1e-9
local after = tokens
if allowed and op ~= 'give' then after = math.max(0, tokens - cost) end
local left = tokens
if op == 'take' and allowed then left = after end
if op == 'give' and state[1] then left = math.min(burst, tokens + cost) end
if left ~= tokens or (op == 'take' and allowed) or stepped_back then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', left), 'at', stamp)
  -- (at most 10,000 years: a tiny rate made it inf, which PEXPIRE refuses)
  redis.call('PEXPIRE', KEYS[1], math.min(math.ceil((burst - left) / rate * 1000) + 1000, 315576000000000))
end
return {allowed and 1 or 0, string.format('%.17g', after), string.format('%.17g', tokens)}
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
        return self._decide(key, cost, "take")

    def peek(self, key: str, cost: float = 1) -> RateDecision:
        return self._decide(key, cost, "peek")

    def give_back(self, key: str, cost: float = 1) -> None:
        self._decide(key, cost, "give")

    def _decide(self, key: str, cost: float, op: str) -> RateDecision:
        if not 0 < cost <= self.burst:
            raise ValueError(f"cost must be in (0, {self.burst}]")
        allowed, after, tokens = self._script(keys=[self._prefix + key], args=[self.rate, self.burst, cost, op])
        after, tokens = float(after), float(tokens)
        return RateDecision(
            allowed=bool(allowed),
            limit=self.burst,
            remaining=int(after + _EPSILON),
            retry_after_s=0.0 if allowed else (cost - tokens) / self.rate,
            reset_after_s=(self.burst - after) / self.rate,
        )
