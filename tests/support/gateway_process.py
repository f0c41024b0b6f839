"""A real `tradewire serve` process on free loopback ports, with known API keys."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from solders.keypair import Keypair

from support.ports import free_port, wait_until
from tradewire.core.audit.journal import read_journal
from tradewire.core.auth.api_keys import hash_key

# Test principals: name → (key, owner, scopes). Keys are test-only values.
PRINCIPALS = {
    "alice": ("tw_alice001_" + "a" * 40, "alice", ["read", "trade:paper"]),
    "bob": ("tw_bob00001_" + "b" * 40, "bob", ["read", "trade:paper"]),
    "reader": ("tw_reader01_" + "r" * 40, "reader", ["read"]),
    "trader": ("tw_trader01_" + "t" * 40, "trader", ["read", "trade:paper", "trade:live"]),
}


@dataclass
class GatewayProcess:
    workdir: Path
    extra_config: str = ""
    env: dict[str, str] = field(default_factory=dict)
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    # [streams]: a stream opened for an unknown trade waits this little for it in tests
    # (NOT_FOUND cases stay fast); replace the whole section to configure streams.
    streams_config: str = "[streams]\nawait_trade_s = 0.3\n"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def key(self, name: str) -> str:
        return PRINCIPALS[name][0]

    def config_text(self) -> str:
        keys = "\n".join(
            f'[[auth.api_keys]]\nprefix = "{key[:11]}"\nsha256 = "{hash_key(key)}"\nowner = "{owner}"\n'
            f"scopes = {scopes!r}\n".replace("'", '"')
            for key, owner, scopes in PRINCIPALS.values()
        )
        return (
            f'[server]\ngrpc_host = "127.0.0.1"\ngrpc_port = {self.grpc_port}\n'
            f'http_host = "127.0.0.1"\nhttp_port = {self.http_port}\nshutdown_grace_s = 5\n'
            f"max_body_bytes = 65536\n"
            f'[storage]\ndata_dir = "{self.workdir / "data"}"\n'
            f"[paper]\nseed = 7\n"
            f"[limits]\nauth_failure_burst = 10000\nstream_burst = 10000\n"
            f"{self.streams_config}"
            f"{self.extra_config}\n{keys}"
        )

    def start(self) -> GatewayProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "tradewire.toml"
        config.write_text(self.config_text())
        self.log_path = self.workdir / "gateway.log"
        self._log = open(self.log_path, "ab")  # appended: a restarted gateway keeps the earlier log
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tradewire.gateway.cli", "serve", "--config", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        wait_until(self._healthy, timeout_s=30, what="gateway health")
        return self

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log_path.read_text()[-4000:]}")
        try:
            return httpx.get(f"{self.http_url}/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text()

    def audit_rows(self, table: str, **columns: object) -> list[dict]:
        """Every row of ``table`` in the gateway's audit journal (symbols and columns in one dict)
        that has the values in ``columns`` (the default audit sink: a JSON-lines journal in its
        data dir)."""
        events = read_journal(self.workdir / "data" / "audit.jsonl")
        rows = ({**event.symbols, **event.columns} for event in events if event.table == table)
        return [row for row in rows if all(row.get(k) == v for k, v in columns.items())]

    # -- for shutdown and memory tests -------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        """The process's resident set size (VmRSS of /proc/<pid>/status), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS line")

    def terminate(self) -> None:
        """Send SIGTERM and return at once (see wait_exit)."""
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout_s: float) -> int:
        """The exit code; kills the process and raises TimeoutError if it outlives the timeout."""
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise TimeoutError(f"gateway still running {timeout_s}s after SIGTERM") from None
        finally:
            self._log.close()


def live_settings(workdir: Path) -> str:
    """A [live] section enabling LIVE with a keypair file in ``workdir`` and upstreams that never
    answer (for start-up checks made before any of them is reached)."""
    wallet = workdir / "wallet.json"
    wallet.write_text(json.dumps(list(bytes(Keypair()))))
    wallet.chmod(0o600)
    nowhere = "http://127.0.0.1:9"
    return (f'[live]\nenabled = true\nrpc_url = "{nowhere}"\njupiter_url = "{nowhere}"\njito_url = "{nowhere}"\n'
            f'wallet_path = "{wallet}"\n')
