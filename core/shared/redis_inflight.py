"""A caller's running trades counted in Redis, so the per-caller in-flight limit holds across
every replica.

One sorted set per principal, ``tw:inflight:{principal}``, whose members are
``{replica_id}\\x00{request_id}`` scored by the lease's expiry (ms on Redis's own clock, so
replicas with drifting clocks agree). Taking a slot is one Lua script — drop expired leases,
refuse at the limit, else add — so the check and the take are atomic across replicas. A
replica renews the leases of its running trades every lease/3; one that dies stops renewing,
and its slots come back once its leases expire. The key itself expires with its newest lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis

from tradewire.core.outage import Outage
from tradewire.core.shared import keep_renewed

log = logging.getLogger("tradewire.inflight")

Key = tuple[str, str]  # (principal id, request id)

# take_slot(key, member, limit, lease): drop the caller's expired leases, refuse at the limit,
# else add the member's lease. Returns -1 when the slot was taken, else the caller's count
# (refused). A function, so that the trade store's claim can take the slot in its own script.
TAKE_SLOT_LUA = """
local function take_slot(key, member, limit, lease)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  limit = tonumber(limit)
  if limit > 0 then
    local count = redis.call('ZCARD', key)
    if count >= limit then return count end
  end
  lease = tonumber(lease)
  redis.call('ZADD', key, now + lease, member)
  redis.call('PEXPIRE', key, lease)
  return -1
end
"""
# KEYS[1] the caller's set; ARGV: member, limit (0: none), lease ms.
_ACQUIRE = TAKE_SLOT_LUA + "return take_slot(KEYS[1], ARGV[1], ARGV[2], ARGV[3])"

# KEYS[1] the caller's set; ARGV: member, lease ms, "\0{request id}". Takes the slot whatever
# the count, and drops another replica's lease on the same trade (it was taken over).
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if member ~= ARGV[1] and string.sub(member, -#ARGV[3]) == ARGV[3] then redis.call('ZREM', KEYS[1], member) end
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return 0
"""

# KEYS: each running trade's caller set; ARGV[1] lease ms, ARGV[1 + i] the member of KEYS[i].
# A plain ZADD (not XX): a trade that is still running is counted again even if its lease
# lapsed meanwhile (a stalled loop), so further admissions see it.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', key, lease)
end
return #KEYS
"""


@dataclass(frozen=True)
class InFlightSlot:
    """A caller's slot, to take or give back inside a trade store's script (one round trip
    with the claim, or with the final save)."""

    key: str  # the caller's sorted set
    member: str
    limit: int
    lease_ms: int


class RedisInFlight:
    """Per-caller in-flight slots shared by every replica on one Redis, held as leases."""

    def __init__(self, client: redis.Redis, replica_id: str, lease_s: float = 30.0,
                 prefix: str = "tw:inflight") -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        self.replica_id = replica_id
        self.lease_s = lease_s
        self._lease_ms = max(1, round(lease_s * 1000))
        self._prefix = prefix
        self._r = client
        self._acquire = client.register_script(_ACQUIRE)
        self._hold = client.register_script(_HOLD)
        self._renew = client.register_script(_RENEW)

    def _key(self, principal_id: str) -> str:
        return f"{self._prefix}:{principal_id}"

    def _member(self, request_id: str) -> str:
        return f"{self.replica_id}\x00{request_id}"

    def slot(self, principal_id: str, request_id: str, limit: int) -> InFlightSlot:
        return InFlightSlot(self._key(principal_id), self._member(request_id), limit, self._lease_ms)

    def acquire(self, principal_id: str, request_id: str, limit: int) -> int | None:
        """Take a slot unless the caller already runs ``limit`` trades across all replicas:
        None when taken, else that count."""
        count = self._acquire(keys=[self._key(principal_id)], args=[self._member(request_id), limit, self._lease_ms])
        return None if count < 0 else count

    def hold(self, principal_id: str, request_id: str) -> None:
        """Take a slot whatever the count: the trade already runs (resumed after a restart, or
        adopted from a replica presumed dead — whose lease on it is dropped, not counted twice)."""
        self._hold(keys=[self._key(principal_id)],
                   args=[self._member(request_id), self._lease_ms, f"\x00{request_id}"])

    def release(self, principal_id: str, request_id: str) -> None:
        self._r.zrem(self._key(principal_id), self._member(request_id))

    def renew(self, running: Iterable[Key]) -> int:
        """Extend the leases of this replica's running trades, in one round trip; returns how many."""
        keys, members = [], []
        for principal_id, request_id in running:
            keys.append(self._key(principal_id))
            members.append(self._member(request_id))
        if not keys:
            return 0
        return self._renew(keys=keys, args=[self._lease_ms, *members])

    async def keep_renewed(self, running: Callable[[], Iterable[Key]]) -> None:
        """Renew ``running()`` every lease/3 until cancelled."""
        outage = Outage(log, "in-flight lease renewal (Redis)", "leases lapse if it lasts past a lease")
        await keep_renewed(self.lease_s, lambda: self.renew(running()), outage, log,
                           "renewing the in-flight leases failed")
