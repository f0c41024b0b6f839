"""The LIVE reservation book shared by every replica trading one wallet (see
core/executors/live/reservations.py for what a reservation is and what the book answers).

Keys (``{w}`` the wallet's address; a trade's field is ``{principal}\\x00{request id}``):
  tw:live:held:{w}        hash: trade → the replica holding it, a newline, its reservation
  tw:live:lease:{w}       sorted set: trade → when its hold lapses (ms, Redis's clock)
  tw:live:released:{w}    sorted set: trade + reservation → when it was released (µs, Redis's clock)

**Admitting** is an optimistic transaction: WATCH the three keys, read them, run the checks on
the sum of the other trades' reservations, then MULTI/EXEC the trade's own hold. A replica
that changed the book in between makes EXEC fail, and the admission is made again on what it
wrote; so two trades never both pass on the same room, on one replica or several.

**Epochs** are Redis's clock: a check counts every reservation released at or after the time
read before its balance read (a tie counts: the safe side). The balances' ``settled`` trades
are this replica's own (it reads the statuses of the transactions it follows), so another
replica's transaction that has landed but is not final yet counts twice — in the balances and
in its hold — until its replica releases it: refusing a trade that fits, never passing one
that does not.

**Leases.** A replica renews the holds of its trades every lease/3 (writing them again, so a
hold that lapsed during a stall counts again). A replica that dies stops renewing: its
trades' holds lapse a lease later — by then another replica has adopted its sent
transactions and holds them again under the same field (core/shared/redis_replicas.py), and
its unsent trades never will be sent. A replica ends only its own hold: one presumed dead that
wakes and lets go of a trade another replica took over leaves that replica's hold as it is.

While Redis does not answer, no LIVE trade is admitted (STORE_UNAVAILABLE, retryable); a hold
or release that cannot be written is left to the renewals and the lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
import redis

from tradewire.core.errors import TradewireError, store_unavailable
from tradewire.core.executors.live.reservations import (
    RELEASED_KEPT_S, InFlight, Key, Refusal, Reservation,
)
from tradewire.core.outage import Outage
from tradewire.core.shared import STORE_OUTAGES, keep_renewed

log = logging.getLogger("tradewire.live")

ADMIT_ATTEMPTS = 50  # optimistic retries when other replicas keep changing the book

# KEYS: held, lease; ARGV: lease ms, then field, packed reservation pairs. Writes each hold
# again (a lapsed one included) and its lease from Redis's clock.
_HOLD = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], until_ms, ARGV[i])
end
return (#ARGV - 1) / 2
"""

# KEYS: held, lease, released; ARGV: field, packed reservation, µs kept, "{replica}\n". The
# hold ends if it is this replica's; its reservation is kept as released (now), and releases
# older than kept are dropped.
_RELEASE = """
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and string.sub(held, 1, #ARGV[4]) == ARGV[4] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('ZADD', KEYS[3], now_us, ARGV[1] .. '\\n' .. ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_us - tonumber(ARGV[3]))
return 1
"""


