"""``serve`` with ``server.workers`` > 1: several serving processes on the same two ports.

One Python process tops out at one core, so a machine with more cores runs one worker per
core. Each worker is a whole gateway and a replica of the scale-out design: both listeners
are bound with SO_REUSEPORT, so the kernel spreads connections over the workers, and the
state they must agree on (idempotency keys, trades, positions, rate limits, in-flight
counts, status events, the webhook outbox and its signing key) is in Redis (``[shared]
redis_url``, required by the settings). What stays local to a worker — its audit spool, LIVE
journal — lives under ``data_dir/worker-{i}``, so each worker also finds its own unfinished
work after a restart.

This supervisor forwards SIGTERM/SIGINT (each worker then shuts down gracefully on its own),
restarts a worker that dies unexpectedly (with backoff), and exits 0 when every worker
stopped cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from tradewire.core.config import Settings, key_db_path
from tradewire.core.retry import RetryPolicy

log = logging.getLogger("tradewire.workers")

_RESTART = RetryPolicy(max_attempts=1_000_000, initial_backoff_s=0.5, max_backoff_s=10.0)


def worker_settings(settings: Settings, index: int) -> Settings:
    """The settings of worker ``index``: its own data directory and replica id."""
    data_dir = settings.storage.data_dir / f"worker-{index}"
    update = {"storage": settings.storage.model_copy(update={"data_dir": data_dir}),
              # the key database is the one `tradewire keys` writes: shared, not per worker
              "auth": settings.auth.model_copy(update={"api_key_db": key_db_path(settings)})}
    if settings.audit.journal_path is not None:
        update["audit"] = settings.audit.model_copy(
            update={"journal_path": _of_worker(settings.audit.journal_path, index)})
    if settings.live.orders_db is not None:
        update["live"] = settings.live.model_copy(update={"orders_db": _of_worker(settings.live.orders_db, index)})
    if settings.shared.replica_id:
        update["shared"] = settings.shared.model_copy(update={"replica_id": f"{settings.shared.replica_id}-{index}"})
    return settings.model_copy(update=update)


def _of_worker(path: Path, index: int) -> Path:
    """``audit.jsonl`` → ``audit-worker-1.jsonl``: a configured file each worker has its own of."""
    return path.with_name(f"{path.stem}-worker-{index}{path.suffix}")


async def supervise(settings: Settings, config_path: str | None) -> int:
    """Run ``settings.server.workers`` workers until SIGTERM/SIGINT; the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    codes = await asyncio.gather(*(_keep_running(i, config_path, stop, settings.shutdown.deadline_s)
                                   for i in range(settings.server.workers)))
    failed = [i for i, code in enumerate(codes) if code != 0]
    if failed:
        log.error("workers %s did not stop cleanly (exit codes %s)", failed, [codes[i] for i in failed])
        return 1
    log.info("all %d workers stopped", len(codes))
    return 0


async def _keep_running(index: int, config_path: str | None, stop: asyncio.Event, deadline_s: float) -> int:
    """Worker ``index``: started, restarted after an unexpected exit, stopped on ``stop``."""
    restarts = 0
    while True:
        process = await _spawn(index, config_path)
        stopping = asyncio.create_task(stop.wait())
        exited = asyncio.create_task(process.wait())
        await asyncio.wait((stopping, exited), return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            exited.cancel()
            return await _terminate(process, deadline_s)
        stopping.cancel()
        restarts += 1
        log.error("worker %d (pid %d) exited with %s; restarting it", index, process.pid, process.returncode)
        try:  # wait before restarting, unless told to stop meanwhile
            await asyncio.wait_for(stop.wait(), _RESTART.delay(restarts))
            return 0
        except TimeoutError:
            pass


async def _spawn(index: int, config_path: str | None) -> asyncio.subprocess.Process:
    args = [sys.executable, "-m", "tradewire.gateway.cli", "serve", "--worker", str(index)]
    if config_path:
        args += ["--config", str(Path(config_path).resolve())]
    process = await asyncio.create_subprocess_exec(*args)
    log.info("worker %d started (pid %d)", index, process.pid)
    return process


async def _terminate(process: asyncio.subprocess.Process, deadline_s: float) -> int:
    """SIGTERM, then SIGKILL if the worker outlives its own shutdown deadline."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), deadline_s + 5)
        except TimeoutError:
            log.error("worker pid %d ignored SIGTERM for %.0f s; killing it", process.pid, deadline_s + 5)
            process.kill()
            await process.wait()
    if process.returncode == -signal.SIGTERM:
        # Killed by the signal's default action: it came before the worker installed its
        # handlers, which it does before serving anything (server.serve), so nothing was lost.
        return 0
    return process.returncode
