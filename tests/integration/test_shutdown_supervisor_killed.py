"""`serve` with server.workers = 2 whose supervisor is killed outright (SIGKILL, the OOM killer):
its workers do not serve on as orphans — holding the ports, their data directories and their
trades with nobody supervising them — but each shuts down gracefully (its "stopped" line),
within its shutdown deadline, and the ports close."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx

from support.gateway_process import GatewayProcess
from support.trading import eventually

DEADLINE_S = 4.0


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def alive(pid: int) -> bool:
    try:  # (a zombie is not alive: its parent is gone, init reaps it)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def logged(gateway: GatewayProcess, message: str) -> list[dict]:
    return [json.loads(line) for line in gateway.log_text().splitlines() if f'"msg":"{message}"' in line]


async def two_serving_workers(gateway: GatewayProcess) -> set[int]:
    """Both workers' pids once each has said it serves (a health probe may reach only one)."""
    pids = children(gateway.pid)
    if len(pids) != 2 or {line["pid"] for line in logged(gateway, "serving")} != pids:
        return set()
    async with httpx.AsyncClient() as probe:
        try:
            ok = (await probe.get(f"{gateway.http_url}/v1/health")).status_code == 200
        except httpx.TransportError:
            return set()
    return pids if ok else set()


async def test_workers_stop_gracefully_when_their_supervisor_is_killed(tmp_path, redis_server):
    gateway = GatewayProcess(tmp_path / "gw", extra_config=f"[shutdown]\ndeadline_s = {DEADLINE_S}\nfinal_s = 1\n",
                             env={"TRADEWIRE_SHARED__REDIS_URL": redis_server.url,
                                  "TRADEWIRE_SERVER__WORKERS": "2"}).start()
    workers: set[int] = set()
    try:
        workers = await eventually(lambda: two_serving_workers(gateway), timeout=30, what="two serving workers")
        gateway.proc.kill()
        assert await asyncio.to_thread(gateway.wait_exit, 10) == -signal.SIGKILL
        killed = time.monotonic()
        await eventually(lambda: not any(alive(pid) for pid in workers), timeout=DEADLINE_S + 5,
                         what="the orphaned workers to exit")
        assert time.monotonic() - killed < DEADLINE_S + 2
        assert not listening(gateway.http_port) and not listening(gateway.grpc_port)
        stopped = logged(gateway, "stopped")
        assert sorted(line["pid"] for line in stopped) == sorted(workers), "a worker did not shut down gracefully"
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
