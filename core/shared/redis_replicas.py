"""Which replicas are alive, and what becomes of the trades of one that is not.

Each replica keeps a presence key, ``tw:alive:{replica}``, that expires ``ttl_s`` after its
last beat (one every ttl/3), and lists itself in ``tw:replicas``. Each beat also looks for
listed replicas whose presence expired — crashed, partitioned away, or shut down — and adopts
their unfinished trades (RedisTradeStore.adopt: those not past the point of no return, PAPER
ones past it, and LIVE ones past it when this replica runs LIVE), which ``on_adopted`` then
resumes or settles here (TradeRunner.recover). A replica shut down gracefully drops its
presence once its unfinished trades are saved, so the others take them over at once.

A replica whose beat finds its own presence had expired was presumed dead meanwhile (a stall
longer than ``ttl_s``): its adopted trades are no longer its to write — the store refuses its
saves — and it says so in the log. A replica judges the others only once its own beats have
held for a whole ``ttl_s``: after an outage every presence has lapsed at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import redis

from tradewire.core.metrics import Metrics
from tradewire.core.outage import Outage
from tradewire.core.shared import count_failure

log = logging.getLogger("tradewire.shared")

REGISTRY = "tw:replicas"
BEAT_RETRY_S = 0.25


def presence_key(replica_id: str) -> str:
    return f"tw:alive:{replica_id}"


class ReplicaPresence:
    def __init__(self, client: redis.Redis, replica_id: str, ttl_s: float,
                 adopt: Callable[[str], list], on_adopted: Callable[[list], Awaitable[object]],
                 metrics: Metrics | None = None) -> None:
        """``adopt(replica)`` takes over a dead replica's trades and returns them;
        ``on_adopted(trades)`` resumes or settles them."""
        self._r = client
        self._metrics = metrics
        self.replica_id = replica_id
        self.ttl_s = ttl_s
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._adopt = adopt
        self._on_adopted = on_adopted
        self._beats = 0
        self._present_since = 0.0  # monotonic: since when this replica's beats have held unbroken
        self._task: asyncio.Task | None = None
        self._adopting = True

    def beat(self) -> bool:
        """Renew this replica's presence; False when it had expired (presumed dead meanwhile)."""
        pipe = self._r.pipeline(transaction=False)
        pipe.set(presence_key(self.replica_id), b"1", px=self._ttl_ms, get=True)
        pipe.sadd(REGISTRY, self.replica_id)
        previous, _ = pipe.execute()
        lapsed = self._beats > 0 and previous is None
        self._beats += 1
        return not lapsed

    def dead(self) -> list[str]:
        """Listed replicas, other than this one, whose presence expired."""
        others = [r.decode() for r in self._r.smembers(REGISTRY) if r.decode() != self.replica_id]
        dead = []
        if others:
            pipe = self._r.pipeline(transaction=False)
            for replica in others:
                pipe.exists(presence_key(replica))
            dead = [replica for replica, alive in zip(others, pipe.execute()) if not alive]
        if self._metrics is not None:
            self._metrics.replicas_alive.set(1 + len(others) - len(dead))
        return dead

    async def sweep(self) -> int:
        """Adopt and resume the unfinished trades of every dead replica; how many."""
        adopted = 0
        for replica in self.dead():
            trades = self._adopt(replica)
            if trades:
                log.warning("replica %s stopped beating: %d of its unfinished trades resume here",
                            replica, len(trades))
                await self._on_adopted(trades)
                adopted += len(trades)
                if self._metrics is not None:
                    self._metrics.trades_handed_over.labels("adopted").inc(len(trades))
        return adopted

    def stop_adopting(self) -> None:
        """A replica shutting down beats on (its own trades are still its own) but takes no
        other replica's: it would start them only to leave them unfinished again."""
        self._adopting = False

    def start(self) -> None:
        """Beat now (before this replica recovers its own trades), then every ttl/3."""
        self.beat()
        self._present_since = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._keep_beating(), name="replica-presence")

    async def _keep_beating(self) -> None:
        outage = Outage(log, "replica presence (Redis)",
                        "other replicas adopt this one's unfinished trades if it lasts past the presence ttl")
        while True:
            try:
                if not self.beat():
                    log.error("this replica was presumed dead (no beat for %.0f s): other replicas may have "
                              "taken over its unfinished trades", self.ttl_s)
                    self._present_since = time.monotonic()
                if outage.active:
                    outage.answered()
                    self._present_since = time.monotonic()
                # Only a replica that has beaten for a whole ttl judges the others: after an outage
                # (Redis away, or this one stalled) every presence has lapsed, and the replicas
                # still alive need that long to beat again before their trades could be taken.
                if self._adopting and time.monotonic() - self._present_since >= self.ttl_s:
                    await self.sweep()
                else:
                    self.dead()  # adopts nothing: counts the replicas alive (the gauge read 0 until then)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: keep trying, the presence lapses meanwhile
                count_failure(outage, log, "replica presence: beat or adoption failed; retrying")
            # After a failed beat, try again soon: a short Redis outage must not outlast the presence.
            await asyncio.sleep(min(self.ttl_s / 3, BEAT_RETRY_S) if outage.active else self.ttl_s / 3)

    async def stop(self, leave: bool = True) -> None:
        """Stop beating; with ``leave``, drop the presence so the others adopt at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if leave:
            try:
                self._r.delete(presence_key(self.replica_id))
            except redis.RedisError:
                log.warning("could not drop this replica's presence; others adopt its trades once it expires")
