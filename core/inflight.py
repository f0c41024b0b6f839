"""The registry of running trades, per principal and in total, with limits.

A trade is *in flight* from the moment it is admitted (its idempotency key claimed) until
its terminal status is recorded. Admission checks both limits first and refuses with
RESOURCE_EXHAUSTED (reason TOO_MANY_IN_FLIGHT, QuotaFailure naming the limit) — nothing is
claimed for a refused trade, so the caller may retry the same request id later. The counts
are in HealthCheck (``caller.in_flight``, component ``in_flight``) and in the metrics
(``tradewire_trades_in_flight``, ``..._limit``, ``tradewire_trades_refused_total``).

In-process (DESIGN.md §5): check, claim and add run without an ``await`` in between, so
they are atomic on the event loop.

With Redis (``shared``, core/shared/redis_inflight.py) the per-principal limit holds across
every replica: the claim takes the caller's slot in Redis (``slot_for``), atomically with its
check and with the claim itself; ``taken`` notes it, ``add`` keeps it, the final save gives it
back (``remove(released=True)``; a plain ``remove`` gives it back on its own), and ``start``
renews this replica's leases so a replica that dies frees its slots.
The total limit stays per replica on purpose: it protects this process. The items, counts in
HealthCheck and metrics are this replica's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from tradewire.core.errors import QuotaViolation, TradewireError
from tradewire.core.shared import log_failure

if TYPE_CHECKING:
    from tradewire.core.shared.redis_inflight import InFlightSlot, RedisInFlight

log = logging.getLogger("tradewire.inflight")

Key = tuple[str, str]  # (principal id, request id)
T = TypeVar("T")


class AtInFlightLimit(Exception):
    """A shared store refused a claim: the caller already runs ``count`` trades across all
    replicas. Nothing was claimed."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} trades in flight")
        self.count = count


class InFlightRegistry(Generic[T]):
    def __init__(self, max_per_principal: int, max_total: int, metrics=None,
                 shared: RedisInFlight | None = None) -> None:
        if max_per_principal < 1 or max_total < 1:
            raise ValueError("in-flight limits must be at least 1")
        self.max_per_principal = max_per_principal
        self.max_total = max_total
        self._items: dict[Key, T] = {}
        self._per_principal: dict[str, int] = {}
        self._empty = asyncio.Event()
        self._empty.set()
        self._metrics = metrics
        self.shared = shared
        # Admission is synchronous from the claim to add, so at most one taken slot is pending.
        self._reserved: Key | None = None
        self._renewal: asyncio.Task | None = None
        if metrics is not None:
            metrics.in_flight_limit.labels("principal").set(max_per_principal)
            metrics.in_flight_limit.labels("total").set(max_total)
            metrics.trades_running.set(0)

    def check(self, principal_id: str, across_replicas: int | None = None) -> None:
        """Raise TOO_MANY_IN_FLIGHT when one more trade of ``principal_id`` would exceed a limit;
        ``across_replicas`` is the caller's count when ``reserve`` refused it."""
        mine = self._per_principal.get(principal_id, 0)
        if mine >= self.max_per_principal:
            self._refuse("principal", f"principal:{principal_id}", self.max_per_principal,
                         f"{mine} trades of this caller are running (limit {self.max_per_principal})")
        if len(self._items) >= self.max_total:
            self._refuse("total", "gateway", self.max_total,
                         f"{len(self._items)} trades are running on this gateway (limit {self.max_total})")
        if across_replicas is not None:
            self._refuse("principal", f"principal:{principal_id}", self.max_per_principal,
                         f"{across_replicas} trades of this caller are running across all replicas "
                         f"(limit {self.max_per_principal})")

    def slot_for(self, key: Key) -> InFlightSlot | None:
        """With ``shared``: the caller's slot, for the store to take with the claim (or give
        back with the final save)."""
        return None if self.shared is None else self.shared.slot(key[0], key[1], self.max_per_principal)

    def taken(self, key: Key) -> None:
        """The claim took ``key``'s slot across replicas: ``add`` keeps it."""
        self._reserved = key

    def _release(self, key: Key) -> None:
        try:
            self.shared.release(*key)
        except Exception:  # the trade ended or never started either way; its lease lapses on its own
            log_failure(log, "releasing the in-flight lease of %s failed", key[1])

    def _refuse(self, scope: str, subject: str, limit: int, message: str) -> None:
        if self._metrics is not None:
            self._metrics.in_flight_refused.labels(scope).inc()
        raise TradewireError(
            "TOO_MANY_IN_FLIGHT", f"too many trades in flight: {message}; retry when some have finished",
            retry_after_s=1.0,
            quota_violations=(QuotaViolation(subject, f"at most {limit} trades in flight"),),
            metadata={"scope": scope, "limit": str(limit)},
        )

    def add(self, key: Key, item: T) -> None:
        if key in self._items:
            raise KeyError(f"{key} is already in flight")
        if self.shared is not None:
            if self._reserved == key:
                self._reserved = None
            else:  # not admitted here (resumed after a restart): it runs, so it counts
                self.shared.hold(*key)
        self._items[key] = item
        self._per_principal[key[0]] = self._per_principal.get(key[0], 0) + 1
        self._empty.clear()
        self._update()

    def remove(self, key: Key, released: bool = False) -> T | None:
        """``released``: the store gave its shared slot back already (with the final save)."""
        item = self._items.pop(key, None)
        if item is None:
            return None
        left = self._per_principal[key[0]] - 1
        if left:
            self._per_principal[key[0]] = left
        else:
            del self._per_principal[key[0]]
        if not self._items:
            self._empty.set()
        self._update()
        if self.shared is not None and not released:
            self._release(key)
        return item

    # -- lease renewal (shared only), with the core's lifecycle -------------------------------

    def start(self) -> None:
        if self.shared is not None and self._renewal is None:
            self._renewal = asyncio.create_task(self.shared.keep_renewed(self._items.keys),
                                                name="in-flight-lease-renewal")

    async def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            await asyncio.gather(self._renewal, return_exceptions=True)
            self._renewal = None

    def _update(self) -> None:
        if self._metrics is not None:
            self._metrics.trades_running.set(len(self._items))

    def get(self, key: Key) -> T | None:
        return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    def count(self, principal_id: str | None = None) -> int:
        return len(self._items) if principal_id is None else self._per_principal.get(principal_id, 0)

    async def wait_empty(self, timeout: float | None) -> bool:
        """True once nothing is in flight; False if ``timeout`` passed first."""
        if not self._items:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._empty.wait()
        except TimeoutError:
            return False
        return True
