"""The processes a benchmark runs against: QuestDB, the gateway, the bare echo servers.

Each is a real process on free loopback ports, started and stopped here; the harness
only ever talks to them over sockets, like production clients would. CPU pinning
(``taskset``) keeps the servers on one core and the load generators on the other, so a
client never steals the server's CPU (see :data:`SERVER_CPU`, :data:`CLIENT_CPU`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tradewire.core.auth.api_keys import hash_key

REPO = Path(__file__).resolve().parents[1]
QUESTDB_SCRIPT = REPO / "scripts" / "questdb.sh"

# Servers on CPU 0, load generators (and QuestDB, which is not what is measured) on CPU 1.
_PINNING = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
SERVER_CPU = "0"
CLIENT_CPU = "1"

# Bench principals (bench-only keys): one per load generator, each with its own wallet.
_PREFIXES = {"grpc": "bgrpc000", "connect": "bconnpb0", "connectjs": "bconnjs0", "grpcweb": "bgrpcweb",
             "json": "bjson000", "fanout": "bfanout0", "soak": "bsoak000", "core": "bcore000"}
PRINCIPALS = {name: f"tw_{prefix}_" + "Bench" * 8 for name, prefix in _PREFIXES.items()}
SCOPES = ["read", "trade:paper"]

# Settings that make the gateway measure the pipeline, not its safety limits (brief, issue 9).
BENCH_ENV = {
    "TRADEWIRE_LIMITS__REQUESTS_PER_S": "1000000",
    "TRADEWIRE_LIMITS__BURST": "1000000",
    "TRADEWIRE_LIMITS__STREAM_OPENS_PER_S": "1000000",
    "TRADEWIRE_LIMITS__STREAM_BURST": "1000000",
    "TRADEWIRE_LIMITS__AUTH_FAILURE_BURST": "1000000",
    "TRADEWIRE_PAPER__STARTING_BALANCES": '{"SOL":"100000000","USDC":"100000000000"}',
    "TRADEWIRE_EXECUTION__MAX_IN_FLIGHT_PER_PRINCIPAL": "100000",
    "TRADEWIRE_EXECUTION__MAX_IN_FLIGHT_TOTAL": "100000",
}
# The four switches that exist only to measure what they cost (core/config.py).
RECORDING_OFF_ENV = {
    "TRADEWIRE_AUDIT__ENABLED": "false",
    "TRADEWIRE_METRICS__ENABLED": "false",
    "TRADEWIRE_LOGGING__ACCESS_LOG": "false",
    "TRADEWIRE_LOGGING__TRANSITION_LOG": "false",
}


def pinned(cmd: list[str], cpu: str) -> list[str]:
    """``cmd`` run on ``cpu`` when the machine has two cores and taskset exists."""
    return ["taskset", "-c", cpu, *cmd] if _PINNING else cmd


def pinning_note() -> str:
    if not _PINNING:
        return "none (taskset missing or one core)"
    return f"servers (gateway, echo) on CPU {SERVER_CPU}; load generators and QuestDB on CPU {CLIENT_CPU}"


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, from /proc (None once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


class _Process:
    """A child process with its output in a log file; stopped by SIGTERM, then SIGKILL."""

    proc: subprocess.Popen | None = None
    log_path: Path

    def _spawn(self, cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive_or_raise(self, what: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} exited with {self.proc.returncode}:\n{tail}")

    def rss_kib(self) -> int | None:
        return rss_kib(self.pid) if self.proc is not None else None

    def stop(self, timeout_s: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@dataclass
class QuestDB:
    """A QuestDB server driven by scripts/questdb.sh, on free ports, pinned off the server core."""

    root: Path
    ports: list[int] = field(default_factory=lambda: free_ports(4))

    @property
    def http_port(self) -> int:
        return self.ports[0]

    @property
    def conf(self) -> str:
        return f"http::addr=127.0.0.1:{self.http_port};"

    def _env(self) -> dict[str, str]:
        http, pg, ilp, mini = self.ports
        env = {**os.environ, "QDB_HTTP_BIND_TO": f"127.0.0.1:{http}", "QDB_PG_NET_BIND_TO": f"127.0.0.1:{pg}",
               "QDB_LINE_TCP_NET_BIND_TO": f"127.0.0.1:{ilp}", "QDB_HTTP_MIN_NET_BIND_TO": f"127.0.0.1:{mini}",
               "QDB_START_TIMEOUT": "120"}
        if _PINNING:  # the JVM and its threads inherit the affinity of the script that starts it
            env["JAVA"] = str(REPO / "bench" / "pinned-java.sh")
            env["BENCH_JAVA_CPU"] = CLIENT_CPU
            env["BENCH_JAVA"] = shutil.which("java") or "java"
        return env

    def _script(self, *args: str, timeout: float) -> None:
        done = subprocess.run([str(QUESTDB_SCRIPT), *args], env=self._env(), capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"questdb.sh {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")

    def start(self) -> QuestDB:
        self.root.mkdir(parents=True, exist_ok=True)
        self._script("fetch", timeout=900)
        self._script("start", str(self.root), timeout=180)
        return self

    def pid(self) -> int | None:
        try:
            return int((self.root / "questdb.pid").read_text())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        self._script("stop", str(self.root), timeout=120)

    def row_count(self, table: str) -> int | None:
        """Rows in ``table`` (None if the query fails): proves the audit trail really landed."""
        import json
        from urllib.parse import quote

        url = f"http://127.0.0.1:{self.http_port}/exec?query={quote(f'SELECT count() FROM {table}')}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return int(json.loads(resp.read())["dataset"][0][0])
        except (OSError, KeyError, IndexError, ValueError):
            return None


@dataclass
class Gateway(_Process):
    """`python -m tradewire.gateway.cli serve --config FILE` with the bench's API keys."""

    workdir: Path
    audit_conf: str | None = None  # QuestDB ILP conf; None: the local journal
    recording: bool = True  # audit, metrics, access and transition logs (all on, or all off)
    extra_env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=lambda: free_ports(2))
    cpu: str | None = SERVER_CPU  # None: every core (several workers)

    @property
    def grpc_port(self) -> int:
        return self.ports[0]

    @property
    def http_port(self) -> int:
        return self.ports[1]

    def config_text(self) -> str:
        keys = "".join(
            f'[[auth.api_keys]]\nprefix = "{key[:11]}"\nsha256 = "{hash_key(key)}"\nowner = "bench-{name}"\n'
            f"scopes = {SCOPES!r}\n".replace("'", '"') for name, key in PRINCIPALS.items())
        audit = f'[audit]\nquestdb_conf = "{self.audit_conf}"\n' if self.audit_conf else ""
        return (f'[server]\ngrpc_host = "127.0.0.1"\ngrpc_port = {self.grpc_port}\nhttp_host = "127.0.0.1"\n'
                f'http_port = {self.http_port}\nshutdown_grace_s = 5\n'
                f'[storage]\ndata_dir = "{self.workdir / "data"}"\n'
                f'[logging]\nlevel = "INFO"\n{audit}{keys}')

    def start(self) -> Gateway:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "tradewire.toml"
        config.write_text(self.config_text())
        self.log_path = self.workdir / "gateway.log"  # the JSON log lines go to a file, as in service
        env = {**os.environ, **BENCH_ENV, **({} if self.recording else RECORDING_OFF_ENV), **self.extra_env}
        cmd = [sys.executable, "-m", "tradewire.gateway.cli", "serve", "--config", str(config)]
        self._spawn(pinned(cmd, self.cpu) if self.cpu else cmd, env=env)
        wait_until(self._healthy, 60, "gateway health")
        return self

    def _healthy(self) -> bool:
        self.alive_or_raise("gateway")
        return _http_ok(f"http://127.0.0.1:{self.http_port}/v1/health")

    def truncate_log(self) -> None:
        """Drop the log lines of finished phases (the child appends; this keeps the file small)."""
        os.truncate(self.log_path, 0)


