"""The audit sink interface (DESIGN.md §5) and the counters every sink exposes.

A sink is called from the request path, so its contract is strict:

* ``emit(event)`` is synchronous, O(1) and non-blocking: it hands the event over and returns.
  It never raises (a broken sink logs; it does not fail a trade) and never drops an event:
  what cannot be queued is spooled to disk, and ``stats().dropped`` is always 0.
* ``flush()`` waits until everything emitted before the call is durable: written to the
  backend, or fsynced to the local journal/spool.
* ``close()`` drains the same way, then releases threads and files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

from .events import AuditEvent

__all__ = ["AuditSink", "SinkStats"]


@dataclass(frozen=True, slots=True)
class SinkStats:
    """A snapshot of a sink's counters, for the metrics layer (``*_total`` are monotonic).

    queue_depth           events accepted by ``emit`` and not yet written or spooled
    queue_max             the bound of that queue (0: unbounded -- the journal)
    rows_written_total    rows acknowledged by the backend (QuestDB, or the journal file)
    spooled               rows waiting in the local spool for QuestDB (gauge)
    spooled_total         rows ever written to the spool
    spilled_total         of those, rows spilled because the in-memory queue was full
    replayed_total        rows replayed from the spool into QuestDB
    write_errors_total    failed write attempts (each failure; the rows are kept, not lost)
    rejected_total        rows QuestDB refused as invalid, kept in the ``.rejected`` journal
    dropped               always 0: nothing is dropped
    healthy               the backend takes rows now (see health() for why not)
    """

    backend: str
    queue_depth: int = 0
    queue_max: int = 0
    rows_written_total: int = 0
    spooled: int = 0
    spooled_total: int = 0
    spilled_total: int = 0
    replayed_total: int = 0
    write_errors_total: int = 0
    rejected_total: int = 0
    dropped: int = 0
    healthy: bool = True

    def as_dict(self) -> dict[str, int | str | bool]:
        return asdict(self)


@runtime_checkable
class AuditSink(Protocol):
    async def start(self) -> None: ...

    def emit(self, event: AuditEvent) -> None: ...

    async def flush(self) -> None: ...

    async def close(self, timeout: float | None = None) -> None:
        """Drain and release; a remote backend gets at most ``timeout`` seconds (None: what it
        needs), what it has not taken by then stays in the local spool."""

    def stats(self) -> SinkStats: ...

    def health(self) -> tuple[bool, str]:
        """Whether the backend takes rows now, and if not why (HealthCheck's audit component)."""
