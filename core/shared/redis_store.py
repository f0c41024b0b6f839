"""Trades, idempotency keys, positions and history in Redis, shared by every replica.

Same contract as the SQLite store (core/store/base.py), so the core runs unchanged on
either. Calls are short and go to a nearby Redis (about 70 µs a round trip on loopback), so
they run on the event loop like SQLite's; everything that must be atomic is one Lua script
or one optimistic transaction. The webhook outbox is shared too (core/shared/redis_outbox.py):
any replica delivers it.

A trade belongs to the replica that claimed it (``replica`` in its hash) and only that
replica writes it: every save checks it, atomically with the write. When a replica stops
beating (core/shared/redis_replicas.py) another one *adopts* its running trades that have not
passed the point of no return — it becomes their owner and resumes them — so a replica
presumed dead that comes back can no longer save them, and so can never commit (send) them.
PAPER trades past that point are adopted too: the adopter settles them by their fill id (the
booking either happened, or is voided so that it never can). LIVE ones too, by a replica that
runs LIVE: their owner recorded each transaction in Redis before sending it, fenced by its
ownership (core/shared/redis_live_orders.py), so the adopter follows that signature, or knows
that nothing was sent.

Keys (``{p}`` principal, ``{r}`` request id with its colons written %3A: see ``per_trade``):
  tw:trade:{p}:{r}      hash: fp, result, events, request, seq, mode, replica (the owner),
                        committed = 1 once saved past the point of no return, handover
                        (the owner, when it records its LIVE sends in Redis before making them),
                        published (TradeRecord.published), and run (the trade id of the run
                        claimed last: a paper booking is fenced on it, see ``apply_fill``)
  tw:hist:{p}           sorted set of request ids by claim sequence (history, newest first)
  tw:running:{replica}  set of "{p}\\x00{r}" owned by a replica and not yet terminal
  tw:hold:{p}:{mode}    hash: mint → "amount:cost_basis:realized_pnl" (integers), and "_v",
                        a version bumped by every write (fills are compare-and-set on it)
  tw:holdt:{p}:{mode}   hash: mint → when that holding last changed (ns; Redis's clock)
  tw:fills:{p}:{mode}   set of the fill ids applied to (or voided for) those holdings
  tw:fill-receipts:{p}:{mode}  hash: fill id → what was booked with it (its booker's receipt)
  tw:fill-pnl:{p}:{mode}  hash: fill id → how much that fill changed the realised PnL
  tw:fills:by-time      sorted set of "{p}\\x00{mode}\\x00{fill id}" by when it was recorded (ns),
                        so that ids past their retention are forgotten (prune_fill_ids)
  tw:wallet:{p}:{mode}  present once the starting wallet was given
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from tradewire.core import lifecycle
from tradewire.core.portfolio import FillLegs, Holding, InsufficientBalance, apply_fill
from tradewire.core.store.base import (VOIDED_RECEIPT, FillIdUsed, HistoryPage, HistoryQuery, OutboxEntry, TakenOver,
                                       TradeLost, TradeRecord, UnfinishedTrade, check_page_limit, realized_change)
from tradewire.core.inflight import AtInFlightLimit
from tradewire.core.shared import per_trade
from tradewire.core.shared.redis_events import events_stream_key
from tradewire.core.shared.redis_inflight import TAKE_SLOT_LUA, InFlightSlot
from tradewire.core.shared.redis_outbox import ENQUEUE_LUA, RedisOutbox, enqueue_keys_args
from tradewire.core.shared.redis_replicas import REGISTRY, presence_key
from tradewire.core.store.sqlite import pack_events, unpack_events
from tradewire.v1 import trade_pb2

# Claim atomically: return the existing trade, or create it and list it in history; a trade
# that may run again (``rerun``, lifecycle.may_run_again) is claimed afresh by the same payload
# (fingerprint), with a new sequence: listed first in history, as its new created_at says (it
# kept its first attempt's place, pages away from the top). Either way any status events under
# its id (KEYS[5]) are dropped: a previous attempt's, or those of a trade Redis lost (restarted
# empty) that its runner sent again — the new ones reuse their sequence numbers. ARGV[8] is the run
# (its trade id). With an in-flight slot (KEYS[6]; ARGV[9..11] member, limit, lease ms) a new trade
# first takes the caller's slot, and returns the caller's count instead when at the limit (nothing claimed).
_CLAIM = TAKE_SLOT_LUA + """
local rerun = false
if redis.call('EXISTS', KEYS[1]) == 1 then
  local t = redis.call('HMGET', KEYS[1], 'fp', 'result', 'events', 'rerun')
  if t[4] ~= '1' or t[1] ~= ARGV[1] then return {t[1], t[2], t[3]} end
  rerun = true
