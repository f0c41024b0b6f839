"""Forgets the fill ids (and receipts) a store keeps once no settlement can need them.

A fill id keeps a booking from landing twice while its trade may still be settled by a
restart or by another replica; that happens within minutes, so ids are kept for
``storage.fill_ids_keep_s`` (30 days by default) and then deleted, in small batches so the
event loop keeps serving between them. Every replica on a shared store runs this; the
deletions are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from tradewire.core.shared import log_failure
from tradewire.core.store.base import TradeStore

log = logging.getLogger("tradewire.store")

PRUNE_EVERY_S = 600.0
BATCH = 500


class FillIdRetention:
    def __init__(self, store: TradeStore, keep_s: float, every_s: float = PRUNE_EVERY_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.keep_s = keep_s
        self.every_s = every_s
        self._clock = clock
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="fill-id-retention")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def prune(self) -> int:
        """Delete every fill id older than the retention; returns how many."""
        before_ns = int((self._clock() - self.keep_s) * 1e9)
        total = 0
        while not self._stopping.is_set():
            deleted = self.store.prune_fill_ids(before_ns, BATCH)
            total += deleted
            if deleted < BATCH:
                break
            await asyncio.sleep(0)  # let the loop serve calls between batches
        if total:
            log.info("forgot %d fill ids recorded more than %.0f s ago", total, self.keep_s)
        return total

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.prune()
            except Exception:  # a store hiccup must not end the retention for good
                log_failure(log, "fill id retention failed")
            try:
                async with asyncio.timeout(self.every_s):
                    await self._stopping.wait()
            except TimeoutError:
                pass
