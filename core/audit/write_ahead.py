"""The QuestDB sink's write-ahead file: the rows it holds in memory, also on disk.

The sink batches rows for ``flush_interval_s`` (0.25 s) before QuestDB sees them; a process
killed meanwhile (SIGKILL, OOM, a crash) would lose them. So every row it queues is appended
here too (a :class:`JournalSink`, 20 ms batches, no fsync: the file has to outlive the process,
not the machine). When the sink takes a batch to deliver, the file is cut: what it holds is
renamed to a segment that the batch, or one before it, covers, and deleted once the sink has
delivered (or spooled) every row queued before the cut. A row can be in a segment and the next
file both; after a crash everything left is replayed through the spool, and QuestDB's DEDUP
(ts, event_id) keeps each row once.

What a crash still loses: the rows of the last ``batch_window_s`` (20 ms) not yet written here.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from pathlib import Path

from .events import AuditEvent
from .journal import JournalSink

__all__ = ["WriteAhead", "leftovers"]

log = logging.getLogger("tradewire.audit")


class WriteAhead:
    """``emit`` and ``cut`` are called on the sink's event loop, in the order rows are queued."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._journal = JournalSink(path, fsync="never", durable=False, name="write-ahead")
        # (the sink's enqueued count at the cut, the segment): deletable once that many are done
        self._segments: collections.deque[tuple[int, Path]] = collections.deque()
        self._failing = False  # the last cut failed (logged once)

    def leftovers(self) -> list[Path]:
        """The files a process that did not close its sink left (the current one and segments)."""
        return leftovers(self.path)

    async def start(self) -> None:
        await self._journal.start()

    def emit(self, event: AuditEvent) -> None:
        self._journal.emit(event)

    def write_errors(self) -> int:
        return self._journal.stats().write_errors_total

    def cut(self, enqueued: int) -> None:
        """Every row queued so far (``enqueued`` of them) is in a batch on its way: start a new file."""
        segment = self.path.with_name(f"{self.path.name}.{time.time_ns():020d}")
        try:
            cut = self._journal.file.rotate(segment)
        except OSError as exc:
            # (a file system gone read-only, say) the batch must go on its way all the same: its
            # rows stay in the current file, which a later cut takes, or the close discards
            if not self._failing:
                log.warning("audit: could not cut the write-ahead file %s (%s); its rows are kept in it",
                            self.path, exc)
            self._failing = True
            return
        self._failing = False
        if cut:
            self._segments.append((enqueued, segment))

    def delivered(self, done: int) -> None:
        """The sink's first ``done`` rows are in QuestDB or its spool: their segments go."""
        while self._segments and self._segments[0][0] <= done:
            _unlink(self._segments.popleft()[1])

    async def close(self, timeout: float | None = None) -> None:
        """Stop writing, keeping the files for the next start (rows not delivered are in them)."""
        await self._journal.close(timeout)

    async def discard(self, timeout: float | None = None) -> None:
        """After the sink has closed (everything delivered or spooled): nothing is left to keep."""
        await self._journal.close(timeout)
        for path in self.leftovers():
            _unlink(path)
        self._segments.clear()


def leftovers(path: Path) -> list[Path]:
    """The write-ahead file ``path`` and its segments, as a process that did not close its sink
    left them."""
    if not path.parent.exists():
        return []
    prefix = path.name + "."
    return sorted(p for p in path.parent.iterdir()
                  if p.name == path.name or (p.name.startswith(prefix) and p.name[len(prefix):].isdigit()))


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # left for the next start to replay (DEDUP keeps one of each): never raised
        log.warning("audit: could not delete the write-ahead segment %s (%s)", path, exc)
