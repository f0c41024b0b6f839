"""A real `tradewire devnet` process on a free loopback port."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from support.ports import free_port, wait_until


@dataclass
class DevnetProcess:
    workdir: Path
    args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DevnetProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.workdir / "devnet.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tradewire.gateway.cli", "devnet", "--host", "127.0.0.1", "--port",
             str(self.port), *self.args], stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(self._healthy, timeout_s=30, what="devnet health")
        return self

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError((self.workdir / "devnet.log").read_text()[-3000:])
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def quote(self, input_mint: str, output_mint: str, amount: int, exact_out: bool = False) -> dict:
        params = {"inputMint": input_mint, "outputMint": output_mint, "amount": str(amount), "slippageBps": "0",
                  "swapMode": "ExactOut" if exact_out else "ExactIn", "restrictIntermediateTokens": "true"}
        response = httpx.get(f"{self.url}/swap/v1/quote", params=params, timeout=5)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