class SharedReservations:
    """One wallet's reservations, in Redis, for every replica trading it."""

    def __init__(self, client: redis.Redis, wallet: str, lease_s: float, replica_id: str) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        self._r = client
        self._owner = f"{replica_id}\n".encode()
        self.lease_s = lease_s
        self._lease_ms = max(1, round(lease_s * 1000))
        self._held_key = f"tw:live:held:{wallet}"
        self._lease_key = f"tw:live:lease:{wallet}"
        self._released_key = f"tw:live:released:{wallet}"
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)
        self._mine: dict[Key, Reservation] = {}  # the holds this replica renews

    def epoch(self) -> int:
        try:
            seconds, micros = self._r.time()
        except STORE_OUTAGES as exc:
            raise _unavailable("reading the reservation book's clock", exc) from None
        return seconds * 1_000_000 + micros

    def admit(self, key: Key, since: int, settled: frozenset[Key], check: Callable[[InFlight], Refusal | None],
              make: Callable[[], Reservation]) -> Refusal | None:
        own = _field(key)
        try:
            for _ in range(ADMIT_ATTEMPTS):
                with self._r.pipeline() as pipe:
                    try:
                        pipe.watch(self._held_key, self._lease_key, self._released_key)
                        others, lapsed, now_ms = self._others(pipe, own, since, settled)
                        refusal = check(others)
                        if refusal is not None:
                            return refusal
                        reservation = make()
                        pipe.multi()
                        pipe.hset(self._held_key, own, self._held(reservation))
                        pipe.zadd(self._lease_key, {own: now_ms + self._lease_ms})
                        if lapsed:  # holds of a replica gone for a lease: no longer counted by anyone
                            pipe.hdel(self._held_key, *lapsed)
                            pipe.zrem(self._lease_key, *lapsed)
                        pipe.execute()
                    except redis.WatchError:
                        continue
                self._mine[key] = reservation
                return None
        except STORE_OUTAGES as exc:
            raise _unavailable("admitting a LIVE trade", exc) from None
        log.warning("the LIVE reservation book kept changing under %d admissions; trade %s not admitted",
                    ADMIT_ATTEMPTS, key[1])
        raise TradewireError("STORE_UNAVAILABLE", "too many LIVE trades are being admitted at once; retry the call "
                             "(with the same request_id, a trade runs at most once)", retry_after_s=1.0)

    def _others(self, pipe, own: bytes, since: int, settled: frozenset[Key]) -> tuple[InFlight, list[bytes], int]:
        """The other trades' reservations a check counts, the holds that lapsed, and Redis's now (ms)."""
        seconds, micros = pipe.time()
        now_ms = seconds * 1000 + micros // 1000
        held = pipe.hgetall(self._held_key)
        leases = dict(pipe.zrange(self._lease_key, 0, -1, withscores=True))
        released = pipe.zrangebyscore(self._released_key, since, "+inf")
        others, lapsed = InFlight(), []
        for field, packed in held.items():
            if field == own:  # (written again by this admission)
                continue
            if leases.get(field, 0) < now_ms:
                lapsed.append(field)
            else:
                others.add(_unpack(packed.rsplit(b"\n", 1)[1]), _key(field) in settled)
        for member in released:
            field, packed = member.rsplit(b"\n", 1)  # (packed JSON has no raw newline)
            others.add(_unpack(packed), _key(field) in settled)
        return others, lapsed, now_ms

    def hold(self, key: Key, reservation: Reservation) -> None:
        self._mine[key] = reservation
        try:
            self._hold(keys=[self._held_key, self._lease_key],
                       args=[self._lease_ms, _field(key), self._held(reservation)])
        except STORE_OUTAGES as exc:
            log.warning("the hold of LIVE trade %s is not in the shared book yet (%s); the next renewal writes it",
                        key[1], exc)

    def holds(self, key: Key) -> bool:
        return key in self._mine

    def release(self, key: Key) -> None:
        reservation = self._mine.pop(key, None)
        if reservation is None:
            return
        try:
            self._release(keys=[self._held_key, self._lease_key, self._released_key],
                          args=[_field(key), _pack(reservation), round(RELEASED_KEPT_S * 1_000_000), self._owner])
        except STORE_OUTAGES as exc:  # no longer renewed: it lapses with its lease
            log.warning("the hold of LIVE trade %s stays in the shared book until its lease ends (%s)", key[1], exc)

    def renew(self) -> int:
        """Write this replica's holds again with a fresh lease, in one round trip; returns how many."""
        if not self._mine:
            return 0
        pairs = [item for key, r in self._mine.items() for item in (_field(key), self._held(r))]
        return self._hold(keys=[self._held_key, self._lease_key], args=[self._lease_ms, *pairs])

    def _held(self, r: Reservation) -> bytes:
        return self._owner + _pack(r)

    async def keep_renewed(self) -> None:
        """Renew every lease/3 until cancelled."""
        outage = Outage(log, "LIVE reservation renewal (Redis)", "holds lapse if it lasts past a lease")
        await keep_renewed(self.lease_s, self.renew, outage, log, "renewing the LIVE reservations failed")


def _unavailable(what: str, exc: Exception) -> TradewireError:
    log.warning("%s: the shared store did not answer (%s: %s)", what, type(exc).__name__, exc)
    return store_unavailable()


def _field(key: Key) -> bytes:
    return f"{key[0]}\x00{key[1]}".encode()


def _key(field: bytes) -> Key:
    principal, request_id = field.decode().split("\x00", 1)
    return principal, request_id


def _pack(r: Reservation) -> bytes:
    return orjson.dumps([r.spend, r.buy_mint, r.buy, r.loss])


def _unpack(packed: bytes) -> Reservation:
    spend, buy_mint, buy, loss = orjson.loads(packed)
    return Reservation(spend, buy_mint, buy, loss)
