"""The local append-only audit journal: the embedded audit store, and the QuestDB sink's spool.

Format: JSON lines, one :meth:`AuditEvent.to_record` object per line, UTF-8, ``\\n``
terminated. A record may carry extra keys (the ``.rejected`` journal adds ``"error"``);
readers ignore them.

Crash safety: a line is written with one ``write`` call. A crash can leave at most one torn
line at the end of the file; readers skip an unterminated last line, and a writer re-opening
the file first terminates it with ``\\n`` so the next record starts on a line of its own.
A line that does not parse is reported (log line at ERROR and ``corrupt_lines`` counter),
never silently ignored.

fsync policy of :class:`JournalSink` (``fsync=``):

* ``"interval"`` (default): the writer thread wakes when events are emitted, gathers what
  comes in the next ``batch_window_s`` (20 ms; ``flush()`` and ``close()`` cut it short) and
  writes it to the OS in one call; it fsyncs at most once per ``fsync_interval_s`` while there
  is unsynced data, and always in ``flush()`` and ``close()``. A process crash loses only events
  still in memory (at most the last ``batch_window_s``); a power loss can lose up to
  ``fsync_interval_s`` of events that no ``flush()`` covered.
* ``"always"``: fsync after every batch the writer thread writes (used for the spool, where
  the journal is the only copy of the rows).
* ``"never"``: leave it to the OS, except in ``flush()``/``close()``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from .events import AuditEvent
from .sink import SinkStats

__all__ = ["JournalFile", "JournalSink", "read_journal", "encode_event", "count_lines"]

log = logging.getLogger("tradewire.audit")

FsyncPolicy = Literal["always", "interval", "never"]
LOCAL_CLOSE_FLOOR_S = 1.0  # a close given less still waits this long for a local file


def encode_event(event: AuditEvent, **extra: Any) -> bytes:
    """One line; never raises: a row that cannot be encoded as it is would fail its batch's every
    write, and the rows after it with them."""
    rec = event.to_record()
    if extra:
        rec.update(extra)
    try:
        return orjson.dumps(rec) + b"\n"
    except orjson.JSONEncodeError:
        # text UTF-8 cannot hold: a lone surrogate (a file name's undecodable byte, as Python
        # decodes argv and paths), written escaped ("\\udce9") -- the row kept, not refused
        log.warning("audit: row %s/%s holds text that is not valid UTF-8; written with it escaped",
                    event.table, event.event_id)
        return orjson.dumps(_encodable(rec), default=str) + b"\n"


_SURROGATE = re.compile("[\ud800-\udfff]")


def escaped(text: str, chars: re.Pattern[str] = _SURROGATE) -> str:
    """``text`` with each of ``chars`` (lone surrogates) written as its ``\\uXXXX`` escape."""
    return chars.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _encodable(value: Any) -> Any:
    if isinstance(value, str):
        return escaped(value)
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    return value


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class CorruptLineCounter:
    def __init__(self) -> None:
        self.count = 0


def read_journal(
    path: str | os.PathLike[str], *, corrupt: CorruptLineCounter | None = None
) -> Iterator[AuditEvent]:
    """Yield the events of a journal file, oldest first (nothing if it does not exist).

    An unterminated last line (a write in progress, or torn by a crash) is skipped; any other
    line that does not parse is logged at ERROR and counted in ``corrupt``.
    """
    p = Path(path)
    try:
        fh = open(p, "rb")
    except FileNotFoundError:
        return
    with fh:
        lineno = 0
        for line in fh:
            lineno += 1
            if not line.endswith(b"\n"):
                log.warning("audit journal %s: skipping unterminated last line %d", p, lineno)
                return
            if line == b"\n":
                continue
            try:
                yield AuditEvent.from_record(orjson.loads(line))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                if corrupt is not None:
                    corrupt.count += 1
                log.error(
                    "audit journal %s: line %d is not a valid audit record (%s); kept in the "
                    "file, not replayed",
                    p,
                    lineno,
                    exc,
                )


def count_lines(path: str | os.PathLike[str]) -> int:
    """Number of complete lines (newline-terminated) in a file; 0 if it does not exist."""
    n = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                n += chunk.count(b"\n")
    except FileNotFoundError:
        return 0
    return n


def check_appendable(path: str | os.PathLike[str]) -> None:
    """Open ``path`` for appending (making it and its folder) and close it: OSError if it cannot be."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab"):
        pass


