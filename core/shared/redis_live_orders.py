"""The LIVE journal of one replica, with what the other replicas need from it in Redis: the
transactions it sends, so another replica can settle them by signature if this one dies, and
the realised PnL of its bookings, so the daily loss limit counts every replica's.

Keys (``{p}`` principal, ``{r}`` request id, ``{day}`` days since the epoch, UTC):
  tw:live:sent:{p}:{r}     hash: signature, row — the journal row of the trade's transaction
  tw:live:pnl:{day}        hash: signature → its booking's realised-PnL change
  tw:live:pnl-total:{day}  their sum
  tw:live:signature:{s}    the trade ({p}\x00{r}) whose transaction has signature {s}

**Sends.** A transaction is recorded in Redis before its first send, by a script that first
checks this replica still owns the trade (the trade's ``replica``): a replica presumed dead,
whose trade another has adopted, finds the record refused and never sends (nor does one whose
record Redis does not answer: the trade is refused STORE_UNAVAILABLE). So for a trade
whose owner records its sends (the trade's ``handover``, set by the claim), "no record" means
"never sent and never will be", and a record names the only transaction that may be on the
network. The adopter imports that row into its own journal (:meth:`adopt`) and follows it by
signature like any pending transaction of its own; the booking's fill id (the signature) keeps
it booked once, whichever replica books it. A record whose transaction the RPC's preflight
refused (never forwarded: the journal voids it) is forgotten, so the trade may sign anew.

**Signatures.** Two replicas trading one wallet can build byte-identical swaps for two
requests in the same slot: one signature, which the chain executes once for both. Each
signature is claimed for its trade in Redis before it is journaled; a replica that finds it
claimed by another trade builds again on a later blockhash, as for a collision in its own
journal.

**Daily loss.** A booking is counted once per signature, whichever replica reports it and
however often (HSETNX). The replica's journal stays the record: a booking is written there
first, then counted here; a count Redis did not take is kept and sent before the next check,
and at start-up the day's bookings in the journal are counted again (no-ops for those already
counted). While Redis does not answer, :meth:`realized_since` raises, so a LIVE trade whose
daily-loss check cannot be made is refused (UNAVAILABLE STORE_UNAVAILABLE), never let through.
"""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path

import orjson
import redis

from tradewire.core.errors import store_unavailable
from tradewire.core.executors.live.safety import DAY_NS
from tradewire.core.shared import STORE_OUTAGES, per_trade
from tradewire.core.shared.redis_store import RedisTradeStore
from tradewire.core.store.live_orders import PENDING, PREPARED, LiveOrder, LiveOrderStore

log = logging.getLogger("tradewire.shared")

_PNL_KEPT_S = 3 * 86_400
_SENT_KEPT_S = 30 * 86_400  # a dead replica's trades are adopted within seconds; this is a backstop
_SIGNATURE_KEPT_S = 3_600  # far past a blockhash's life (~150 slots): the bytes can no longer land

# KEYS: the trade, its sent record; ARGV: this replica, signature, packed row, seconds kept.
# Records the transaction only while this replica owns the trade; returns 0 otherwise.
_RECORD_IF_OWNER = """
if redis.call('HGET', KEYS[1], 'replica') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'signature', ARGV[2], 'row', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# KEYS: the trade's sent record; ARGV: signature. Forgets the record only if it names that transaction.
_FORGET_SENT = """
if redis.call('HGET', KEYS[1], 'signature') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: the signature's key; ARGV: the trade, seconds kept. The trade that has the signature
# (this one when nobody had it). (SET NX GET would need Redis 7.)
_CLAIM_SIGNATURE = """
local owner = redis.call('GET', KEYS[1])
if owner then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""

# KEYS: the day's hash, the day's total; ARGV: signature, PnL change, seconds kept.
_COUNT_ONCE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('INCRBY', KEYS[2], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
"""


