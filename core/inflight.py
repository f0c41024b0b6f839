"""The registry of running trades, per principal and in total, with limits.

A trade is *in flight* from the moment it is admitted (its idempotency key claimed) until
its terminal status is recorded. Admission checks both limits first and refuses with
RESOURCE_EXHAUSTED (reason TOO_MANY_IN_FLIGHT, QuotaFailure naming the limit) — nothing is
claimed for a refused trade, so the caller may retry the same request id later. The counts
are in HealthCheck (``caller.in_flight``, component ``in_flight``) and in the metrics
(``tradewire_trades_in_flight``, ``..._limit``, ``tradewire_trades_refused_total``).

In-process (DESIGN.md §5): check, claim and add run without an ``await`` in between, so
they are atomic on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Generic, TypeVar

from tradewire.core.errors import QuotaViolation, TradewireError

Key = tuple[str, str]  # (principal id, request id)
T = TypeVar("T")


class InFlightRegistry(Generic[T]):
    def __init__(self, max_per_principal: int, max_total: int, metrics=None) -> None:
        if max_per_principal < 1 or max_total < 1:
            raise ValueError("in-flight limits must be at least 1")
        self.max_per_principal = max_per_principal
        self.max_total = max_total
        self._items: dict[Key, T] = {}
        self._per_principal: dict[str, int] = {}
        self._empty = asyncio.Event()
        self._empty.set()
        self._metrics = metrics
        if metrics is not None:
            metrics.in_flight_limit.labels("principal").set(max_per_principal)
            metrics.in_flight_limit.labels("total").set(max_total)
            metrics.trades_running.set(0)

    def check(self, principal_id: str) -> None:
        """Raise TOO_MANY_IN_FLIGHT when one more trade of ``principal_id`` would exceed a limit."""
        mine = self._per_principal.get(principal_id, 0)
        if mine >= self.max_per_principal:
            self._refuse("principal", f"principal:{principal_id}", self.max_per_principal,
                         f"{mine} trades of this caller are running (limit {self.max_per_principal})")
        if len(self._items) >= self.max_total:
            self._refuse("total", "gateway", self.max_total,
                         f"{len(self._items)} trades are running on this gateway (limit {self.max_total})")

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
        self._items[key] = item
        self._per_principal[key[0]] = self._per_principal.get(key[0], 0) + 1
        self._empty.clear()
        self._update()

    def remove(self, key: Key) -> T | None:
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
        return item

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
