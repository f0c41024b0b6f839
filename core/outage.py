"""A dependency that stopped answering, said once when it starts and once when it ends.

Loops that retry a dependency (Redis, an upstream API) fail every few hundred milliseconds
while it is away; a line per attempt is thousands of lines an hour that say nothing new and
bury everything else. :class:`Outage` says it when it starts, again at most every
``repeat_s`` while it lasts (how long, how many attempts), and when it ends. :class:`Tally`
is for failures met by calls rather than by a loop (no attempt tells when it is over): a line at
most every few seconds, with how many there were.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REPEAT_S = 60.0


class Outage:
    def __init__(self, logger: logging.Logger, what: str, consequence: str = "", *, repeat_s: float = REPEAT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.what = what
        self.consequence = consequence
        self.repeat_s = repeat_s
        self._clock = clock
        self.since: float | None = None
        self.failures = 0
        self._said_at = 0.0

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, error: object = None, **extra) -> None:
        """One more failed attempt; said if it starts an outage, or if nothing was said for a while."""
        now = self._clock()
        self.failures += 1
        if self.since is None:
            self.since = self._said_at = now
            self.logger.warning("%s unavailable%s", self.what, f": {self.consequence}" if self.consequence else "",
                                extra={"error": _text(error), **extra})
        elif now - self._said_at >= self.repeat_s:
            self._said_at = now
            self.logger.warning("%s still unavailable", self.what, extra={
                "outage_s": round(now - self.since, 3), "failures": self.failures, "error": _text(error), **extra})

    def answered(self, **extra) -> None:
        """It answered: the outage, if there was one, is over."""
        if self.since is not None:
            self.logger.warning("%s answers again", self.what, extra={
                "outage_s": round(self._clock() - self.since, 3), "failures": self.failures, **extra})
            self.since, self.failures = None, 0


def _text(error: object) -> str:
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return "" if error is None else str(error)


class Tally:
    """Failures said at most once per ``every_s``, each line with how many there were since the
    last: a failure met by every call (a store that does not answer) is one line, not one per call."""

    def __init__(self, logger: logging.Logger, every_s: float = 5.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.every_s = every_s
        self._clock = clock
        self._count = 0
        self._said_at: float | None = None

    def failed(self, message: str, *args: object) -> None:
        self._count += 1
        now = self._clock()
        if self._said_at is None or now - self._said_at >= self.every_s:
            self.logger.warning(message + " (%d time(s) since the last such line)", *args, self._count)
            self._count, self._said_at = 0, now
