"""The LIVE journal of one replica, with the realised PnL of its bookings also counted in Redis
per UTC day, so the daily loss limit (safety check DAILY_LOSS) holds across every replica that
trades the wallet — each replica's own journal only knows its own bookings.

Keys (``{day}`` days since the epoch, UTC; both expire after a few days):
  tw:live:pnl:{day}        hash: signature → its booking's realised-PnL change
  tw:live:pnl-total:{day}  their sum

A booking is counted once whoever reports it and however often (HSETNX by signature). The
replica's journal stays the record: a booking is written there first, then counted here; a
count Redis did not take is kept and sent again before the next check, and at start-up the
day's bookings in the journal are counted again (a no-op for those already counted). While
Redis does not answer, :meth:`realized_since` raises, so a LIVE trade whose daily-loss check
cannot be made is refused (UNAVAILABLE STORE_UNAVAILABLE), never let through.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import redis

from tradewire.core.executors.live.safety import DAY_NS
from tradewire.core.shared import STORE_OUTAGES
from tradewire.core.store.live_orders import LiveOrderStore

log = logging.getLogger("tradewire.shared")

_KEPT_S = 3 * 86_400

# KEYS: the day's hash, the day's total; ARGV: signature, PnL change, seconds kept.
_COUNT_ONCE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('INCRBY', KEYS[2], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
"""


class SharedPnlLiveOrders(LiveOrderStore):
    def __init__(self, path: Path | str, client: redis.Redis) -> None:
        super().__init__(path)
        self._r = client
        self._count_once = client.register_script(_COUNT_ONCE)
        self._uncounted: dict[str, tuple[int, int]] = {}  # signature → (day, PnL change) Redis did not take
        today = time.time_ns() // DAY_NS * DAY_NS
        for row in self.final_since(today):
            if row.pnl_delta:
                self._uncounted[row.signature] = (today // DAY_NS, row.pnl_delta)
        try:
            self._count_uncounted()
        except STORE_OUTAGES as exc:
            log.warning("today's LIVE bookings could not be counted in Redis yet (%s); counted before the next "
                        "daily-loss check", exc)

    def booked(self, signature: str, pnl_delta: int) -> None:
        super().booked(signature, pnl_delta)
        if not pnl_delta:
            return
        self._uncounted[signature] = (time.time_ns() // DAY_NS, pnl_delta)
        try:
            self._count_uncounted()
        except STORE_OUTAGES as exc:
            log.warning("a LIVE booking could not be counted in Redis yet (%s); counted before the next "
                        "daily-loss check", exc)

    def realized_since(self, since_ns: int) -> int:
        """The realised PnL of every replica's LIVE bookings on the UTC days from ``since_ns``'s
        to today (the daily-loss check asks from today's start)."""
        self._count_uncounted()
        days = range(since_ns // DAY_NS, max(since_ns, time.time_ns()) // DAY_NS + 1)
        return sum(int(total) for total in self._r.mget([_total(day) for day in days]) if total is not None)

    def _count_uncounted(self) -> None:
        for signature, (day, pnl_delta) in list(self._uncounted.items()):
            self._count_once(keys=[f"tw:live:pnl:{day}", _total(day)], args=[signature, pnl_delta, _KEPT_S])
            del self._uncounted[signature]


def _total(day: int) -> str:
    return f"tw:live:pnl-total:{day}"
