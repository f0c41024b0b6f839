"""The QuestDB audit sink: ILP over HTTP, batched off the request path, spooled while down.

Data path::

    emit() ──► bounded deque (queue_max) ──► writer task (batch_size / flush_interval_s)
      │ full                                     │ run_in_executor (one worker thread)
      ▼                                          ▼
    spool (JournalSink, fsync=always) ◄── fail ── Sender.flush(buffer, clear=False,
      │                                           transactional=True), one table per flush
      └── replay: rotate spool → <spool>.<seq>.replay, oldest segment first, delete when done

* ``emit`` never blocks and never raises: it appends to a deque on the event loop. If the
  deque is full the event goes to the spool instead (``spilled_total``, WARNING log line at
  most every 5 s) -- it is delayed, not dropped.
* What is queued is also appended to a write-ahead file (write_ahead.py), cut at each batch
  and deleted as batches are delivered: a process killed before its rows went out leaves
  them there, and the next ``start()`` hands them to the spool's replay.
* All QuestDB I/O (table DDL over HTTP ``/exec``, ILP flushes) runs on one dedicated worker
  thread, so the ``Sender`` is never shared between threads and never touches the loop.
* The rows of a batch stay in our own ``Buffer`` and list until QuestDB acknowledged them
  (``flush(..., clear=False)``; a failed ``flush()`` would empty the sender's own buffer).
  If QuestDB is unreachable (connection refused, timeout, 5xx, ...) the rows are appended
  to the spool and fsynced, the sink is marked down, and it retries with exponential
  backoff (``retry_initial_s`` .. ``retry_max_s``).
* Replay: when QuestDB answers, the spool file is atomically renamed to a numbered
  segment (new spills start a fresh spool file), and segments are replayed oldest first in
  ``batch_size`` chunks; a segment is deleted only after every row in it was acknowledged.
  A crash or outage during replay leaves the segment in place; it is replayed again from its
  start (at the next attempt, or at the next ``start()``), and the rows already written are
  absorbed by ``DEDUP UPSERT KEYS(ts, event_id)``: the end state is exactly one row each.
* Rows QuestDB refuses as invalid (HTTP 400 ``"code":"invalid"``) are isolated by bisection
  and appended with the error to ``<spool>.rejected`` (``rejected_total``, ERROR log line),
  so one bad row neither blocks the rest nor disappears. Events are schema-checked when
  built (events.py), so this is a last line of defence. A row refused for text QuestDB cannot
  store (a lone surrogate, a NUL in a symbol) is written again with that text escaped first.
* Tables are created up front (``CREATE TABLE IF NOT EXISTS ... WAL DEDUP UPSERT
  KEYS(ts, event_id)``) before any row is sent -- ILP would otherwise auto-create a table
  without DEDUP, its designated timestamp named ``timestamp`` -- and their shape is checked
  again after every outage and before a write once ``verify_interval_s`` has passed since the
  last check (one ``tables()`` query, about 2 ms): a server that came back empty is noticed
  before a row goes into it. A server started with ``line.auto.create.new.tables=false``
  refuses rows for a missing table instead; the sink then creates it and writes again.
* A table of the wrong shape is fixed when it can be (missing columns added, DEDUP enabled);
  otherwise (wrong designated timestamp, not WAL, DEDUP refused, a column of a type that
  refuses the rows: a VARCHAR for a LONG) it is renamed aside to
  ``<table>_aside_<UTC time>`` (WARNING naming it), created anew, and the audit rows it holds
  are copied back (DEDUP keeps that exactly-once). A refusal the sink cannot get past is not
  an outage: it is logged once at ERROR, reported by :meth:`QuestDBSink.health`, the rows are
  spooled, and it is tried again every ``retry_max_s``.
* ``start()`` does not contact QuestDB: the writer task does, so a hung server never holds up
  start-up. ``close(timeout)`` gives QuestDB at most ``timeout``; a write still hanging then is
  left to its (daemon) worker thread and its rows are spooled as well -- if it lands after
  all, the replay's duplicates are absorbed by DEDUP.
* A signal that reaches the worker thread mid-write (a profiler's, a handler's) makes the
  client's socket call fail with EINTR, which it does not retry itself (Python's own socket
  calls do). That is not an outage: the call is made again at once, for up to
  ``_INTERRUPTED_RETRY_S``; a write sent twice this way is absorbed by DEDUP.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from questdb import QuestDBError, QuestDBErrorCode, Sender, TimestampNanos

from .events import AuditEvent
from .foreign_spool import replay_segments, take_over
from .questdb_tables import QuestDBTables, Refused, Unavailable
from .journal import CorruptLineCounter, JournalFile, JournalSink, count_lines, escaped, read_journal
from .sink import SinkStats
from .write_ahead import WriteAhead, leftovers as write_ahead_leftovers

__all__ = ["QuestDBSink", "parse_conf"]

log = logging.getLogger("tradewire.audit")

_REJECTION_CODES = frozenset(
    {
        QuestDBErrorCode.InvalidName,
        QuestDBErrorCode.InvalidUtf8,
        QuestDBErrorCode.InvalidTimestamp,
        QuestDBErrorCode.ArrayError,
        QuestDBErrorCode.DecimalError,
        QuestDBErrorCode.ServerRejection,
    }
)
_SENDER_DEFAULTS: dict[str, Any] = {
    # we batch and flush ourselves, on the worker thread
    "auto_flush": False,
    # our own spool + backoff does the long retries; keep the worker responsive
    "retry_timeout": 1000,
    "request_timeout": 5000,
}


class _TableLost(Exception):
    """QuestDB has no such table and creates none itself (``line.auto.create.new.tables=false``)."""


_INTERRUPTED = "(os error 4)"  # EINTR, as the client's error message words it
_INTERRUPTED_RETRY_S = 10.0




class _DaemonWorker(concurrent.futures.Executor):
    """One daemon thread running jobs in order. ThreadPoolExecutor threads are joined when the
    process exits, so a write hanging on a stopped QuestDB would hold up the exit after the
    shutdown deadline; a daemon thread does not."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._shutdown = False
        self._lock = threading.Lock()

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._jobs.put((future, fn, args, kwargs))
            return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            thread = self._thread
            self._jobs.put(None)
        if wait and thread is not None:
            thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)


