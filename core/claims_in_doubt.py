"""Claims the shared store did not answer (timed out, connection lost), which it may have made
all the same.

Such a trade is this replica's in the store while nothing here runs it: every retry of its
request id, on any replica, would follow it until its deadline, and nothing would take it over
(its replica is alive). So once the store answers again, each is looked for among this
replica's unfinished trades and, when there, resumed as a restart resumes one. A command can
reach the store a while after its caller gave up, so one not found is looked for again for
``GRACE_S`` (counted from when the store answers), then forgotten: its claim never happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from tradewire.core.store.base import TradeStore, UnfinishedTrade

log = logging.getLogger("tradewire.trades")

Key = tuple[str, str]
GRACE_S = 10.0
LOOK_EVERY_S = 0.5


class ClaimsInDoubt:
    def __init__(self, store: TradeStore, outages: Callable[[], tuple[type[Exception], ...]],
                 resume: Callable[[list[UnfinishedTrade]], Awaitable[object]]) -> None:
        """``outages``: what the store raises when it does not answer; ``resume``: the runner's
        recovery of unfinished trades."""
        self._store = store
        self._outages = outages
        self._resume = resume
        self._doubted: dict[Key, float | None] = {}  # key → when to forget it (None: not looked at yet)
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._doubted)

    def add(self, key: Key) -> None:
        self._doubted[key] = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._settle(), name="claims-in-doubt")

    async def stop(self) -> None:
        """Shutdown: what is still in doubt is this replica's unfinished trade, if anything, and
        the next start resumes it."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _settle(self) -> None:
        while self._doubted:
            await asyncio.sleep(LOOK_EVERY_S)  # (the store was not answering a moment ago)
            try:
                found = [u for u in self._store.unfinished()
                         if (u.record.principal_id, u.record.request_id) in self._doubted]
            except self._outages():
                continue  # still not answering: the grace starts once it does
            now = time.monotonic()
            for unfinished in found:
                del self._doubted[(unfinished.record.principal_id, unfinished.record.request_id)]
                log.warning("trade %s: the shared store made its claim without answering; resuming it",
                            unfinished.record.request_id)
            for key, forget_at in list(self._doubted.items()):
                if forget_at is None:
                    self._doubted[key] = now + GRACE_S
                elif now >= forget_at:
                    del self._doubted[key]
            if found:
                try:
                    await self._resume(found)
                except Exception:  # the next start resumes them (they are this replica's)
                    log.exception("resuming trades whose claim went unanswered failed")
