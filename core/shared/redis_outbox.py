"""The webhook outbox in Redis, shared by every replica.

Any replica delivers any due entry: taking entries is one Lua script that leases them (moves
their next attempt past the delivery timeout) as it returns them, so two replicas never take
the same entry at once, and an entry whose replica died mid-delivery is due again — for
every replica — when its lease ends. Nothing waits for a replica to come back.

Keys (``{id}`` the delivery id):
  tw:outbox:e:{id}      hash: principal, request_id, url, body, state, attempts,
                        next_attempt_ns, last_error, created_ns, updated_ns, trace ('' or
                        absent: none; entries written before it was kept have none)
  tw:outbox:pending     sorted set of pending ids by next attempt (ns)
  tw:outbox:dead        sorted set of dead-lettered ids by when (ns)
  tw:outbox:delivered   sorted set of delivered ids by when (ns; pruned)
  tw:outbox:created     sorted set of every id by creation (ns; listing)
  tw:outbox:once        hash "{principal}\\0{request id}\\0{url}" → id: one entry per trade and URL

Scores are doubles, so ns times order to within a few hundred ns; the exact values live in
the entry's hash. The scripts name entry keys they compute from ids, so this needs one Redis
(or a cluster slot for all ``tw:outbox:*`` keys), like the rest of the shared store.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence

import redis

from tradewire.core.store.base import OutboxEntry

_PENDING, _DEAD, _DELIVERED = "tw:outbox:pending", "tw:outbox:dead", "tw:outbox:delivered"
_CREATED, _ONCE = "tw:outbox:created", "tw:outbox:once"
_SECRET_KEY = "tw:webhook-secret"
_PRUNE_BATCH = 500
_FIELDS = ("principal", "request_id", "url", "body", "state", "attempts", "next_attempt_ns", "last_error", "trace")


def _entry_key(entry_id: str) -> str:
    return f"tw:outbox:e:{entry_id}"


# A Lua function for the script that saves a trade (core/shared/redis_store.py), so a terminal
# status and its webhooks are written at one instant. enqueue(k, a): KEYS[k..k+2] are once,
# pending and created, KEYS[k+3..] one entry key per entry; ARGV[a] is now, then per entry
# principal, request id, url, body, next attempt, id, trace (see enqueue_keys_args). An entry
# whose trade and URL already have one is skipped (a trade saved again, e.g. by a recovery,
# notifies once).
ENQUEUE_LUA = """
local function enqueue(k, a)
  local once, pending, created, now = KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[a]
  for e = k + 3, #KEYS do
    local i = a + 1 + (e - k - 3) * 7
    local p, r, url, body, due, id = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
    if redis.call('HSETNX', once, p .. '\\0' .. r .. '\\0' .. url, id) == 1 then
      redis.call('HSET', KEYS[e], 'principal', p, 'request_id', r, 'url', url, 'body', body, 'state', 'pending',
                 'attempts', 0, 'next_attempt_ns', due, 'last_error', '', 'created_ns', now, 'updated_ns', now,
                 'trace', ARGV[i + 6])
      redis.call('ZADD', pending, due, id)
      redis.call('ZADD', created, now, id)
    end
  end
end
"""


def enqueue_keys_args(entries: Sequence[OutboxEntry]) -> tuple[list[str], list]:
    """The KEYS and ARGV that ENQUEUE_LUA's ``enqueue`` reads for ``entries`` (appended last)."""
    now = time.time_ns()
    args: list = [now]
    for e in entries:
        args += [e.principal_id, e.request_id, e.url, e.body, e.next_attempt_ns or now, e.id, e.trace or ""]
    return [_ONCE, _PENDING, _CREATED, *(_entry_key(e.id) for e in entries)], args