end
if #KEYS > 5 then
  local refused = take_slot(KEYS[6], ARGV[9], ARGV[10], ARGV[11])
  if refused >= 0 then return refused end
end
local seq = redis.call('INCR', KEYS[4])
if rerun then
  redis.call('HDEL', KEYS[1], 'events', 'rerun', 'committed', 'published')
  redis.call('HSET', KEYS[1], 'result', ARGV[2], 'request', ARGV[3], 'seq', seq, 'replica', ARGV[4],
             'handover', ARGV[4], 'run', ARGV[8])
else
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'result', ARGV[2], 'request', ARGV[3], 'seq', seq, 'replica', ARGV[4],
             'mode', ARGV[7], 'handover', ARGV[4], 'run', ARGV[8])
end
redis.call('ZADD', KEYS[2], seq, ARGV[5])
redis.call('DEL', KEYS[5])
redis.call('SADD', KEYS[3], ARGV[6])
return false
"""

# Redis's clock in ns since the epoch (a string): when a holding changed.
_NOW_NS_LUA = """
local function _now_ns()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2])) .. '000'
end
"""
# A booking (or voiding) for one run of a trade goes through only while the store holds that run,
# owned by the replica writing: 1; -1 when it holds no such run (the trade is gone: Redis restarted
# without its data, or its request id was claimed afresh since), -2 when another replica owns it.
# A trade claimed before runs were recorded is checked by its owner only.
_FENCE_LUA = """
local function _fence(key, owner, run)
  local t = redis.call('HMGET', key, 'replica', 'run')
  if not t[1] or (t[2] and t[2] ~= run) then return -1 end
  if t[1] ~= owner then return -2 end
  return 1
end
"""
# A fill's holdings, written only if nobody wrote them since they were read (version "_v").
# KEYS[1] the holdings hash, KEYS[2] when each changed (_changed_key); with a fill id, KEYS[3]
# the set of applied fill ids, KEYS[4] the fill ids' time index, KEYS[5] the fills' receipts and
# KEYS[6] their realised changes, and with a run (ARGV[7] not '') KEYS[7] its trade. ARGV[1] the
# version read ('' for none), ARGV[2] the fill id ('' for none), ARGV[3] the receipt ('' for none),
# ARGV[4] the id's member in the time index, ARGV[5] now (ns), ARGV[6] the fill's realised change
# (computed on the holdings of that version), ARGV[7] the booking replica ('' for no run), ARGV[8]
# the run (its trade id), then mint, packed pairs. A fill id already applied writes nothing and
# returns 0. Returns the new version, false when the version moved (read again), 0, or the
# fence's refusal (-1, -2: nothing written).
_WRITE_IF_UNCHANGED = _NOW_NS_LUA + _FENCE_LUA + """
if ARGV[7] ~= '' then
  local fenced = _fence(KEYS[7], ARGV[7], ARGV[8])
  if fenced < 0 then return fenced end
