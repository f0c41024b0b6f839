"""Helpers for the audit tests: a real QuestDB driven by scripts/questdb.sh, and polling."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "questdb.sh"

T = TypeVar("T")


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(
        [str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"questdb.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
        )
    return proc.stdout


class QuestDBServer:
    """A QuestDB server on free loopback ports with its own data directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        http, pg, ilp, mini = free_ports(4)
        self.http_port = http
        self.pg_port = pg
        self.env = {
            **os.environ,
            "QDB_HTTP_BIND_TO": f"127.0.0.1:{http}",
            "QDB_PG_NET_BIND_TO": f"127.0.0.1:{pg}",
            "QDB_LINE_TCP_NET_BIND_TO": f"127.0.0.1:{ilp}",
            "QDB_HTTP_MIN_NET_BIND_TO": f"127.0.0.1:{mini}",
            "QDB_START_TIMEOUT": "120",
        }
        self.http_url = f"http://127.0.0.1:{http}"
        self.conf = f"http::addr=127.0.0.1:{http};"

    # -- lifecycle (blocking: call through asyncio.to_thread from async tests) -----------

    def start(self) -> None:
        run_script("start", str(self.root), env=self.env, timeout=180)

    def stop(self) -> None:
        run_script("stop", str(self.root), env=self.env, timeout=120)

    def status(self) -> int:
        return subprocess.run(
            [str(SCRIPT), "status", str(self.root)], env=self.env, capture_output=True
        ).returncode

    # -- queries over HTTP /exec ---------------------------------------------------------

    async def query(self, sql: str) -> list[list[Any]]:
        async with httpx.AsyncClient(base_url=self.http_url, timeout=10) as client:
            resp = await client.get("/exec", params={"query": sql})
        body = resp.json()
        if resp.status_code != 200 or "error" in body:
            raise AssertionError(f"query failed: {sql}: {body}")
        return body.get("dataset", [])

    async def wal_applied(self, table: str) -> bool:
        rows = await self.query(
            f"SELECT suspended, writerTxn, sequencerTxn FROM wal_tables() WHERE name = '{table}'"
        )
        if not rows:
            return False
        suspended, writer, sequencer = rows[0]
        assert not suspended, f"WAL table {table} is suspended"
        return writer == sequencer

    async def counts(self, table: str, principal: str) -> tuple[int, int]:
        """(rows, distinct event ids) for one test's principal."""
        rows = await self.query(
            f"SELECT count(), count_distinct(event_id) FROM {table} WHERE principal = '{principal}'"
        )
        return rows[0][0], rows[0][1]

    async def settled_counts(
        self, table: str, principal: str, expected: int, timeout: float = 60
    ) -> tuple[int, int]:
        """Poll (with a deadline) until the WAL is applied and the count reaches ``expected``;
        then return the final (rows, distinct ids) -- a doubled row would show here."""

        async def check() -> tuple[int, int] | None:
            if not await self.wal_applied(table):
                return None
            c = await self.counts(table, principal)
            return c if c[0] >= expected else None

        return await eventually(check, timeout=timeout, what=f"{table} to hold {expected} rows")


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until it returns a truthy value, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await probe()
        except (httpx.HTTPError, ValueError) as exc:  # server still starting, etc.
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)
