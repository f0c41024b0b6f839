"""``serve`` with ``server.workers`` > 1: several serving processes on the same two ports.

One Python process tops out at one core, so a machine with more cores runs one worker per
core. Each worker is a whole gateway and a replica of the scale-out design: both listeners
are bound with SO_REUSEPORT, so the kernel spreads connections over the workers, and the
state they must agree on (idempotency keys, trades, positions, rate limits, in-flight
counts, status events, the webhook outbox and its signing key) is in Redis (``[shared]
redis_url``, required by the settings). What stays local to a worker — its audit spool, LIVE
journal — lives under ``data_dir/worker-{i}``, so each worker also finds its own unfinished
work after a restart.

Before it starts any worker, the supervisor makes sure nothing listens on either address yet:
a socket bound without SO_REUSEPORT is refused by any listener there, so another service —
even another tradewire service, whose workers would let these join their SO_REUSEPORT group
and take a share of its connections — ends this one at once with one ``tradewire: cannot
listen ...`` line, before anything started (a worker it restarts later is not checked: its
siblings hold the ports, and it joins them).

This supervisor forwards SIGTERM/SIGINT/SIGHUP (each worker then shuts down gracefully on its
own), restarts a worker that dies unexpectedly (with backoff), and exits 0 when every worker
stopped cleanly. A supervisor killed outright takes its workers with it: each gets SIGTERM
(outlives_supervisor) and shuts down gracefully. A worker that cannot start ends the service
instead: at once when it never served, or after several failed starts in a row when it had —
the others are stopped and the command exits non-zero with one ``tradewire: ...`` line, as a
single gateway does.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tradewire.core.config import Settings, admin_spool_path, key_db_path
from tradewire.core.retry import RetryPolicy
from tradewire.gateway.assembly import StartupError
from tradewire.gateway.grpc_server import check_port_free

log = logging.getLogger("tradewire.workers")

# A worker that could not start exits with this code. The exit code is the whole protocol:
# serve() turns whatever keeps a worker from starting into StartupError before it serves
# anything, so this code means "never served" and any other exit is a worker that got past
# start-up — no readiness message to send, lose or wait for. A pipe carries only the reason,
# for the supervisor's one ``tradewire: ...`` line (the workers' stderr is the JSON log).
NOT_STARTED = 3
# A worker stopped by a signal before it began to start (server.serve) exits with this code: for
# a first start that is a clean stop, for a restart after failed ones a worker still down.
STOPPED_BEFORE_SERVING = 4
_REASON_MAX_BYTES = 4000  # within PIPE_BUF: written at once, never blocks the worker

# Every restart backs off from 0.5 s to 10 s. A worker that served and died is restarted as
# often as it takes; one that then cannot start again gets max_attempts starts in a row
# (time for a Redis restart, say) before the service ends.
_RESTART = RetryPolicy(max_attempts=5, initial_backoff_s=0.5, max_backoff_s=10.0)
# A worker that ran this long before it died was not in a crash loop: its restart backs off
# from the start again (else one crash a week would wait the longest delay after a month).
SETTLED_S = 60.0


@dataclass
class _Restarts:
    """How long to wait before restarting a worker that exited, from its recent history."""

    policy: RetryPolicy = _RESTART
    settled_s: float = SETTLED_S
    in_a_row: int = 0  # exits since the worker last ran settled_s

    def delay_after(self, ran_for_s: float) -> float:
        self.in_a_row = 1 if ran_for_s >= self.settled_s else self.in_a_row + 1
        return self.policy.delay(self.in_a_row)


def worker_settings(settings: Settings, index: int) -> Settings:
    """The settings of worker ``index``: its own data directory and replica id."""
    data_dir = settings.storage.data_dir / f"worker-{index}"
    update = {"storage": settings.storage.model_copy(update={"data_dir": data_dir}),
              # the key database is the one `tradewire keys` writes: shared, not per worker
              "auth": settings.auth.model_copy(update={"api_key_db": key_db_path(settings)})}
    # the administration commands' spool too: any worker sends what they left there
    audit = {"admin_spool_path": admin_spool_path(settings)}
    if settings.audit.journal_path is not None:
        audit["journal_path"] = _of_worker(settings.audit.journal_path, index)
    update["audit"] = settings.audit.model_copy(update=audit)
    if settings.live.orders_db is not None:
        update["live"] = settings.live.model_copy(update={"orders_db": _of_worker(settings.live.orders_db, index)})
    if settings.shared.replica_id:
        update["shared"] = settings.shared.model_copy(update={"replica_id": f"{settings.shared.replica_id}-{index}"})
    return settings.model_copy(update=update)


def _of_worker(path: Path, index: int) -> Path:
    """``audit.jsonl`` → ``audit-worker-1.jsonl``: a configured file each worker has its own of."""
    return path.with_name(f"{path.stem}-worker-{index}{path.suffix}")


async def supervise(settings: Settings, config_path: str | None, signals) -> int:
    """Run ``settings.server.workers`` workers until a stop signal (``signals``: the command's,
    cli.StopSignals, noted since the process began); the exit code. Raises StartupError when an
    address to listen on is taken (before any worker started), or (once every worker stopped)
    when a worker could not start."""
    service = _Service(config_path, settings.shutdown.deadline_s)
    signals.hand_over(asyncio.get_running_loop(), service.stop.set)
    if service.stop.is_set():  # before any worker started: nothing to stop
        log.info("stopped before serving", extra={"signal": signals.first})
        return 0
    check_listening_addresses_free(settings)
    codes = await asyncio.gather(*(_keep_running(i, service) for i in range(settings.server.workers)))
    if service.failure is not None:
        raise StartupError(service.failure)
    failed = [i for i, code in enumerate(codes) if code != 0]
    if failed:
        log.error("workers %s did not stop cleanly (exit codes %s)", failed, [codes[i] for i in failed])
        return 1
    log.info("all %d workers stopped", len(codes))
    return 0


def check_listening_addresses_free(settings: Settings) -> None:
    """StartupError naming the listener when something listens on its address already.

    The workers bind with SO_REUSEPORT, which lets them join any listener there that set it too
    (one of another service's workers, on the same address or a wildcard one), and take a share
    of its connections without a word; the probe (check_port_free) binds without it, which any
    listener on the port refuses."""
    server = settings.server
    for protocol, host, port in (("gRPC", server.grpc_host, server.grpc_port),
                                 ("HTTP", server.http_host, server.http_port)):
        try:
            check_port_free(host, port, protocol)
        except OSError as exc:
            raise StartupError(str(exc)) from None


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def outlives_supervisor(supervisor_pid: int | None) -> bool:
    """In a worker, before it serves: have SIGTERM sent to it when its supervisor dies (killed
    outright, say), so it stops gracefully instead of serving on, orphaned, with the ports, its
    data directory and trades nobody supervises any more. True when the supervisor is gone
    already: the worker must not serve at all."""
    if supervisor_pid is None or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("cannot ask to be stopped with the supervisor (prctl: %s)", os.strerror(ctypes.get_errno()))
    # (set in this process, so a supervisor that died before it was set is not noticed by it)
    return os.getppid() != supervisor_pid


def report_start_failure(report_fd: int | None, reason: str) -> int:
    """In a worker that could not start: tell the supervisor why; the worker's exit code."""
    if report_fd is None:  # started by hand, without a supervisor to tell
        print(f"tradewire: {reason}", file=sys.stderr)
    else:
        os.write(report_fd, reason.encode()[:_REASON_MAX_BYTES])
        os.close(report_fd)
    return NOT_STARTED


@dataclass
class _Service:
    """What the workers' supervision loops share: how to start one, when to stop, and why the
    service ended when a worker could not start."""

    config_path: str | None
    deadline_s: float
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str | None = None

    def fail(self, reason: str) -> None:
        """End the service: every worker is stopped, and ``reason`` is its last word."""
        if self.failure is None:
            self.failure = reason
        self.stop.set()


@dataclass
class _Worker:
    """One worker process and the read end of the pipe it reports a failed start on."""

    process: asyncio.subprocess.Process
    report_fd: int

    def start_failure(self) -> str | None:
        """Once it exited: why it could not start, or None when it had started."""
        if self.process.returncode != NOT_STARTED:
            return None
        return _read_all(self.report_fd) or f"exited with {NOT_STARTED} before serving"

    def close(self) -> None:
        os.close(self.report_fd)


async def _keep_running(index: int, service: _Service) -> int:
    """Worker ``index``: started, restarted after an unexpected exit, stopped on ``service.stop``;
    its exit code (not 0 when it was down, or failing to start again, when stopped)."""
    restarts = _Restarts()
    start_failures = 0
    served = False
    while True:
        worker = await _spawn(index, service.config_path)
        spawned = time.monotonic()
        try:
            if not await _exits_before(worker.process, service.stop):
                return _stopped_code(await _terminate(worker.process, service.deadline_s), start_failures)
            reason = worker.start_failure()
        finally:
            worker.close()
        ran_for_s = time.monotonic() - spawned
        if reason is None:
            served, start_failures = True, 0
            log.error("worker %d (pid %d) exited with %s; restarting it", index, worker.process.pid,
                      worker.process.returncode)
        else:
            start_failures += 1
            if not served or not _RESTART.retries_left(start_failures):
                return _give_up(index, reason, start_failures, service)
            log.error("worker %d could not start again (%d of %d tries): %s; restarting it",
                      index, start_failures, _RESTART.max_attempts, reason)
        if await _stopped_within(service.stop, restarts.delay_after(ran_for_s)):
            log.error("worker %d was down when stopped (last exit code %s)", index, worker.process.returncode)
            return worker.process.returncode or 1


def _stopped_code(code: int, start_failures: int) -> int:
    """A worker's exit code once stopped, as the service reports it."""
    if code in (-signal.SIGTERM, STOPPED_BEFORE_SERVING) and not start_failures:
        # It did not start at all: the signal came before the worker began to (noted, or — in
        # the interpreter's first moments, before the command noted signals — killed by the
        # signal's default action), so nothing was lost. (Not so for a retry after failed
        # starts: then the worker is still down.)
        return 0
    return code


def _give_up(index: int, reason: str, start_failures: int, service: _Service) -> int:
    tries = f" ({start_failures} tries in a row)" if start_failures > 1 else ""
    log.info("worker %d could not start%s; stopping the others", index, tries)
    service.fail(f"worker {index} could not start{tries}: {reason}")
    return NOT_STARTED


async def _exits_before(process: asyncio.subprocess.Process, stop: asyncio.Event) -> bool:
    """Wait until ``process`` exits (True) or ``stop`` is set (False)."""
    stopping = asyncio.create_task(stop.wait())
    exited = asyncio.create_task(process.wait())
    await asyncio.wait((stopping, exited), return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    exited.cancel()
    return not stop.is_set()


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` unless ``stop`` is set meanwhile; whether it was."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False


async def _spawn(index: int, config_path: str | None) -> _Worker:
    report_fd, worker_end = os.pipe()
    args = [sys.executable, "-m", "tradewire.gateway.cli", "serve", "--worker", str(index),
            "--report-fd", str(worker_end), "--supervisor-pid", str(os.getpid())]
    if config_path:
        args += ["--config", str(Path(config_path).resolve())]
    try:
        process = await asyncio.create_subprocess_exec(*args, pass_fds=(worker_end,))
    except BaseException:
        os.close(report_fd)
        raise
    finally:
        os.close(worker_end)  # the worker holds the only write end: the pipe ends when it exits
    log.info("worker %d started (pid %d)", index, process.pid)
    return _Worker(process, report_fd)


def _read_all(fd: int) -> str:
    """What is in the pipe (its writer has exited; non-blocking should another process hold it)."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, _REASON_MAX_BYTES).decode(errors="replace").strip()
    except BlockingIOError:
        return ""


async def _terminate(process: asyncio.subprocess.Process, deadline_s: float) -> int:
    """SIGTERM, then SIGKILL if the worker outlives its own shutdown deadline; its exit code."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), deadline_s + 5)
        except TimeoutError:
            log.error("worker pid %d ignored SIGTERM for %.0f s; killing it", process.pid, deadline_s + 5)
            process.kill()
            await process.wait()
    return process.returncode
