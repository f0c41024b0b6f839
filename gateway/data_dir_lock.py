"""One gateway per data directory.

A second gateway started on the same files would take the first one's running trades for a
crash's leftovers and resume them as its own, and write the same journals and databases. A
serving process holds an exclusive lock on ``<data_dir>/gateway.lock`` (holding its pid, for the
message) for as long as it runs; the kernel lets it go when the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TextIO

from tradewire.gateway.assembly import StartupError, opened

LOCK_FILE = "gateway.lock"


def hold_data_dir(data_dir: Path) -> TextIO:
    """Lock ``data_dir`` for this process: keep the returned file open while serving.
    StartupError when another process holds it (or the folder cannot be made)."""
    return opened("storage.data_dir", data_dir, _lock)


def _lock(data_dir: Path) -> TextIO:
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StartupError(f"storage.data_dir: {data_dir} is in use by another gateway (pid {holder}); "
                           "each gateway needs a data directory of its own") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
