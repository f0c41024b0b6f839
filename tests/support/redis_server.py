"""A real redis-server (Debian package) on a free loopback port, for one test session."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from support.ports import free_port, wait_until
from support.tools import require_tool


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = require_tool("redis-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout_s=20, what="redis-server")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
        try:
            return redis.Redis.from_url(self.url).ping()
        except redis.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def halt(self, keep_data: bool = False) -> None:
        """An outage: the server goes away — its data with it, unless ``keep_data`` (saved to its
        directory, as a restart of a persistent Redis keeps it); start() brings one back on the same
        port."""
        if self.proc and self.proc.poll() is None:
            if keep_data:
                self.client().shutdown(save=True)
            else:
                self.proc.terminate()
            self.proc.wait(10)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.workdir, ignore_errors=True)
