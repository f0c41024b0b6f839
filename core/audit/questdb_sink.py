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
  built (events.py), so this is a last line of defence.
* Tables are created up front (``CREATE TABLE IF NOT EXISTS ... WAL DEDUP UPSERT
  KEYS(ts, event_id)``) before any row is sent -- ILP would otherwise auto-create a table
  without DEDUP -- and again after every outage (the server might have lost its data).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from questdb import QuestDBError, QuestDBErrorCode, Sender, TimestampNanos

from .events import TABLES, AuditEvent
from .journal import CorruptLineCounter, JournalFile, JournalSink, count_lines, read_journal
from .sink import SinkStats

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


class _Unavailable(Exception):
    """QuestDB did not accept a write for a reason that is not the data's fault."""


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
    :param spool_path: the local spool journal; ``<spool>.<n>.replay`` segments and
        ``<spool>.rejected`` live beside it.
    """

    def __init__(
        self,
        conf: str,
        *,
        spool_path: str | os.PathLike[str],
        http_url: str | None = None,
        batch_size: int = 1000,
        flush_interval_s: float = 0.25,
        queue_max: int = 10_000,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 15.0,
        exec_timeout_s: float = 5.0,
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
        self._http_url = (http_url or f"{schema}://{self._addr}").rstrip("/")
        self._http_auth: Any = None
        self._http_headers: dict[str, str] = {}
        if "username" in params and "password" in params:
            self._http_auth = (params["username"], params["password"])
        elif "token" in params:
            self._http_headers["Authorization"] = f"Bearer {params['token']}"
        self._http_verify = params.get("tls_verify", "on") != "unsafe_off"

        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._queue_max = queue_max
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._exec_timeout_s = exec_timeout_s

        spool = Path(spool_path)
        self._spool = JournalSink(spool, fsync="always", name="spool")
        self._rejected = JournalFile(spool.with_name(spool.name + ".rejected"))
        self._corrupt = CorruptLineCounter()

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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tw-audit-qdb")
        self._sender: Sender | None = None
        self._http: httpx.Client | None = None
        self._tables_ready = False
        self._backoff = 0.0

        # shared (written under _lock, read anywhere)
        self._lock = threading.Lock()
        self._down = False
        self._next_retry = 0.0
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
        await self._loop.run_in_executor(self._executor, self._init_worker)
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

    async def close(self) -> None:
        """Drain the queue (to QuestDB or the spool), try a last replay, release everything."""
        if self._close_task is None:  # concurrent close() calls share one closing
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        self._closing = True
        self._wakeup.set()
        loop = asyncio.get_running_loop()
        if self._task is not None:
            await self._task
        elif self._queue:  # never started: park what was emitted in the spool
            self._spool.emit_all(self._queue)
            self._add_spooled(len(self._queue))
            self._queue.clear()
            self._done = self._enqueued
        self._resolve_waiters(force=True)
        if self._started and self._spool_pending and not self._down:
            await loop.run_in_executor(self._executor, self._replay_spool)
        self._closed = True
        await self._spool.close()
        await loop.run_in_executor(self._executor, self._close_worker)
        await asyncio.to_thread(self._executor.shutdown, True)
        s = self.stats()
        if s.spooled:
            log.warning(
                "audit: closed with %d row(s) in the spool %s; they are replayed at next start",
                s.spooled,
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
            write_errors_total=self._write_errors,
            rejected_total=self._rejected_total,
            dropped=0,
            healthy=not self._down,
        )

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
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._replay_spool)

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

    def _idle_timeout(self) -> float | None:
        if self._spool_pending:
            return max(0.01, self._next_retry - time.monotonic())
        return None

    def _spool_due(self) -> bool:
        return self._spool_pending > 0 and time.monotonic() >= self._next_retry

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
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
                    if self._queue:
                        self._first_at = time.monotonic()
                    else:
                        self._flush_requested = False
                    try:
                        await loop.run_in_executor(self._executor, self._deliver, batch)
                    except Exception:
                        log.exception("audit: delivering a batch failed; spooling it")
                        self._spool.emit_all(batch)
                        self._add_spooled(len(batch))
                    self._done += n
                    self._resolve_waiters()
                if self._spool_due() and not (self._closing and self._down):
                    await loop.run_in_executor(self._executor, self._replay_spool)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the writer alive whatever happens
                log.exception("audit: writer loop error")
                await asyncio.sleep(0.1)

    # ------------------------------------------------------------------------------------
    # worker thread: everything below runs on self._executor's single thread

    def _init_worker(self) -> None:
        pending = count_lines(self._spool.path) + sum(count_lines(p) for p in self._segments())
        with self._lock:
            self._spool_pending += pending
        if pending:
            log.warning(
                "audit: %d row(s) left in the spool %s from an earlier run; replaying them",
                pending,
                self._spool.path,
            )
        try:
            self._ensure_ready()
        except _Unavailable as exc:
            self._mark_down(exc)

    def _close_worker(self) -> None:
        if self._sender is not None:
            try:
                self._sender.close(flush=False)
            except QuestDBError:
                pass
            self._sender = None
        if self._http is not None:
            self._http.close()
            self._http = None
        self._rejected.close()

    def _exec(self, sql: str) -> dict[str, Any]:
        if self._http is None:
            self._http = httpx.Client(
                base_url=self._http_url,
                auth=self._http_auth,
                headers=self._http_headers,
                verify=self._http_verify,
                timeout=self._exec_timeout_s,
            )
        try:
            resp = self._http.get("/exec", params={"query": sql})
        except httpx.HTTPError as exc:
            raise _Unavailable(f"/exec: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 500 or resp.status_code in (401, 403, 404, 429):
            raise _Unavailable(f"/exec: HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise _Unavailable(f"/exec: HTTP {resp.status_code}, not JSON") from exc
        if resp.status_code != 200 or "error" in body:
            with self._lock:
                self._write_errors += 1
            log.error("audit: QuestDB refused %r: %s", sql[:80], body.get("error", body))
            raise _Unavailable(f"/exec refused: {body.get('error', resp.status_code)}")
        return body

    def _ensure_ready(self) -> None:
        if self._sender is None:
            sender = Sender.from_conf(self._conf, **self._sender_kw)
            try:
                sender.establish()
            except QuestDBError as exc:
                sender.close(flush=False)
                raise _Unavailable(f"connect: {exc}") from exc
            self._sender = sender
        if not self._tables_ready:
            for schema in TABLES.values():
                self._exec(schema.ddl())
            names = ", ".join(f"'{n}'" for n in TABLES)
            body = self._exec(f"SELECT table_name, dedup FROM tables() WHERE table_name IN ({names})")
            for name, dedup in body.get("dataset", []):
                if not dedup:
                    log.error("audit: table %s exists without DEDUP; enabling it", name)
                    self._exec(f"ALTER TABLE {name} DEDUP ENABLE UPSERT KEYS(ts, event_id)")
            self._tables_ready = True

    def _mark_down(self, exc: BaseException) -> None:
        self._backoff = (
            self._retry_initial_s if not self._down else min(self._backoff * 2, self._retry_max_s)
        )
        with self._lock:
            was_down, self._down = self._down, True
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

    def _mark_up(self) -> None:
        if self._down:
            log.warning("audit: QuestDB at %s available again", self._addr)
        self._backoff = 0.0
        with self._lock:
            self._down = False
            self._next_retry = 0.0

    def _deliver(self, batch: list[AuditEvent]) -> None:
        if self._down and time.monotonic() < self._next_retry:
            self._spool_rows(batch)
            return
        leftover = self._write_rows(batch)
        if leftover:
            self._spool_rows(leftover)

    def _spool_rows(self, rows: list[AuditEvent]) -> None:
        with self._lock:
            self._spool.emit_all(rows)
            self._spool_pending += len(rows)
            self._spooled_total += len(rows)
        if not self._spool.wait_durable(timeout=10.0):
            log.error("audit: spool %s is slow to write; rows are held in memory", self._spool.path)

    def _write_rows(self, rows: list[AuditEvent]) -> list[AuditEvent]:
        """Write rows, one transactional flush per table; return the rows not written
        because QuestDB is unavailable (rejected rows go to the .rejected journal)."""
        try:
            self._ensure_ready()
        except _Unavailable as exc:
            self._mark_down(exc)
            return rows
        groups: dict[str, list[AuditEvent]] = {}
        for ev in rows:
            groups.setdefault(ev.table, []).append(ev)
        tables = list(groups)
        for i, table in enumerate(tables):
            try:
                self._flush_table(table, groups[table])
            except _Unavailable as exc:
                self._mark_down(exc)
                return [ev for t in tables[i:] for ev in groups[t]]
        self._mark_up()
        return []

    def _flush_table(self, table: str, events: list[AuditEvent]) -> None:
        assert self._sender is not None
        buf = self._sender.new_buffer()
        good: list[AuditEvent] = []
        for ev in events:
            try:
                buf.row(
                    table,
                    symbols=dict(ev.symbols),
                    columns={**ev.columns, "event_id": ev.event_id},
                    at=TimestampNanos(ev.ts_ns),
                )
                good.append(ev)
            except QuestDBError as exc:  # the client refused the row itself
                self._reject([ev], f"client: {exc}")
        if not good:
            return
        try:
            # clear=False: on failure the rows stay in our buffer (and in `good`)
            self._sender.flush(buf, clear=False, transactional=True)
        except QuestDBError as exc:
            with self._lock:
                self._write_errors += 1
            if not _is_rejection(exc):
                raise _Unavailable(f"{exc.code.name}: {exc}") from exc
            if len(good) == 1:
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
        spool = self._spool.path
        if not spool.parent.exists():
            return []
        prefix = spool.name + "."
        return sorted(
            p
            for p in spool.parent.iterdir()
            if p.name.startswith(prefix) and p.name.endswith(".replay")
        )

    def _next_segment(self, existing: list[Path]) -> Path:
        seq = time.time_ns()
        if existing:
            last = int(existing[-1].name[len(self._spool.path.name) + 1 : -len(".replay")])
            seq = max(seq, last + 1)
        return self._spool.path.with_name(f"{self._spool.path.name}.{seq:020d}.replay")

    def _replay_spool(self) -> bool:
        """Replay every spool segment, oldest first. True when the spool is empty."""
        if self._down and time.monotonic() < self._next_retry:
            return False
        if self._down or not self._tables_ready:
            try:  # probe before touching the files: a failed attempt must not rotate
                self._ensure_ready()
            except _Unavailable as exc:
                self._mark_down(exc)
                return False
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


def _is_rejection(exc: QuestDBError) -> bool:
    """The data's fault (retrying cannot help) rather than the server's availability."""
    if exc.code in _REJECTION_CODES:
        return True
    return exc.code == QuestDBErrorCode.ServerFlushError and '"code":"invalid"' in str(exc)