# KEYS[1] pending; ARGV: now, limit, lease end. Returns id, fields, id, fields, ...
_TAKE_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local key = 'tw:outbox:e:' .. id
  local fields = redis.call('HMGET', key, 'principal', 'request_id', 'url', 'body', 'state', 'attempts',
                            'next_attempt_ns', 'last_error', 'trace')
  if fields[1] then
    out[#out + 1] = id
    out[#out + 1] = fields
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    redis.call('HSET', key, 'next_attempt_ns', ARGV[3])
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# KEYS: the entry, pending, dead, delivered; ARGV: id, state, attempts, next attempt, error, now.
# An entry pruned meanwhile stays gone.
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'attempts', ARGV[3], 'next_attempt_ns', ARGV[4],
           'last_error', ARGV[5], 'updated_ns', ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if ARGV[2] == 'pending' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
elseif ARGV[2] == 'dead' then
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
else
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
end
return 1
"""

# KEYS: delivered, created, once; ARGV: before (exclusive), batch. Returns how many went.
_PRUNE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local key = 'tw:outbox:e:' .. id
  local f = redis.call('HMGET', key, 'principal', 'request_id', 'url')
  if f[1] then redis.call('HDEL', KEYS[3], f[1] .. '\\0' .. f[2] .. '\\0' .. f[3]) end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return #ids
"""


def _decode(entry_id: str | bytes, fields: Sequence[bytes | None]) -> OutboxEntry:
    principal, request_id, url, body, state, attempts, next_ns, error, trace = fields
    return OutboxEntry(
        id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        principal_id=principal.decode(), request_id=request_id.decode(), url=url.decode(), body=bytes(body),
        state=state.decode(), attempts=int(attempts), next_attempt_ns=int(next_ns), last_error=error.decode(),
        trace=trace.decode() if trace else None,  # '' written without one; absent in older entries
    )


class RedisOutbox:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._take_due = client.register_script(_TAKE_DUE)
        self._update = client.register_script(_UPDATE)
        self._prune = client.register_script(_PRUNE)

    def take_due(self, now_ns: int, limit: int, lease_until_ns: int) -> list[OutboxEntry]:
        raw = self._take_due(keys=[_PENDING], args=[now_ns, limit, lease_until_ns])
        return [_decode(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]

    def next_due_ns(self) -> int | None:
        first = self._r.zrange(_PENDING, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    def update(self, entry_id: str, state: str, attempts: int, next_attempt_ns: int, last_error: str) -> None:
        self._update(keys=[_entry_key(entry_id), _PENDING, _DEAD, _DELIVERED],
                     args=[entry_id, state, attempts, next_attempt_ns, last_error[:500], time.time_ns()])

    def prune_delivered(self, before_ns: int) -> int:
        total = 0
        while True:
            deleted = int(self._prune(keys=[_DELIVERED, _CREATED, _ONCE], args=[before_ns, _PRUNE_BATCH]))
            total += deleted
            if deleted < _PRUNE_BATCH:
                return total

    def counts(self) -> dict[str, int]:
        pipe = self._r.pipeline(transaction=False)
        for key in (_PENDING, _DELIVERED, _DEAD):
            pipe.zcard(key)
        pending, delivered, dead = pipe.execute()
        return {"pending": pending, "delivered": delivered, "dead": dead}

    def entries(self, request_id: str | None = None) -> list[OutboxEntry]:
        """Every entry (oldest first), or one trade's: a scan for operators and tests, not a hot path."""
        ids = self._r.zrange(_CREATED, 0, -1)
        pipe = self._r.pipeline(transaction=False)
        for entry_id in ids:
            pipe.hmget(_entry_key(entry_id.decode()), *_FIELDS)
        out = [_decode(entry_id, fields) for entry_id, fields in zip(ids, pipe.execute()) if fields[0] is not None]
        return out if request_id is None else [e for e in out if e.request_id == request_id]


class SharedWebhookSecret:
    """The signing key every replica uses when none is configured: made once, kept in Redis
    (each replica generating its own would sign alike-looking webhooks with different keys).
    Read for each delivery; a replica that knows the key puts it back when Redis lost it (it
    restarted empty), so the replicas — and the receivers checking signatures — keep one key."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._known: bytes | None = None

    def __call__(self) -> bytes:
        ours = self._known or secrets.token_hex(32).encode()
        there = self._client.set(_SECRET_KEY, ours, nx=True, get=True)  # (Redis 7.0+)
        self._known = there if there is not None else ours
        return self._known
