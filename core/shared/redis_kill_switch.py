"""The LIVE kill switch every replica on one Redis reads: ``tradewire kill-switch halt`` stops
LIVE trading on all of them at once, not one machine's file at a time.

One key, ``tw:live:kill-switch``: ``halt`` or ``reduce_only``; no key is ``off``. Each LIVE
trade reads it before its quote, beside the replica's own setting and file (safety.py); the
strictest of them holds. While Redis does not answer, no LIVE trade is admitted anyway
(STORE_UNAVAILABLE): the switch cannot be read, so nothing passes it.
"""

from __future__ import annotations

import logging

import redis

from tradewire.core.config import KILL_SWITCH_STATES as STATES
from tradewire.core.errors import store_unavailable
from tradewire.core.shared import STORE_OUTAGES

log = logging.getLogger("tradewire.live")

KEY = "tw:live:kill-switch"


class SharedKillSwitch:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client

    def state(self) -> str:
        """off | reduce_only | halt (anything else stored halts: fail safe)."""
        try:
            value = self._r.get(KEY)
        except STORE_OUTAGES as exc:
            log.warning("the shared kill switch could not be read: the shared store did not answer (%s: %s)",
                        type(exc).__name__, exc)
            raise store_unavailable() from None
        except redis.ResponseError as exc:  # (a key of another type): what it says is unknown, so it halts
            log.warning("the shared kill switch could not be read (%s): halting LIVE trading", exc)
            return "halt"
        if value is None:
            return "off"
        state = value.decode(errors="replace").strip().lower().replace("-", "_")
        return state if state in STATES else "halt"

    def set(self, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"the kill switch is one of {', '.join(STATES)}, not {state!r}")
        if state == "off":
            self._r.delete(KEY)
        else:
            self._r.set(KEY, state)