class JournalFile:
    """An append-only JSON-lines file. Thread-safe; every method blocks (call it off-loop).

    ``durable=False``: no fsync at all (of the file, on rotation, or of its directory when it is
    created) — for a file that only has to outlive the process, not the machine (write_ahead.py).
    """

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        self._lock = threading.Lock()
        self._fh: BinaryIO | None = None
        self._unsynced = False
        self.corrupt = CorruptLineCounter()

    def _open_locked(self) -> BinaryIO:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fh = open(self.path, "ab", buffering=0)  # (unbuffered: a failed write leaves nothing behind to repeat)
            if not created and fh.tell() > 0:
                with open(self.path, "rb") as rd:
                    rd.seek(-1, os.SEEK_END)
                    if rd.read(1) != b"\n":  # terminate a line torn by a crash
                        fh.write(b"\n")
            if created and self.durable:
                _fsync_dir(self.path.parent)
            self._fh = fh
        return self._fh

    def append_bytes(self, data: bytes, *, fsync: bool) -> None:
        if not data:
            return
        with self._lock:
            fh = self._open_locked()
            if self._moved_away(fh):  # rotated (renamed away, a new file in its place): write to the path's
                self._close_locked()
                fh = self._open_locked()
            start = os.fstat(fh.fileno()).st_size
            written = 0
            try:
                with memoryview(data) as view:
                    while written < len(data):  # (a file system filling up takes part of it)
                        written += fh.write(view[written:])
            except BaseException:
                self._undo_locked(fh, start, written)
                raise
            self._unsynced = self.durable
            if fsync and self.durable:
                os.fsync(fh.fileno())
                self._unsynced = False

    def append(self, events: Iterable[AuditEvent], *, fsync: bool, **extra: Any) -> int:
        """Append events (encoded outside the lock); returns how many were written."""
        chunks = [encode_event(ev, **extra) for ev in events]
        self.append_bytes(b"".join(chunks), fsync=fsync)
        return len(chunks)

    def sync(self) -> None:
        with self._lock:
            if self._fh is not None and self._unsynced and self.durable:
                os.fsync(self._fh.fileno())
                self._unsynced = False

    @property
    def unsynced(self) -> bool:
        return self._unsynced

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def rotate(self, dest: str | os.PathLike[str]) -> bool:
        """Atomically move the current content to ``dest`` (fsynced); later appends start a
        new file. Returns False (and does nothing) if the journal is empty."""
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                if self.durable:
                    os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None
                self._unsynced = False
            if self.size() == 0:
                return False
            os.replace(self.path, dest)
            if self.durable:
                _fsync_dir(self.path.parent)
            return True

    def iter_events(self) -> Iterator[AuditEvent]:
        return read_journal(self.path, corrupt=self.corrupt)

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._fh is not None:
            try:
                self._fh.flush()
                if self.durable:
                    os.fsync(self._fh.fileno())
            finally:
                self._fh.close()
                self._fh = None
                self._unsynced = False

    def _undo_locked(self, fh: BinaryIO, start: int, written: int) -> None:
        """A write failed part-way (disk full, I/O error): take back the part written, so that the
        batch's retry neither repeats its first rows nor glues a row onto a torn one."""
        try:
            if written and os.fstat(fh.fileno()).st_size == start + written:  # (nobody appended since)
                os.ftruncate(fh.fileno(), start)
        except OSError:
            pass  # the torn line stays: re-opening the file terminates it
        self._fh = None
        try:
            fh.close()
        except OSError:
            pass

    def _moved_away(self, fh: BinaryIO) -> bool:
        """Whether the path names another file than ours now, or none (one stat per write: the
        writers batch theirs)."""
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            return True
        ours = os.fstat(fh.fileno())
        return (at_path.st_ino, at_path.st_dev) != (ours.st_ino, ours.st_dev)