end
if ARGV[2] ~= '' and redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 1 then return 0 end
local version = redis.call('HGET', KEYS[1], '_v') or ''
if version ~= ARGV[1] then return false end
local now = _now_ns()
for i = 9, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i], now)
end
if ARGV[2] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[2])
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
  redis.call('HSET', KEYS[6], ARGV[2], ARGV[6])
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[5], ARGV[2], ARGV[3]) end
return redis.call('HINCRBY', KEYS[1], '_v', 1)
"""
# Give a starting wallet once: KEYS the wallet's marker, its holdings, when each changed; ARGV
# mint, packed pairs. The version is bumped (a fill computed on what was there before must read
# again). Returns 1 when given now, 0 when it had been.
_GIVE_WALLET = _NOW_NS_LUA + """
if not redis.call('SET', KEYS[1], 1, 'NX') then return 0 end
if #ARGV > 0 then
  local now = _now_ns()
  for i = 1, #ARGV, 2 do
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[3], ARGV[i], now)
  end
  redis.call('HINCRBY', KEYS[2], '_v', 1)
end
return 1
"""
# Void a fill id: KEYS the applied set, the time index and the receipts, and with a run (ARGV[5]
# not '') its trade; ARGV the id, its index member, now (ns), the voided receipt, the voiding
# replica ('' for no run), the run. Returns 1 (voided), 0 (applied or voided before) or the
# fence's refusal (-1, -2: nothing written).
_VOID = _FENCE_LUA + """
if ARGV[5] ~= '' then
  local fenced = _fence(KEYS[4], ARGV[5], ARGV[6])
  if fenced < 0 then return fenced end
end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
return 1
"""
# Forget the fill ids recorded before ARGV[1] (ns, exclusive), at most ARGV[2] of them, with
# their receipts and realised changes. KEYS[1] the time index. Returns how many went.
_PRUNE_FILL_IDS = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(members) do
  local first = string.find(member, '\\0', 1, true)
  local second = string.find(member, '\\0', first + 1, true)
  local holder = string.sub(member, 1, first - 1) .. ':' .. string.sub(member, first + 1, second - 1)
  local fill_id = string.sub(member, second + 1)
  redis.call('SREM', 'tw:fills:' .. holder, fill_id)
  redis.call('HDEL', 'tw:fill-receipts:' .. holder, fill_id)
  redis.call('HDEL', 'tw:fill-pnl:' .. holder, fill_id)
  redis.call('ZREM', KEYS[1], member)
end
return #members
"""
# Save a trade if this replica still owns it. KEYS[1] the trade, KEYS[2] this replica's running
# set, then (ARGV[7] not '') the caller's in-flight set to give the member ARGV[7] back to, then
# the outbox's keys (enqueue); ARGV: owner, result, events ('' keeps them), terminal ('1', or
# 'r' when it may run again), committed ('1' or ''), running-set member, in-flight member,
# published ('' keeps it), then the outbox's args. Returns 0 when not the owner, -1 when the
# trade is gone.
_SAVE = ENQUEUE_LUA + """
local owner = redis.call('HGET', KEYS[1], 'replica')
if not owner then return -1 end
if owner ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'result', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'events', ARGV[3]) end
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'committed', '1') end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'published', ARGV[8]) end
if ARGV[4] ~= '' then redis.call('SREM', KEYS[2], ARGV[6]) end
if ARGV[4] == 'r' then redis.call('HSET', KEYS[1], 'rerun', '1') end
local outbox = 3
if ARGV[7] ~= '' then
  redis.call('ZREM', KEYS[3], ARGV[7])
  outbox = 4
end
if #KEYS >= outbox then enqueue(outbox, 9) end
return 1
"""