def parse_conf(conf: str) -> tuple[str, dict[str, str]]:
    """Split a QuestDB client configuration string (``schema::k=v;k=v;``, ``;;`` escapes ``;``)."""
    schema, sep, rest = conf.partition("::")
    if not sep:
        raise ValueError("QuestDB conf must look like 'http::addr=host:port;'")
    params: dict[str, str] = {}
    key, buf, i = None, [], 0
    while i < len(rest):
        ch = rest[i]
        if key is None:
            if ch == "=":
                key, buf = "".join(buf).strip(), []
            elif ch == ";":
                if "".join(buf).strip():
                    raise ValueError("QuestDB conf: key without value")
                buf = []
            else:
                buf.append(ch)
        elif ch == ";":
            if rest[i + 1 : i + 2] == ";":
                buf.append(";")
                i += 1
            else:
                params[key], key, buf = "".join(buf), None, []
        else:
            buf.append(ch)
        i += 1
    if key is not None:
        params[key] = "".join(buf)
    return schema, params


class QuestDBSink:
    """Audit sink writing to QuestDB (see the module docstring for the data path).

    :param conf: QuestDB client conf string, ``http::addr=127.0.0.1:9000;`` (ILP over HTTP;
        ``https::`` works too). Credentials in it are used, never logged.
    :param http_url: base URL of the HTTP endpoint for ``/exec`` (DDL); default derived from
        ``addr``.
    :param spool_path: the local spool journal; ``<spool>.<n>.replay`` segments,
        ``<spool>.rejected`` and the write-ahead file ``<spool>.ahead`` live beside it.
    :param write_ahead: queued rows are also appended to the write-ahead file, so a killed
        process loses at most its last 20 ms of rows instead of ``flush_interval_s`` (write_ahead.py).
    :param verify_interval_s: re-check the tables' shape before a write when the last check
        is older than this (a server restarted empty would otherwise auto-create them wrong).
    :param adopt: spools other processes write (foreign_spool.py): while QuestDB takes rows,
        each is taken into this sink's replay whenever its writer is not holding it.
    """

    def __init__(
        self,
        conf: str,
        *,
        spool_path: str | os.PathLike[str],
        http_url: str | None = None,
        batch_size: int = 10_000,
        flush_interval_s: float = 0.25,
        queue_max: int = 10_000,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 15.0,
        exec_timeout_s: float = 5.0,
        verify_interval_s: float = 1.0,
        write_ahead: bool = True,
        adopt: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        if batch_size < 1 or queue_max < 1:
            raise ValueError("batch_size and queue_max must be >= 1")
        schema, params = parse_conf(conf)
        if schema not in ("http", "https"):
            raise ValueError("QuestDBSink needs ILP over HTTP: conf must start with http:: or https::")
        if "addr" not in params:
            raise ValueError("QuestDB conf has no addr=")
        self._conf = conf
        self._addr = params["addr"]
        self._sender_kw = {k: v for k, v in _SENDER_DEFAULTS.items() if k not in params}
        Sender.from_conf(conf, **self._sender_kw).close(flush=False)  # validate the conf now
        auth: Any = None
        headers: dict[str, str] = {}
        if "username" in params and "password" in params:
            auth = (params["username"], params["password"])
        elif "token" in params:
            headers["Authorization"] = f"Bearer {params['token']}"
        # (used on the worker thread only)
        self._tables = QuestDBTables((http_url or f"{schema}://{self._addr}").rstrip("/"), addr=self._addr, auth=auth,
                                     headers=headers, verify=params.get("tls_verify", "on") != "unsafe_off",
                                     timeout_s=exec_timeout_s)

        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._queue_max = queue_max
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._verify_interval_s = verify_interval_s
        # while idle, QuestDB is checked this often so health() stays true to it
        self._idle_check_s = max(retry_max_s, verify_interval_s)

        spool = Path(spool_path)
        self._spool = JournalSink(spool, fsync="always", name="spool")
        self._rejected = JournalFile(spool.with_name(spool.name + ".rejected"))
        self._ahead_path = spool.with_name(spool.name + ".ahead")
        self._ahead = WriteAhead(self._ahead_path) if write_ahead else None
        self._corrupt = CorruptLineCounter()
        self._adopt = [Path(p) for p in adopt]

        # loop-side state
        self._queue: collections.deque[AuditEvent] = collections.deque()
        self._wakeup = asyncio.Event()
        self._first_at = 0.0
        self._enqueued = 0  # sequence numbers of queued events
        self._done = 0  # ... and of those written or spooled
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._flush_requested = False
        self._closing = False
        self._closed = False
        self._started = False
        self._task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._last_spill_log = 0.0

        # worker-side state (only touched on the worker thread)
        self._worker = _DaemonWorker("tw-audit-qdb")
        self._sender: Sender | None = None
        self._tables_ready = False
        self._verified_at = 0.0  # monotonic time of the last check of the tables' shape
        self._backoff = 0.0
        self._logged_refusal = ""

        # shared (written under _lock, read anywhere)
        self._lock = threading.Lock()
        self._down = False  # QuestDB does not take rows now: an outage, or a refusal
        self._refusal = ""  # why it refuses them (empty for an outage)
        self._reached = False  # QuestDB took rows (or was ready to) at least once
        self._since = time.time()  # wall-clock time of the last change of state
        self._why = ""
        self._next_retry = 0.0
        self._inflight: list[AuditEvent] | None = None  # the batch the worker is writing
        self._abandoned = False  # close() stopped waiting for the worker: its batch is spooled
        self._spool_pending = 0
        self._spooled_total = 0
        self._spilled_total = 0
        self._rows_written = 0
        self._replayed = 0
        self._write_errors = 0
        self._rejected_total = 0

    # ------------------------------------------------------------------------------------
    # AuditSink

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        await self._spool.start()
        # local files only: QuestDB is first contacted by the writer task, so a server that
        # hangs cannot hold up start-up (rows are queued, then spooled, meanwhile)
        # (whether this run writes ahead or not: the last one may have, and been killed)
        await self._loop.run_in_executor(self._worker, self._replay_write_ahead_leftovers)
        if self._ahead is not None:
            await self._ahead.start()
        await self._loop.run_in_executor(self._worker, self._count_spool)
        self._task = self._loop.create_task(self._run(), name="tw-audit-questdb")

    def emit(self, event: AuditEvent) -> None:
        try:
            if not isinstance(event, AuditEvent):
                log.error("audit: emit() got %r, not an AuditEvent; ignored", type(event))
                return
            if self._closing:
                self._to_spool_now(event, why="after close")
                return
            loop = self._loop
            if loop is not None and threading.get_ident() != self._loop_thread:
                try:
                    loop.call_soon_threadsafe(self._emit_on_loop, event)
                except RuntimeError:  # loop closed
                    self._to_spool_now(event, why="loop closed")
                return
            self._emit_on_loop(event)
        except Exception:  # never raise into the request path
            log.exception("audit: emit failed; writing the event to the spool")
            try:
                self._to_spool_now(event, why="emit error")
            except Exception:
                log.exception("audit: could not spool event %s", getattr(event, "event_id", "?"))

    async def flush(self) -> None:
        """Wait until every event emitted before the call is in QuestDB or fsynced in the spool."""
        if not self._started:
            await self.start()
        target = self._enqueued
        if self._done < target and self._task is not None and not self._task.done():
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((target, fut))
            self._flush_requested = True
            self._wakeup.set()
            await fut
        await self._spool.flush()

    async def close(self, timeout: float | None = None) -> None:
        """Drain the queue (to QuestDB or the spool), try a last replay, release everything.

        ``timeout``: how long QuestDB may take (None: as long as it needs). What it has not
        acknowledged by then -- the write in progress included -- is in the spool on return.
        """
        if self._close_task is None:  # concurrent close() calls share one closing
            deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
            self._close_task = asyncio.ensure_future(self._close(deadline))
        await asyncio.shield(self._close_task)

    async def _close(self, deadline: float | None) -> None:
        self._closing = True
        self._wakeup.set()
        loop = asyncio.get_running_loop()
        if self._task is not None:
            if not await _within(self._task, deadline):
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
                self._give_up_on_worker()
        elif self._queue:  # never started: park what was emitted in the spool
            self._spool.emit_all(self._queue)
            self._add_spooled(len(self._queue))
            self._queue.clear()
            self._done = self._enqueued
        self._resolve_waiters(force=True)
        if self._started and self._spool_pending and not self._down and not self._abandoned:
            replay = loop.run_in_executor(self._worker, self._replay_spool)
            if not await _within(replay, deadline):
                self._give_up_on_worker()  # the segments stay on disk for the next start
        self._closed = True
        left = (lambda: None) if deadline is None else (lambda: deadline - time.monotonic())
        await self._spool.close(left())
        if self._ahead is not None:
            if self._spool.in_memory():  # the spool could not take them all (a full disk): what
                await self._ahead.close(left())  # the write-ahead holds of them is replayed at next start
            else:  # everything is in QuestDB or the spool now
                await self._ahead.discard(left())
        if self._started:
            closing = loop.run_in_executor(self._worker, self._close_worker)
            if not self._abandoned:
                await closing
        self._worker.shutdown(wait=False)
        s = self.stats()
        if s.spooled:
            log.warning(
                "audit: closed with %d row(s) in the spool %s; they are replayed at next start",
                s.spooled,
                self._spool.path,
            )

    def _give_up_on_worker(self) -> None:
        """The close deadline passed: spool what the worker holds and what is still queued."""
        with self._lock:
            self._abandoned = True
            batch, self._inflight = self._inflight, None
            if batch:
                self._spool.emit_all(batch)
                self._spool_pending += len(batch)
                self._spooled_total += len(batch)
        if self._queue:
            self._spool.emit_all(self._queue)
            self._add_spooled(len(self._queue))
            self._queue.clear()
        self._done = self._enqueued
        log.warning(
            "audit: QuestDB at %s did not finish writing by the close deadline; "
            "the rows not acknowledged are in the spool %s",
            self._addr,
            self._spool.path,
        )

    def stats(self) -> SinkStats:
        return SinkStats(
            backend="questdb",
            queue_depth=self._enqueued - self._done,  # queued + the batch in flight
            queue_max=self._queue_max,
            rows_written_total=self._rows_written,
            spooled=self._spool_pending,
            spooled_total=self._spooled_total,
            spilled_total=self._spilled_total,
            replayed_total=self._replayed,
            # the local files' failed writes too (a full disk): rows they hold only in memory
            write_errors_total=self._write_errors + self._file_write_errors(),
            rejected_total=self._rejected_total,
            dropped=0,
            healthy=self._reached and not self._down,
        )

    def _file_write_errors(self) -> int:
        errors = self._spool.stats().write_errors_total
        if self._ahead is not None:
            errors += self._ahead.write_errors()
        return errors

    def health(self) -> tuple[bool, str]:
        """Whether QuestDB takes the audit rows now; if not why, since when (UTC) and how many
        rows wait in the local spool (and whether the spool itself can be written)."""
        up, why = self._backend_health()
        spool_up, _ = self._spool.health()
        if spool_up:
            return up, why
        # rows "spooled" are then held in memory only: a crash loses them
        return False, (f"{why}; but the spool {self._spool.path} cannot be written "
                       f"({self._spool.stats().write_errors_total} failed writes so far, the last: "
                       f"{self._spool.last_error}): {self._spool.in_memory()} row(s) held in memory, retried")

    def _backend_health(self) -> tuple[bool, str]:
        with self._lock:
            down, refusal, reached, why = self._down, self._refusal, self._reached, self._why
            since = datetime.fromtimestamp(self._since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            spooled = self._spool_pending
        where = f"QuestDB at {self._addr}"
        kept = f"{spooled} row(s) spooled locally"
        if refusal:
            return False, (
                f"{where} refuses the audit rows since {since}: {refusal}; {kept}, "
                "replayed once that is fixed"
            )
        if down:
            return False, (
                f"{where} not answering since {since} ({why}); {kept}, replayed when it is back"
            )
        if not reached:
            return False, f"{where} not reached yet (since {since}); {kept} meanwhile"
        if spooled:
            return True, f"{where}; replaying {spooled} spooled row(s)"
        return True, where

    # ------------------------------------------------------------------------------------
    # extra public API

    @property
    def spool_path(self) -> Path:
        return self._spool.path

    @property
    def rejected_path(self) -> Path:
        return self._rejected.path

    async def replay_spool(self) -> bool:
        """Replay the spool now (ignoring the backoff); True if it is empty afterwards."""
        if not self._started:
            await self.start()
        with self._lock:
            self._next_retry = 0.0
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._replay_spool)

    # ------------------------------------------------------------------------------------
    # event-loop side

    def _emit_on_loop(self, event: AuditEvent) -> None:
        if self._closing:
            self._to_spool_now(event, why="after close")
            return
        if len(self._queue) >= self._queue_max:
            self._spill(event)
            return
        self._queue.append(event)
        self._enqueued += 1
        if self._ahead is not None:
            self._ahead.emit(event)
        n = len(self._queue)
        if n == 1:
            self._first_at = time.monotonic()
            self._wakeup.set()
        elif n >= self._batch_size:
            self._wakeup.set()

    def _spill(self, event: AuditEvent) -> None:
        with self._lock:
            self._spool.emit(event)
            self._spool_pending += 1
            self._spooled_total += 1
            self._spilled_total += 1
            total = self._spilled_total
        now = time.monotonic()
        if total == 1 or now - self._last_spill_log >= 5.0:
            self._last_spill_log = now
            log.warning(
                "audit: queue full (queue_max=%d): event spilled to the spool %s "
                "(spilled_total=%d); it will be replayed, not dropped",
                self._queue_max,
                self._spool.path,
                total,
            )

    def _to_spool_now(self, event: AuditEvent, *, why: str) -> None:
        log.warning("audit: event %s goes to the spool (%s)", event.event_id, why)
        with self._lock:
            self._spool.emit(event)
            self._spool_pending += 1
            self._spooled_total += 1

    def _add_spooled(self, n: int) -> None:
        with self._lock:
            self._spool_pending += n
            self._spooled_total += n

    async def _wait_wakeup(self, timeout: float | None) -> None:
        self._wakeup.clear()
        if timeout is not None and timeout <= 0:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        except TimeoutError:
            pass

    def _resolve_waiters(self, force: bool = False) -> None:
        keep = []
        for target, fut in self._waiters:
            if force or self._done >= target:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((target, fut))
        self._waiters = keep

    def _next_check(self) -> float:
        """When the writer talks to QuestDB on its own: the next retry while it is down or rows
        are spooled, else the idle check (at once when it was never reached)."""
        if self._down or self._spool_pending:
            return self._next_retry
        return self._verified_at + self._idle_check_s

    def _idle_timeout(self) -> float:
        return max(0.01, self._next_check() - time.monotonic())

    def _check_due(self) -> bool:
        # when closing, close() makes the last replay attempt itself (within its deadline)
        return not self._closing and time.monotonic() >= self._next_check()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self._check_due():  # the first contact, a retry, the replay, the idle check
                    await loop.run_in_executor(self._worker, self._replay_spool)
                if not self._queue:
                    if self._closing:
                        return
                    await self._wait_wakeup(self._idle_timeout())
                if self._queue:
                    # batch window: until batch_size, flush_interval_s, flush() or close()
                    while (
                        len(self._queue) < self._batch_size
                        and not self._flush_requested
                        and not self._closing
                    ):
                        remaining = self._first_at + self._flush_interval_s - time.monotonic()
                        if remaining <= 0:
                            break
                        await self._wait_wakeup(remaining)
                    n = min(self._batch_size, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(n)]
                    if self._ahead is not None:
                        self._ahead.cut(self._enqueued)
                    if self._queue:
                        self._first_at = time.monotonic()
                    else:
                        self._flush_requested = False
                    with self._lock:
                        self._inflight = batch
                    try:
                        await loop.run_in_executor(self._worker, self._deliver, batch)
                    except Exception:
                        log.exception("audit: delivering a batch failed; spooling it")
                        self._spool_inflight(batch)
                    self._done += n
                    # (what failed was spooled, and _deliver waited for it; while the spool
                    # cannot be written, the segments are the rows' only copy on disk: kept)
                    if self._ahead is not None and self._spool.stats().healthy:
                        self._ahead.delivered(self._done)
                    self._resolve_waiters()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the writer alive whatever happens
                log.exception("audit: writer loop error")
                await asyncio.sleep(0.1)

    # ------------------------------------------------------------------------------------
    # worker thread: everything below runs on self._worker's single thread

    def _replay_write_ahead_leftovers(self) -> None:
        """What a killed process left in its write-ahead files goes to the spool's replay
        segments (some of it may be in QuestDB already: DEDUP keeps one of each)."""
        for path in write_ahead_leftovers(self._ahead_path):
            if path.stat().st_size == 0:
                path.unlink()
                continue
            os.replace(path, self._next_segment(self._segments()))
            log.warning("audit: replaying the rows a stopped process left in %s", path)

    def _take_over_foreign_spools(self) -> None:
        for spool in self._adopt:
            rows = take_over(spool, lambda: self._next_segment(self._segments()))
            if rows:
                with self._lock:
                    self._spool_pending += rows
                    self._next_retry = 0.0  # replayed at the writer's next turn
                log.info("audit: replaying %d row(s) another process left in %s", rows, spool)

    def _count_spool(self) -> None:
        pending = count_lines(self._spool.path) + sum(count_lines(p) for p in self._segments())
        with self._lock:
            self._spool_pending += pending
        if pending:
            log.warning(
                "audit: %d row(s) left in the spool %s from an earlier run; replaying them",
                pending,
                self._spool.path,
            )

    def _close_worker(self) -> None:
        if self._sender is not None:
            try:
                self._sender.close(flush=False)
            except QuestDBError:
                pass
            self._sender = None
        self._tables.close()
        self._rejected.close()

    def _ensure_ready(self) -> None:
        if self._sender is None:
            sender = Sender.from_conf(self._conf, **self._sender_kw)
            try:
                _uninterrupted(sender.establish)
            except QuestDBError as exc:
                sender.close(flush=False)
                raise Unavailable(f"connect: {exc}") from exc
            self._sender = sender
        now = time.monotonic()
        if self._tables_ready and now - self._verified_at < self._verify_interval_s:
            return
        # the cheap check (one tables() query) is enough while nothing seemed wrong
        if not self._tables_ready or not self._tables.right_shapes():
            self._tables.prepare(checked_before=bool(self._verified_at))
        self._tables_ready = True
        self._verified_at = time.monotonic()

    def _mark_down(self, exc: BaseException) -> None:
        self._backoff = (
            self._retry_initial_s if not self._down else min(self._backoff * 2, self._retry_max_s)
        )
        with self._lock:
            was_down, self._down = self._down, True
            if not was_down or self._refusal:
                self._since = time.time()
            self._refusal, self._why = "", _short(exc)
            self._next_retry = time.monotonic() + self._backoff
        self._tables_ready = False  # re-check the tables when it comes back
        if not was_down:
            log.warning(
                "audit: QuestDB at %s unavailable (%s); spooling to %s, retrying with backoff",
                self._addr,
                exc,
                self._spool.path,
            )
        else:
            log.info("audit: QuestDB at %s still unavailable (%s)", self._addr, exc)

    def _mark_refused(self, exc: Refused) -> None:
        """QuestDB answers but will not take the rows: no outage, so no fast retries and one
        clear ERROR (again only if the reason changes)."""
        self._backoff = self._retry_max_s
        reason = _short(exc, 500)
        kind = exc.kind
        with self._lock:
            if kind != self._logged_refusal or not self._refusal:
                self._since = time.time()
            self._down, self._refusal, self._why = True, reason, reason
            self._next_retry = time.monotonic() + self._backoff
        self._tables_ready = False
        if kind != self._logged_refusal:
            self._logged_refusal = kind
            log.error(
                "audit: QuestDB at %s answers but refuses the audit rows: %s. This is not an "
                "outage and needs a fix on the QuestDB side; rows are spooled to %s and it is "
                "tried again every %ss",
                self._addr,
                reason,
                self._spool.path,
                self._retry_max_s,
            )
        else:
            log.debug("audit: QuestDB at %s still refuses the audit rows: %s", self._addr, reason)

    def _mark_up(self) -> None:
        if self._down:
            log.warning("audit: QuestDB at %s takes the audit rows again", self._addr)
        self._backoff = 0.0
        self._logged_refusal = ""
        with self._lock:
            if self._down or not self._reached:
                self._since = time.time()
            self._down, self._refusal, self._why, self._reached = False, "", "", True
            self._next_retry = 0.0

    def _deliver(self, batch: list[AuditEvent]) -> None:
        if self._down and time.monotonic() < self._next_retry:
            leftover = batch
        else:
            leftover = self._write_rows(batch)
            if not leftover:  # (a busy sink is never idle long enough for the replay's turn)
                self._take_over_foreign_spools()
        with self._lock:
            if self._inflight is not batch:  # close() gave up waiting and spooled it already
                return
            self._inflight = None
            self._spool.emit_all(leftover)
            self._spool_pending += len(leftover)
            self._spooled_total += len(leftover)
        if leftover:
            self._wait_spooled()

    def _spool_inflight(self, batch: list[AuditEvent]) -> None:
        """Spool a batch whose delivery failed unexpectedly (unless close() already did)."""
        with self._lock:
            if self._inflight is not batch:
                return
            self._inflight = None
        self._spool.emit_all(batch)
        self._add_spooled(len(batch))

    def _wait_spooled(self) -> None:
        if not self._spool.wait_durable(timeout=10.0):
            log.error("audit: spool %s is slow to write; rows are held in memory", self._spool.path)

    def _write_rows(self, rows: list[AuditEvent]) -> list[AuditEvent]:
        """Write rows, one transactional flush per table; return the rows not written
        because QuestDB does not take them now (rejected rows go to the .rejected journal)."""
        groups: dict[str, list[AuditEvent]] = {}
        for ev in rows:
            groups.setdefault(ev.table, []).append(ev)
        tables = list(groups)
        try:
            self._ensure_ready()
        except (Unavailable, Refused) as exc:
            with self._lock:  # the rows were due to go and did not: a failed write
                self._write_errors += 1
            return self._not_taken(exc, rows)
        for i, table in enumerate(tables):
            try:
                self._flush_into(table, groups[table])
            except (Unavailable, Refused) as exc:
                return self._not_taken(exc, [ev for t in tables[i:] for ev in groups[t]])
        self._mark_up()
        return []

    def _not_taken(self, exc: Unavailable | Refused, rows: list[AuditEvent]) -> list[AuditEvent]:
        if isinstance(exc, Refused):
            self._mark_refused(exc)
        else:
            self._mark_down(exc)
        return rows

    def _flush_into(self, table: str, events: list[AuditEvent]) -> None:
        try:
            self._flush_table(table, events)
        except _TableLost:
            # gone since the last check, and QuestDB creates no table itself: make it, once
            self._tables_ready = False
            self._ensure_ready()
            try:
                self._flush_table(table, events)
            except _TableLost as exc:
                raise Refused(f"table {table}: {exc}", kind=f"write into {table}") from exc

    def _flush_table(self, table: str, events: list[AuditEvent], escaped: bool = False) -> None:
        """``escaped``: text QuestDB cannot store is written escaped (see ``_storable``)."""
        assert self._sender is not None
        buf = self._sender.new_buffer()
        good: list[AuditEvent] = []
        for ev in events:
            try:
                _add_row(buf, table, ev, escaped)
            except QuestDBError as exc:  # the client refused the row itself
                if escaped or not _unstorable(ev) or not _escaped_row_added(buf, table, ev):
                    self._reject([ev], f"client: {exc}")
                    continue
            good.append(ev)
        if not good:
            return
        try:
            # clear=False: on failure the rows stay in our buffer (and in `good`)
            _uninterrupted(self._sender.flush, buf, clear=False, transactional=True)
        except QuestDBError as exc:
            with self._lock:
                self._write_errors += 1
            if "table does not exist" in str(exc):
                raise _TableLost(str(exc)) from exc
            if not _is_rejection(exc):
                raise Unavailable(f"{exc.code.name}: {exc}") from exc
            if len(good) == 1:
                if not escaped and _unstorable(good[0]):  # (a NUL in a symbol): in it goes, escaped
                    self._flush_table(table, good, escaped=True)
                else:
                    self._reject(good, str(exc))
                return
            mid = len(good) // 2  # bisect to isolate the bad row(s)
            self._flush_table(table, good[:mid])
            self._flush_table(table, good[mid:])
            return
        with self._lock:
            self._rows_written += len(good)

    def _reject(self, events: list[AuditEvent], error: str) -> None:
        self._rejected.append(events, fsync=True, error=error[:1000])
        with self._lock:
            self._rejected_total += len(events)
        log.error(
            "audit: QuestDB refused %d row(s) (%s); kept in %s: %s",
            len(events),
            ", ".join(f"{e.table}/{e.event_id}" for e in events[:5]),
            self._rejected.path,
            error[:300],
        )

    def _segments(self) -> list[Path]:
        return replay_segments(self._spool.path)

    def _next_segment(self, existing: list[Path]) -> Path:
        seq = time.time_ns()
        if existing:
            last = int(existing[-1].name[len(self._spool.path.name) + 1 : -len(".replay")])
            seq = max(seq, last + 1)
        return self._spool.path.with_name(f"{self._spool.path.name}.{seq:020d}.replay")

    def _replay_spool(self) -> bool:
        """Probe QuestDB (checking the tables when due), then replay every spool segment,
        oldest first. True when the spool is empty."""
        if self._down and time.monotonic() < self._next_retry:
            return False
        try:  # probe before touching the files: a failed attempt must not rotate
            self._ensure_ready()
        except Unavailable as exc:
            self._mark_down(exc)
            return False
        except Refused as exc:
            self._mark_refused(exc)
            return False
        self._mark_up()
        if self._abandoned:  # close() gave up on this thread: leave the files to the next start
            return False
        self._take_over_foreign_spools()
        self._spool.wait_durable(timeout=10.0)  # spills handed over so far are on disk
        segments = self._segments()
        if self._spool.file.rotate(self._next_segment(segments)):
            segments = self._segments()
        for seg in segments:
            if not self._replay_segment(seg):
                return False
        with self._lock:  # reconcile the gauge: nothing is on disk, count what is in memory
            in_memory = self._spool.in_memory()  # read before the file size (see below)
            if not self._segments() and self._spool.file.size() == 0:
                # a row written after in_memory() was read is counted in it; one written
                # before makes the file non-empty and skips this
                self._spool_pending = in_memory
            if self._spool_pending:
                self._next_retry = time.monotonic() + self._flush_interval_s
        return self._spool_pending == 0

    def _replay_segment(self, seg: Path) -> bool:
        lines = count_lines(seg)
        corrupt_before = self._corrupt.count
        chunk: list[AuditEvent] = []
        replayed = 0
        for ev in read_journal(seg, corrupt=self._corrupt):
            if self._abandoned:  # the segment stays for the next start
                return False
            chunk.append(ev)
            if len(chunk) >= self._batch_size:
                if not self._replay_chunk(chunk):
                    return False
                replayed += len(chunk)
                chunk = []
        if chunk:
            if not self._replay_chunk(chunk):
                return False
            replayed += len(chunk)
        if self._corrupt.count != corrupt_before:
            kept = seg.with_name(seg.name + ".corrupt")
            os.replace(seg, kept)
            log.error("audit: spool segment had unreadable lines; kept as %s", kept)
        else:
            seg.unlink()
        with self._lock:
            self._spool_pending = max(0, self._spool_pending - lines)
        log.info("audit: replayed %d row(s) from %s", replayed, seg.name)
        return True

    def _replay_chunk(self, chunk: list[AuditEvent]) -> bool:
        before = self._rows_written
        if self._write_rows(chunk):  # unavailable: the segment keeps the rows
            return False
        with self._lock:
            self._replayed += self._rows_written - before
        return True


# Text QuestDB cannot store: a lone surrogate (not UTF-8: the client refuses the row) and a NUL
# in a symbol (the server refuses the row). A row holding some is written with it escaped as
# ``\\uXXXX`` (as the journal writes a surrogate) rather than refused: the row lands.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(text: str) -> str:
    return escaped(text, _UNSTORABLE)


def _unstorable(ev: AuditEvent) -> bool:
    return any(v.__class__ is str and _UNSTORABLE.search(v) for v in (*ev.symbols.values(), *ev.columns.values()))


def _add_row(buf: Any, table: str, ev: AuditEvent, escaped: bool) -> None:
    symbols, columns = dict(ev.symbols), {**ev.columns, "event_id": ev.event_id}
    if escaped:
        symbols = {k: _storable(v) for k, v in symbols.items()}
        columns = {k: _storable(v) if v.__class__ is str else v for k, v in columns.items()}
    buf.row(table, symbols=symbols, columns=columns, at=TimestampNanos(ev.ts_ns))


def _escaped_row_added(buf: Any, table: str, ev: AuditEvent) -> bool:
    try:
        _add_row(buf, table, ev, True)
    except QuestDBError:
        return False
    return True


def _uninterrupted(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call`` made again while a signal interrupts it (see the module docstring)."""
    deadline = time.monotonic() + _INTERRUPTED_RETRY_S
    while True:
        try:
            return call(*args, **kwargs)
        except QuestDBError as exc:
            if _INTERRUPTED not in str(exc) or time.monotonic() >= deadline:
                raise


def _is_rejection(exc: QuestDBError) -> bool:
    """The data's fault (retrying cannot help) rather than the server's availability."""
    if exc.code in _REJECTION_CODES:
        return True
    return exc.code == QuestDBErrorCode.ServerFlushError and '"code":"invalid"' in str(exc)



def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def _within(awaitable: asyncio.Future[Any], deadline: float | None) -> bool:
    """Wait for a task or future until a monotonic deadline (None: for good); False if it is
    still running then (it is left running)."""
    if deadline is None:
        await awaitable
        return True
    done, _ = await asyncio.wait({awaitable}, timeout=max(0.0, deadline - time.monotonic()))
    if done:
        awaitable.result()
    return bool(done)