class SharedLiveOrders(LiveOrderStore):
    def __init__(self, path: Path | str, client: redis.Redis, replica_id: str) -> None:
        super().__init__(path)
        self._r = client
        self.replica_id = replica_id
        self._record_if_owner = client.register_script(_RECORD_IF_OWNER)
        self._count_once = client.register_script(_COUNT_ONCE)
        self._forget_sent = client.register_script(_FORGET_SENT)
        self._claim_signature = client.register_script(_CLAIM_SIGNATURE)
        self._uncounted: dict[str, tuple[int, int]] = {}  # signature → (day, PnL change) Redis did not take
        today = time.time_ns() // DAY_NS * DAY_NS
        for row in self.final_since(today):
            if row.pnl_delta:
                self._uncounted[row.signature] = (today // DAY_NS, row.pnl_delta)
        self._count_when_possible("today's LIVE bookings")

    # -- sends --------------------------------------------------------------------------------

    def mark_pending(self, signature: str) -> bool:
        """Record the transaction in Redis while this replica owns its trade, then locally; False
        (and the transaction voided) when another replica has taken the trade over. When Redis
        does not answer, the transaction is voided too, never sent (STORE_UNAVAILABLE): sent
        unrecorded, a replica adopting the trade would find nothing sent, and sign and send anew.
        (A record Redis took before its answer was lost names a transaction never sent: one an
        adopter follows only ever expires, and the trade's next send replaces it.)"""
        row = self.get(signature)
        if row is None or row.state != PREPARED:
            return False
        try:
            recorded = self._record(row)
        except STORE_OUTAGES as exc:
            log.warning("transaction %s of trade %s could not be recorded for the other replicas: the shared store "
                        "did not answer (%s: %s); not sending it", signature, row.request_id, type(exc).__name__, exc)
            self.void(signature)
            raise store_unavailable() from None
        if not recorded:
            log.warning("trade %s was taken over by another replica before its transaction was sent; not sending it",
                        row.request_id)
            self.void(signature)
            return False
        return super().mark_pending(signature)

    def claim_signature(self, signature: str, principal: str, request_id: str) -> bool:
        """Also no other replica's trade has it: claimed for this one (STORE_UNAVAILABLE while
        Redis does not answer: nothing is signed that might collide unseen)."""
        if not super().claim_signature(signature, principal, request_id):
            return False
        trade = f"{principal}\x00{request_id}".encode()
        try:
            owner = self._claim_signature(keys=[f"tw:live:signature:{signature}"], args=[trade, _SIGNATURE_KEPT_S])
        except STORE_OUTAGES as exc:
            log.warning("the signature of a LIVE transaction could not be claimed: the shared store did not answer "
                        "(%s: %s)", type(exc).__name__, exc)
            raise store_unavailable() from None
        return owner == trade

    def void_refused(self, signature: str) -> bool:
        """Void it here, then forget its record, so no replica ever follows a transaction that
        is not on the network. A record Redis does not forget now is harmless: the next send for
        the trade replaces it, and one followed by an adopter only ever expires."""
        row = self.get(signature)
        if row is None or not super().void_refused(signature):
            return False
        try:
            self._forget_sent(keys=[_sent_key(row.principal, row.request_id)], args=[signature])
        except STORE_OUTAGES as exc:
            log.warning("the record of transaction %s, refused before it reached the network, stays in Redis (%s)",
                        signature, exc)
        return True

    def set_bundle_id(self, signature: str, bundle_id: str) -> None:
        """The id the block engine returned for the bundle, when it differs: the record follows
        when Redis answers (the bundle is sent by now: this must not fail it; an adopter asking
        under the old id only re-broadcasts it, and the signature still decides)."""
        super().set_bundle_id(signature, bundle_id)
        try:
            self._record(self.get(signature))
        except STORE_OUTAGES as exc:
            log.warning("the block engine's id of bundle %s stays unrecorded in Redis (%s)", bundle_id, exc)

    def _record(self, row: LiveOrder) -> bool:
        """Record the row for the other replicas, if this replica still owns its trade."""
        keys = [RedisTradeStore.trade_key(row.principal, row.request_id), _sent_key(row.principal, row.request_id)]
        return bool(self._record_if_owner(keys=keys, args=[self.replica_id, row.signature, _pack(row), _SENT_KEPT_S]))

    def adopt(self, principal: str, request_id: str) -> LiveOrder | None:
        """The transaction another replica sent for this trade (now this replica's), imported
        into this journal as pending; None when none was ever sent."""
        raw = self._r.hget(_sent_key(principal, request_id), "row")
        if raw is None:
            return None
        row = _unpack(raw)
        self.import_pending(row)
        log.warning("following transaction %s of trade %s, sent by a replica that stopped", row.signature, request_id)
        return self.for_request(principal, request_id)  # (or the one it already had)

    # -- daily loss ---------------------------------------------------------------------------

    def booked(self, signature: str, pnl_delta: int) -> None:
        super().booked(signature, pnl_delta)
        if not pnl_delta:
            return
        self._uncounted[signature] = (time.time_ns() // DAY_NS, pnl_delta)
        self._count_when_possible("a LIVE booking")

    def realized_since(self, since_ns: int) -> int:
        """The realised PnL of every replica's LIVE bookings on the UTC days from ``since_ns``'s
        to today (the daily-loss check asks from today's start)."""
        self._count_uncounted()
        days = range(since_ns // DAY_NS, max(since_ns, time.time_ns()) // DAY_NS + 1)
        return sum(int(total) for total in self._r.mget([_total(day) for day in days]) if total is not None)

    def _count_when_possible(self, what: str) -> None:
        try:
            self._count_uncounted()
        except STORE_OUTAGES as exc:  # kept: counted before the next check
            log.warning("%s could not be counted in Redis yet (%s); counted before the next daily-loss check",
                        what, exc)

    def _count_uncounted(self) -> None:
        for signature, (day, pnl_delta) in list(self._uncounted.items()):
            self._count_once(keys=[f"tw:live:pnl:{day}", _total(day)], args=[signature, pnl_delta, _PNL_KEPT_S])
            del self._uncounted[signature]


def _sent_key(principal: str, request_id: str) -> str:
    return f"tw:live:sent:{per_trade(principal, request_id)}"


def _total(day: int) -> str:
    return f"tw:live:pnl-total:{day}"


def _pack(row: LiveOrder) -> bytes:
    """What another replica needs to follow the transaction (not its local bookkeeping)."""
    b64 = base64.b64encode
    return orjson.dumps({
        "signature": row.signature, "principal": row.principal, "request_id": row.request_id, "route": row.route,
        "tx": b64(row.tx).decode(), "bundle": [b64(w).decode() for w in row.bundle], "bundle_id": row.bundle_id,
        "last_valid_block_height": row.last_valid_block_height, "request": b64(row.request).decode(),
        "quote": row.quote, "created_ns": row.created_ns,
    })


def _unpack(raw: bytes) -> LiveOrder:
    data = orjson.loads(raw)
    b64 = base64.b64decode
    return LiveOrder(
        signature=data["signature"], principal=data["principal"], request_id=data["request_id"], state=PENDING,
        route=data["route"], tx=b64(data["tx"]), bundle=tuple(b64(w) for w in data["bundle"]),
        bundle_id=data["bundle_id"], last_valid_block_height=data["last_valid_block_height"],
        request=b64(data["request"]), quote=data["quote"], outcome=None, booked=0, pnl_delta=None, broadcasts=0,
        created_ns=data["created_ns"], realized_before=None)