# Adopt a dead replica's running trades that this replica can finish: those not past the point
# of no return; PAPER ones past it (settled by their fill id, see PaperExecutor.reconcile); and,
# when this replica runs LIVE, LIVE ones past it whose owner recorded its sends in Redis
# (``handover`` = the owner: see core/shared/redis_live_orders.py). The adopter becomes the
# trade's owner and its ``handover`` too. KEYS: its presence key, its running set, this
# replica's running set, the replica registry; ARGV: this replica, the dead one, the PAPER mode,
# the LIVE mode or ''. Nothing moves while the presence key exists. Returns the members moved.
_ADOPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
local moved = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local sep = string.find(member, '\\0', 1, true)
  local key = 'tw:trade:' .. string.sub(member, 1, sep - 1) .. ':' .. (string.gsub(string.sub(member, sep + 1), ':', '%%3A'))
  local t = redis.call('HMGET', key, 'committed', 'mode', 'replica', 'handover')
  if t[1] ~= '1' or t[2] == ARGV[3] or (t[2] == ARGV[4] and t[4] == t[3]) then
    redis.call('HSET', key, 'replica', ARGV[1], 'handover', ARGV[1])
    redis.call('SMOVE', KEYS[2], KEYS[3], member)
    moved[#moved + 1] = member
  end
end
if redis.call('SCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[4], ARGV[2]) end
return moved
"""
# A batch of a caller's history: the next ARGV[2] entries of KEYS[1] (newest first, below
# ARGV[1]: '+inf' or '(seq') as score, then the trade's result (nil if gone); ARGV[3] the
# trades' key prefix. One call instead of one pipelined HGET per trade, which cost ~3× the time.
_HISTORY_BATCH_LUA = """
local entries = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i = 1, #entries, 2 do
  local id = entries[i]
  if string.find(id, ':', 1, true) then id = string.gsub(id, ':', '%%3A') end
  out[i] = entries[i + 1]
  out[i + 1] = redis.call('HGET', ARGV[3] .. id, 'result') or false
end
return out
"""
_VERSION = b"_v"
_FILL_IDS_BY_TIME = "tw:fills:by-time"
# Index entries one history call examines at most: a filter that matches little answers what
# it found among them (perhaps nothing) with a token to go on, rather than reading a long
# history on the event loop: 20,000 entries took 250–670 ms, 1,024 take ~5–15 ms (5–10 µs each).
HISTORY_SCAN_BUDGET = 1024
_HISTORY_BATCH = 256  # most entries one script call reads (Redis runs it whole)
# A trade's created_at is set just before its claim takes the next sequence, so the index is in
# created order but for clock skew between replicas and a claim's delay (a store call waits up
# to its timeout; a stalled Redis may run it later): once a trade created this long before
# start_time is seen, every older one was created before start_time too, and the scan ends.
_CREATED_ORDER_SLACK_NS = 300 * 10**9
_LAST_READ_KEPT = 4096  # callers whose last holdings read is kept (cleared when full)


def _holding(mint: str, packed: bytes) -> Holding:
    amount, cost, realized = (int(x) for x in packed.split(b":"))
    return Holding(mint, amount, cost, realized)


def _versioned_holdings(raw: dict[bytes, bytes]) -> tuple[str, dict[str, Holding]]:
    version = raw.pop(_VERSION, b"").decode()
    return version, {m.decode(): _holding(m.decode(), v) for m, v in raw.items()}


def _changed_key(principal_id: str, mode: int) -> str:
    """When each holding of ``tw:hold:{principal}:{mode}`` last changed (mint → ns), beside it:
    the holdings' own values keep their format, which every replica reads."""
    return f"tw:holdt:{principal_id}:{mode}"


def _pack_holding(h: Holding) -> str:
    return f"{h.amount}:{h.cost_basis}:{h.realized_pnl}"


def _terminal_flag(result: trade_pb2.TradeResult) -> str:
    if not lifecycle.is_terminal(result.status):
        return ""
    return "r" if lifecycle.may_run_again(result) else "1"


class RedisTradeStore:
    shared = True

    def __init__(self, client: redis.Redis, replica_id: str) -> None:
        self._r = client
        self.replica_id = replica_id
        self._outbox = RedisOutbox(client)
        # (version, holdings) last read per (principal, mode), for the fill that follows a read
        self._last_read: dict[tuple[str, int], tuple[str, dict[str, Holding]]] = {}
        # Whether this replica can settle LIVE trades past the point of no return (it runs LIVE):
        # then it adopts them from a dead replica too.
        self.settles_live = False
        self._claim = client.register_script(_CLAIM)
        self._save = client.register_script(_SAVE)
        self._adopt = client.register_script(_ADOPT)
        self._write_if_unchanged = client.register_script(_WRITE_IF_UNCHANGED)
        self._void = client.register_script(_VOID)
        self._prune_fill_ids = client.register_script(_PRUNE_FILL_IDS)
        self._give_wallet = client.register_script(_GIVE_WALLET)
        self._history_batch = client.register_script(_HISTORY_BATCH_LUA)
        self.history_budget = HISTORY_SCAN_BUDGET

    @staticmethod
    def trade_key(principal_id: str, request_id: str) -> str:
        return f"tw:trade:{per_trade(principal_id, request_id)}"

    def _running_key(self) -> str:
        return f"tw:running:{self.replica_id}"

    # -- trades --------------------------------------------------------------------------

    def claim(self, principal_id: str, request_id: str, fingerprint: str, result: trade_pb2.TradeResult,
              request: trade_pb2.TradeRequest | None = None, slot: InFlightSlot | None = None) -> TradeRecord | None:
        keys = [self.trade_key(principal_id, request_id), f"tw:hist:{principal_id}", self._running_key(), "tw:seq",
                events_stream_key(principal_id, request_id)]
        args = [fingerprint, result.SerializeToString(), request.SerializeToString() if request else b"",
                self.replica_id, request_id, f"{principal_id}\x00{request_id}", result.mode, result.trade_id]
        if slot is not None:
            keys.append(slot.key)
            args += [slot.member, slot.limit, slot.lease_ms]
        existing = self._claim(keys=keys, args=args)
        if isinstance(existing, int):
            raise AtInFlightLimit(existing)
        if not existing:
            return None
        fp, raw, events = existing
        return TradeRecord(principal_id, request_id, fp.decode(), trade_pb2.TradeResult.FromString(raw),
                           unpack_events(events))

    def save(self, principal_id: str, result: trade_pb2.TradeResult,
             events: Sequence[trade_pb2.ExecutionStatus] = (), outbox: Sequence[OutboxEntry] = (),
             release: InFlightSlot | None = None, published: int | None = None) -> None:
        keys = [self.trade_key(principal_id, result.request_id), self._running_key()]
        args = [self.replica_id, result.SerializeToString(), pack_events(events) if events else b"",
                _terminal_flag(result),
                "1" if lifecycle.may_have_been_sent(result.status) else "", f"{principal_id}\x00{result.request_id}",
                release.member if release is not None else "", "" if published is None else published]
        if release is not None:
            keys.append(release.key)
        if outbox:  # in the same script: durable as the terminal state becomes visible
            outbox_keys, outbox_args = enqueue_keys_args(outbox)
            keys += outbox_keys
            args += outbox_args
        saved = self._save(keys=keys, args=args)
        if saved == -1:
            raise TradeLost(f"trade {result.request_id!r} is no longer in the shared store")
        if not saved:
            raise TakenOver(f"trade {result.request_id!r} is owned by another replica now")

    def owner(self, principal_id: str, request_id: str) -> str | None:
        """The replica that owns (runs) the trade."""
        owner = self._r.hget(self.trade_key(principal_id, request_id), "replica")
        return owner.decode() if owner else None

    def get(self, principal_id: str, request_id: str) -> TradeRecord | None:
        fp, raw, events, published = self._r.hmget(self.trade_key(principal_id, request_id),
                                                   "fp", "result", "events", "published")
        if raw is None:
            return None
        return TradeRecord(principal_id, request_id, fp.decode(), trade_pb2.TradeResult.FromString(raw),
                           unpack_events(events), _int_or_none(published))

    def request_of(self, principal_id: str, request_id: str) -> trade_pb2.TradeRequest | None:
        raw = self._r.hget(self.trade_key(principal_id, request_id), "request")
        return trade_pb2.TradeRequest.FromString(raw) if raw else None

    def unfinished(self) -> list[UnfinishedTrade]:
        """This replica's trades that never reached a terminal status, oldest first."""
        return self._unfinished(self._r.smembers(self._running_key()))

    def adopt(self, replica_id: str) -> list[UnfinishedTrade]:
        """Take over the running trades of ``replica_id``, presumed dead (its presence expired),
        that have not passed the point of no return, its PAPER ones past it, and (``settles_live``)
        its LIVE ones past it; the trades now this replica's to resume or settle."""
        members = self._adopt(keys=[presence_key(replica_id), f"tw:running:{replica_id}", self._running_key(),
                                    REGISTRY], args=[self.replica_id, replica_id, trade_pb2.TRADING_MODE_PAPER,
                                                     trade_pb2.TRADING_MODE_LIVE if self.settles_live else ""])
        return self._unfinished(members)

    def _unfinished(self, members) -> list[UnfinishedTrade]:
        out = []
        for member in members:
            principal_id, request_id = member.decode().split("\x00", 1)
            fp, raw, events, request, seq, published = self._r.hmget(
                self.trade_key(principal_id, request_id), "fp", "result", "events", "request", "seq", "published")
            if raw is None:
                continue
            record = TradeRecord(principal_id, request_id, fp.decode(), trade_pb2.TradeResult.FromString(raw),
                                 unpack_events(events), _int_or_none(published))
            out.append((int(seq), UnfinishedTrade(record, trade_pb2.TradeRequest.FromString(request) if request
                                                  else None)))
        return [u for _, u in sorted(out, key=lambda pair: pair[0])]

    def history(self, principal_id: str, query: HistoryQuery, limit: int, after: int | None) -> HistoryPage:
        """Newest first from the claim-ordered index; filters applied while reading. At most
        ``history_budget`` entries are examined: when they run out first, the page holds the
        trades found (perhaps none) and its cursor is the last entry examined."""
        check_page_limit(limit)
        trades: list[trade_pb2.TradeResult] = []
        cursors: list[int] = []
        high = f"({after}" if after is not None else "+inf"
        budget, size, examined = self.history_budget, 0, None
        prefix = f"tw:trade:{per_trade(principal_id, '')}"
        mint = query.mint.encode()
        ended = False
        while len(trades) <= limit and not ended:
            # What the page still needs (one more tells whether there is another page), twice
            # as many each time while the filter matches little.
            size = min(max(limit + 1 - len(trades), 2 * size), _HISTORY_BATCH, budget)
            if not size:  # the budget is spent: the rest is for the next page
                return HistoryPage(trades, examined)
            batch = self._history_batch(keys=[f"tw:hist:{principal_id}"], args=[high, size, prefix])
            budget -= len(batch) // 2
            ended = len(batch) < 2 * size  # the index ends here
            for score, raw in zip(batch[::2], batch[1::2], strict=True):
                # A trade of the mint holds its address as it is: one without it is not parsed
                # (unless start_time needs every created_at).
                if raw is None or (query.start_ns is None and mint not in raw):
                    continue
                result = trade_pb2.TradeResult.FromString(raw)
                created = lifecycle.ns_of(result.created_at)  # (ToNanoseconds cost more than the parse)
                if query.start_ns is not None and created < query.start_ns - _CREATED_ORDER_SLACK_NS:
                    ended = True  # every older trade was created before start_time
                    break
                if _matches(result, created, query):
                    trades.append(result)
                    cursors.append(int(float(score)))
                    if len(trades) > limit:
                        break
            if batch:
                examined = int(float(batch[-2]))
                high = f"({examined}"
        more = len(trades) > limit
        return HistoryPage(trades[:limit], cursors[limit - 1] if more else None)

    # -- holdings ------------------------------------------------------------------------

    def holdings(self, principal_id: str, mode: int) -> dict[str, Holding]:
        version, current = self._read_holdings(principal_id, mode)
        if len(self._last_read) >= _LAST_READ_KEPT:
            self._last_read.clear()
        self._last_read[(principal_id, mode)] = (version, current)
        return dict(current)

    def holdings_changed_ns(self, principal_id: str, mode: int) -> dict[str, int]:
        return {mint.decode(): int(ns) for mint, ns in self._r.hgetall(_changed_key(principal_id, mode)).items()}

    def _read_holdings(self, principal_id: str, mode: int) -> tuple[str, dict[str, Holding]]:
        """(version, holdings): the version to write them back against."""
        return _versioned_holdings(self._r.hgetall(f"tw:hold:{principal_id}:{mode}"))

    def _read_holdings_and_fill(self, principal_id: str, mode: int,
                                fill_id: str) -> tuple[str, dict[str, Holding], bool]:
        """(version, holdings, whether ``fill_id`` was applied to them), read at one instant."""
        pipe = self._r.pipeline(transaction=True)
        pipe.hgetall(f"tw:hold:{principal_id}:{mode}")
        pipe.sismember(self._fill_ids(principal_id, mode), fill_id)
        raw, applied = pipe.execute()
        return *_versioned_holdings(raw), bool(applied)

    def ensure_wallet(self, principal_id: str, mode: int, initial: Sequence[Holding]) -> None:
        # One script: a wallet marked as given always has its holdings (a write cut off between
        # the two would leave it empty for good, and another replica could read it in between).
        self._give_wallet(keys=[f"tw:wallet:{principal_id}:{mode}", f"tw:hold:{principal_id}:{mode}",
                                _changed_key(principal_id, mode)],
                          args=[x for h in initial for x in (h.mint, _pack_holding(h))])

    def apply_fill(self, principal_id: str, mode: int, legs: FillLegs, fill_id: str | None = None,
                   once: bool = False, receipt: str | None = None,
                   run: tuple[str, str] | None = None) -> dict[str, Holding]:
        """Optimistic: read, apply, and write in one script only if the version is unchanged,
        else read again (another replica booked meanwhile). Two round trips when uncontended,
        with or without a fill id (the id is checked in the read and again in the script); one
        when the holdings were just read and nobody wrote since.

        ``run`` (request id, trade id; with a fill id): the booking of that run of the trade, made
        only while the store holds that run, owned by this replica, in the same script — else
        nothing is written and TradeLost (the store lost it: restarted without its data, or the
        request id was claimed afresh since) or TakenOver (another replica owns it) is raised. A
        replica that lost a trade never books it into the store that forgot it."""
        keys = [f"tw:hold:{principal_id}:{mode}", _changed_key(principal_id, mode)]
        if fill_id is not None:
            keys += [self._fill_ids(principal_id, mode), _FILL_IDS_BY_TIME, self._receipts(principal_id, mode),
                     self._realized(principal_id, mode)]
            ids = [fill_id, receipt or "", _indexed(principal_id, mode, fill_id), time.time_ns()]
        else:
            ids = ["", "", "", ""]
        fence = ["", ""]
        if run is not None and fill_id is not None:
            keys.append(self.trade_key(principal_id, run[0]))
            fence = [self.replica_id, run[1]]
        # The last read (the paper executor's dry run, just before) is tried first: if nobody
        # wrote since, the fill costs one round trip, not two. (The script checks the fill id.)
        last_read = self._last_read.pop((principal_id, mode), None)
        while True:
            if last_read is not None:
                (version, current), last_read = last_read, None
                try:
                    updated = apply_fill(current, legs)
                except InsufficientBalance:
                    continue  # perhaps only short in that older read: decide on a fresh one
            else:
                if fill_id is None:
                    version, current = self._read_holdings(principal_id, mode)
                else:
                    version, current, applied = self._read_holdings_and_fill(principal_id, mode, fill_id)
                    if applied:  # checked before apply_fill: these holdings already include the fill
                        if once:
                            raise FillIdUsed(fill_id)
                        return current
                updated = apply_fill(current, legs)  # raises InsufficientBalance: nothing written
            changed = [x for m, h in updated.items() if current.get(m) != h for x in (m, _pack_holding(h))]
            # (the change is the one of this very version: written only if it is still the current one)
            written = self._write_if_unchanged(keys=keys, args=[version, *ids, realized_change(current, updated),
                                                                *fence, *changed])
            if written is not None and written < 0:
                _refused_by_the_fence(written, run[0])
            if written:
                return updated
            # None: the version moved; 0: another replica applied this very fill since the
            # read. Either way read again (the next read reports the latter as applied).

    def void_fill(self, principal_id: str, mode: int, fill_id: str, run: tuple[str, str] | None = None) -> bool:
        """``run`` (request id, trade id): voided only while the store holds that run of the trade,
        owned by this replica (else TradeLost or TakenOver, nothing written: see :meth:`apply_fill`)."""
        # The fill script checks the id before it writes: once in the set, no booking with it can land.
        keys = [self._fill_ids(principal_id, mode), _FILL_IDS_BY_TIME, self._receipts(principal_id, mode)]
        fence = ["", ""]
        if run is not None:
            keys.append(self.trade_key(principal_id, run[0]))
            fence = [self.replica_id, run[1]]
        voided = self._void(keys=keys, args=[fill_id, _indexed(principal_id, mode, fill_id), time.time_ns(),
                                             VOIDED_RECEIPT, *fence])
        if voided < 0:
            _refused_by_the_fence(voided, run[0])
        return bool(voided)

    def fill_receipt(self, principal_id: str, mode: int, fill_id: str) -> str | None:
        receipt = self._r.hget(self._receipts(principal_id, mode), fill_id)
        return None if receipt is None else receipt.decode()

    def fill_realized_change(self, principal_id: str, mode: int, fill_id: str) -> int | None:
        change = self._r.hget(self._realized(principal_id, mode), fill_id)
        return None if change is None else int(change)

    def prune_fill_ids(self, before_ns: int, limit: int) -> int:
        # Ids recorded before the time index existed are not in it, and are kept.
        return int(self._prune_fill_ids(keys=[_FILL_IDS_BY_TIME], args=[before_ns, limit]))

    @staticmethod
    def _fill_ids(principal_id: str, mode: int) -> str:
        return f"tw:fills:{principal_id}:{mode}"

    @staticmethod
    def _receipts(principal_id: str, mode: int) -> str:
        return f"tw:fill-receipts:{principal_id}:{mode}"

    @staticmethod
    def _realized(principal_id: str, mode: int) -> str:
        return f"tw:fill-pnl:{principal_id}:{mode}"

    # -- the webhook outbox, shared by every replica ----------------------------------------

    def outbox_take_due(self, now_ns: int, limit: int, lease_until_ns: int) -> list[OutboxEntry]:
        return self._outbox.take_due(now_ns, limit, lease_until_ns)

    def outbox_next_due_ns(self) -> int | None:
        return self._outbox.next_due_ns()

    def outbox_update(self, entry_id: str, state: str, attempts: int, next_attempt_ns: int, last_error: str) -> None:
        self._outbox.update(entry_id, state, attempts, next_attempt_ns, last_error)

    def outbox_prune_delivered(self, before_ns: int) -> int:
        return self._outbox.prune_delivered(before_ns)

    def outbox_counts(self) -> dict[str, int]:
        return self._outbox.counts()

    def outbox_entries(self, request_id: str | None = None) -> list[OutboxEntry]:
        return self._outbox.entries(request_id)

    def health(self) -> tuple[bool, str]:
        try:
            self._r.ping()
        except redis.RedisError as exc:
            return False, f"redis does not answer: {exc}"  # (redis-py's and fail_fast's texts say why)
        return True, f"redis (replica {self.replica_id})"

    def close(self) -> None:
        pass  # the Redis connection is the gateway's, closed with it


def _refused_by_the_fence(refusal: int, request_id: str) -> None:
    """Raise what the fence of a run's booking (or voiding) answered (_FENCE_LUA)."""
    if refusal == -1:
        raise TradeLost(f"this run of trade {request_id!r} is no longer in the shared store")
    raise TakenOver(f"trade {request_id!r} is owned by another replica now")


def _int_or_none(raw: bytes | None) -> int | None:
    return None if raw is None else int(raw)


def _indexed(principal_id: str, mode: int, fill_id: str) -> str:
    """A fill id's member in the time index: whose holdings, and the id."""
    return f"{principal_id}\x00{mode}\x00{fill_id}"


def _matches(result: trade_pb2.TradeResult, created: int, query: HistoryQuery) -> bool:
    return ((not query.mode or result.mode == query.mode)
            and (not query.mint or query.mint in (result.input_mint, result.output_mint))
            and (not query.statuses or result.status in query.statuses)
            and (query.start_ns is None or created >= query.start_ns)
            and (query.end_ns is None or created < query.end_ns))