@dataclass
class EchoServers(_Process):
    """The bare baselines (bench/echo_server.py) in one process, pinned like the gateway."""

    workdir: Path
    ports: list[int] = field(default_factory=lambda: free_ports(3))

    @property
    def grpc_port(self) -> int:
        return self.ports[0]

    @property
    def http_port(self) -> int:  # raw ASGI on uvicorn (httptools + uvloop)
        return self.ports[1]

    @property
    def connect_port(self) -> int:  # connect-python's ASGI app with a canned ExecuteTrade
        return self.ports[2]

    def start(self) -> EchoServers:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "echo.log"
        cmd = [sys.executable, "-m", "bench.echo_server", "--grpc-port", str(self.grpc_port),
               "--http-port", str(self.http_port), "--connect-port", str(self.connect_port)]
        self._spawn(pinned(cmd, SERVER_CPU), env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
        wait_until(self._ready, 30, "echo servers")
        return self

    def _ready(self) -> bool:
        self.alive_or_raise("echo servers")
        return _http_ok(f"http://127.0.0.1:{self.http_port}/ready") and \
            _http_ok(f"http://127.0.0.1:{self.connect_port}/ready")


@dataclass
class RedisServer(_Process):
    """Debian's redis-server on a free loopback port, without persistence (the scale-out store)."""

    workdir: Path
    port: int = field(default_factory=lambda: free_ports(1)[0])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: scripts/provision.sh installs it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "redis.log"
        self._spawn([binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                     "--dir", str(self.workdir)])
        wait_until(self._ready, 20, "redis-server")
        return self

    def _ready(self) -> bool:
        self.alive_or_raise("redis-server")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False
