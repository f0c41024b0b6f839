"""Spools other processes keep beside the gateway's own: the rows an administration command
could not get into QuestDB (admin.py). The gateway's QuestDB sink takes such a file into its
own replay, so those rows land without waiting for the next command.

The two processes never hold the file at once: a command writes it holding ``<spool>.lock``
(blocking: the gateway holds it only for a rename), and the sink renames it away only when it
gets that lock at once, so no row is appended to a file that has already been taken.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .journal import count_lines
from .write_ahead import leftovers as write_ahead_leftovers

__all__ = ["held", "replay_segments", "take_over"]


@contextmanager
def held(spool: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold ``spool``'s lock for the block; True when held (always, with ``wait``)."""
    spool.parent.mkdir(parents=True, exist_ok=True)
    with open(spool.with_name(spool.name + ".lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def take_over(spool: Path, segment: Callable[[], Path]) -> int:
    """Rename ``spool`` — the segments its writer's replay left first, oldest first — each to
    ``segment()``, if no writer holds it; the number of rows moved (0: nothing there, or a
    command is writing it: tried again next time)."""
    if not _pieces(spool):
        return 0
    with held(spool, wait=False) as got:
        if not got:
            return 0
        rows = 0
        for piece in _pieces(spool):
            rows += count_lines(piece)
            os.replace(piece, segment())
        return rows


def replay_segments(spool: Path) -> list[Path]:
    """``<spool>.<n>.replay``, the files a spool's writer cut it into for replay, oldest first."""
    if not spool.parent.exists():
        return []
    prefix = spool.name + "."
    return sorted(p for p in spool.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".replay"))


def _pieces(spool: Path) -> list[Path]:
    """The spool's files holding rows: its replay segments, its writer's write-ahead files (a
    writer holds the lock while it runs, so these are a command's that was stopped before its rows
    were spooled: Ctrl-C, a kill), then the spool."""
    ahead = write_ahead_leftovers(spool.with_name(spool.name + ".ahead"))
    return [p for p in [*replay_segments(spool), *ahead, spool] if p.exists() and p.stat().st_size]