class JournalSink:
    """The embedded audit sink: events go to a JSON-lines journal via a writer thread.

    ``emit`` appends to an in-memory list under a lock and wakes the writer thread when the list
    was empty (about a microsecond); encoding, writing and fsync happen on that thread, never on
    the event loop. The writer gathers a batch for ``batch_window_s`` before it writes: each
    wake-up is a hand-off of the GIL with the event loop, and woken per trade's few events they
    cost a paper trade ~0.5 ms of CPU (bench/PROFILE.md).
    The in-memory list is unbounded (a local append is fast; its depth is exported as
    ``queue_depth``); events are never dropped. See the module docstring for the fsync policy.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy = "interval",
        fsync_interval_s: float = 1.0,
        batch_window_s: float = 0.02,
        close_timeout_s: float = 30.0,
        name: str = "journal",
        durable: bool = True,
    ) -> None:
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"fsync must be always|interval|never, not {fsync!r}")
        self.file = JournalFile(path, durable=durable)
        self._policy: FsyncPolicy = fsync
        self._fsync_interval_s = fsync_interval_s
        self._batch_window_s = batch_window_s
        self._urgent = False  # a flush() or close() waits: write what there is, no window
        self._close_timeout_s = close_timeout_s
        self._name = name
        self._cv = threading.Condition(threading.Lock())
        self._pending: list[AuditEvent] = []
        self._handed = 0  # events accepted by emit (sequence)
        self._written = 0  # events written to the file
        self._write_errors = 0
        self._last_error = ""
        self._healthy = True
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._last_fsync = time.monotonic()

    @property
    def path(self) -> Path:
        return self.file.path

    # -- AuditSink -------------------------------------------------------------------------

    async def start(self) -> None:
        self._start_thread()

    def _start_thread(self) -> None:
        with self._cv:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"tw-audit-{self._name}", daemon=True
            )
            self._thread.start()

    def emit(self, event: AuditEvent) -> None:
        try:
            if not isinstance(event, AuditEvent):
                log.error("audit %s: emit() got %r, not an AuditEvent; ignored", self._name, type(event))
                return
            with self._cv:
                if not self._closed:
                    self._pending.append(event)
                    self._handed += 1
                    if len(self._pending) == 1:
                        # the writer waits on an empty list (or its window): one wake-up per batch
                        # (all: wait_durable() waits on the same condition)
                        self._cv.notify_all()
                    return
            # after close(): write through synchronously so nothing is lost (shutdown path only)
            log.warning("audit %s: emit() after close(); writing synchronously", self._name)
            self.file.append([event], fsync=True)
            with self._cv:
                self._handed += 1
                self._written += 1
        except Exception:  # never raise into the request path
            log.exception("audit %s: emit failed", self._name)

    def emit_all(self, events: Iterable[AuditEvent]) -> None:
        """``emit`` for several events at once (thread-safe, non-blocking)."""
        for event in events:
            self.emit(event)

    async def flush(self) -> None:
        self._start_thread()
        with self._cv:
            target = self._handed
        await asyncio.to_thread(self.wait_durable, target)

    async def close(self, timeout: float | None = None) -> None:
        """Write what is pending, then stop. ``timeout`` (the shutdown's): a disk that takes the
        rows drains them within a fraction of the floor it is given (``LOCAL_CLOSE_FLOOR_S``),
        one whose writes fail (full) holds the exit no longer than that — what is not written is
        said (and, behind a QuestDB sink, still in its write-ahead file)."""
        with self._cv:
            if self._closed:
                return
            target = self._handed
        self._start_thread()
        wait_s = self._close_timeout_s if timeout is None else \
            min(self._close_timeout_s, max(LOCAL_CLOSE_FLOOR_S, timeout))
        started = time.monotonic()
        ok = await asyncio.to_thread(self.wait_durable, target, wait_s)
        with self._cv:
            self._closed = True
            self._stopping = True
            self._cv.notify_all()
            left = len(self._pending)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, max(0.1, wait_s - (time.monotonic() - started)))
        if not ok or left:
            log.error(
                "audit %s: closed with %d event(s) not written to %s (write errors: %d)",
                self._name,
                len(self._pending),
                self.path,
                self._write_errors,
            )
        await asyncio.to_thread(self.file.close)

    def stats(self) -> SinkStats:
        return SinkStats(
            backend="journal",
            queue_depth=len(self._pending),
            queue_max=0,
            rows_written_total=self._written,
            write_errors_total=self._write_errors,
            healthy=self._healthy,
        )

    @property
    def last_error(self) -> str:
        """What the last failed write said ("" if none failed)."""
        return self._last_error

    def health(self) -> tuple[bool, str]:
        if self._healthy:
            return True, f"journal {self.path}"
        return False, (f"journal {self.path}: writes failing ({self._write_errors} errors so far, the last: "
                       f"{self._last_error}); {self.in_memory()} event(s) held in memory, retried")

    # -- reading back ----------------------------------------------------------------------

    def iter_events(self) -> Iterator[AuditEvent]:
        """The events written so far, oldest first (blocking file read: tests, tools, replay)."""
        return self.file.iter_events()

    # -- blocking helpers (worker threads only) -------------------------------------------

    def handed(self) -> int:
        return self._handed

    def in_memory(self) -> int:
        """Events emitted and not yet written to the file (consistent snapshot)."""
        with self._cv:
            return self._handed - self._written

    def wait_durable(self, target: int | None = None, timeout: float | None = None) -> bool:
        """Block until the first ``target`` emitted events are written and fsynced."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            if target is None:
                target = self._handed
            if self._written < target:
                self._urgent = True  # the writer's batch window is cut short
                self._cv.notify_all()
            while self._written < target:
                if self._thread is None or not self._thread.is_alive():
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cv.wait(remaining)
            done = self._written >= target
        self.file.sync()
        return done

    # -- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.05
        while True:
            with self._cv:
                while not self._pending and not self._stopping:
                    timeout = None
                    if self._policy == "interval" and self.file.unsynced:
                        timeout = self._last_fsync + self._fsync_interval_s - time.monotonic()
                        if timeout <= 0:
                            break
                    self._cv.wait(timeout)
                if self._pending and not self._stopping and not self._urgent and self._batch_window_s > 0:
                    self._cv.wait(self._batch_window_s)  # gather (emit does not wake it again)
                self._urgent = False
                batch, self._pending = self._pending, []
                stop = self._stopping and not batch
            if batch:
                try:
                    self.file.append(batch, fsync=self._policy == "always")
                except Exception as exc:
                    self._write_errors += 1
                    self._last_error = str(exc) or type(exc).__name__
                    self._healthy = False
                    log.exception(
                        "audit %s: writing %d event(s) to %s failed; retrying in %.2fs",
                        self._name,
                        len(batch),
                        self.path,
                        backoff,
                    )
                    with self._cv:
                        self._pending[:0] = batch  # keep order, keep the rows
                        if self._stopping and self._closed:
                            return
                        self._cv.wait(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.05
                self._healthy = True
                if self._policy == "always":
                    self._last_fsync = time.monotonic()
                with self._cv:
                    self._written += len(batch)
                    self._cv.notify_all()
            if (
                self._policy == "interval"
                and self.file.unsynced
                and time.monotonic() - self._last_fsync >= self._fsync_interval_s
            ):
                try:
                    self.file.sync()
                except OSError:
                    self._write_errors += 1
                    log.exception("audit %s: fsync of %s failed", self._name, self.path)
                self._last_fsync = time.monotonic()
            if stop:
                return

