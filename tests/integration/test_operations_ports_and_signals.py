"""Taken ports and stop signals, as an operator meets them.

A service of several workers binds its ports with SO_REUSEPORT, which would let it join the
listeners of another service on the same ports (the same address, or a wildcard one) and take a
share of their connections without a word: it is refused instead, before anything started, with
one ``tradewire: cannot listen ...`` line naming the address, as a single gateway is.

SIGHUP (the terminal `scripts/run.sh` runs in was closed) stops the gateway gracefully, as
SIGTERM and SIGINT do; and any of them that comes while the command is still starting (its
imports take a second or more) stops it cleanly too: exit 0, one line saying it stopped."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import redis

from support.clients import make_client
from support.gateway_process import GatewayProcess
from support.ports import free_port, wait_until
from support.tools import require_tool
from support.trading import SOL, USDC, eventually, reached, trade, unique
from tradewire.gateway.worker_metrics import socket_name
from tradewire.v1 import trade_pb2 as pb

STOP_SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]


def clean_env(**variables: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}, **variables}


def workers_env(redis_url: str, **variables: str) -> dict[str, str]:
    return {"TRADEWIRE_SHARED__REDIS_URL": redis_url, "TRADEWIRE_SERVER__WORKERS": "2", **variables}


def logged(text: str) -> tuple[list[dict], list[str]]:
    """The JSON lines of a log, and the others."""
    parsed, plain = [], []
    for line in text.splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            plain.append(line)
    return parsed, plain


def messages(text: str) -> list[str]:
    return [line["msg"] for line in logged(text)[0]]


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def importing_the_command(pid: int) -> bool:
    """The process runs the command's module (its first imports are loaded: uvloop), which it
    then imports the rest of for a second or more, before it starts anything."""
    try:
        return "/uvloop/loop." in Path(f"/proc/{pid}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False


class ServiceUnderTest(GatewayProcess):
    """A gateway process in a process group of its own, as a terminal's job (its shell sends
    SIGHUP to the whole group when the terminal closes); otherwise started as GatewayProcess
    starts one. ``wait_healthy=False``: return at once (the process starting)."""

    def launch(self, wait_healthy: bool = True) -> ServiceUnderTest:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "tradewire.toml"
        config.write_text(self.config_text())
        self.log_path = self.workdir / "gateway.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tradewire.gateway.cli", "serve", "--config", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=clean_env(**self.env), start_new_session=True)
        if wait_healthy:
            wait_until(self._healthy, timeout_s=30, what="gateway health")
        return self

    def signal_group(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def kill_group(self) -> None:
        """(after a failed test) whatever of it still runs"""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


# -- a taken port --------------------------------------------------------------------------------


def run_until_exit_or_serving(workdir: Path, grpc_port: int, http_port: int, env: dict[str, str],
                              timeout_s: float = 60) -> tuple[int | None, str]:
    """Start a service on those ports; its exit code (None: it served instead, and was killed)
    and its output."""
    service = ServiceUnderTest(workdir, grpc_port=grpc_port, http_port=http_port, env=env).launch(wait_healthy=False)
    try:
        wait_until(lambda: service.proc.poll() is not None or messages(service.log_text()).count("serving") == 2,
                   timeout_s=timeout_s, what="the second service to exit or serve")
        code = service.proc.poll()
    finally:
        service.kill_group()
        service._log.close()
    return code, service.log_text()


def assert_refused_naming(code: int | None, output: str, said: str) -> None:
    parsed, plain = logged(output)
    assert code == 1, output[-3000:]
    assert plain == [said], output[-3000:]
    assert "Traceback" not in output
    assert not any("worker" in line["msg"] and "started" in line["msg"] for line in parsed), \
        "a worker was started"


@pytest.mark.parametrize("first_host", ["0.0.0.0", "127.0.0.1"], ids=["wildcard", "same-address"])
async def test_a_second_service_on_the_ports_of_another_is_refused_before_it_starts(tmp_path, redis_server,
                                                                                    first_host):
    first = GatewayProcess(tmp_path / "first", env=workers_env(
        redis_server.url, TRADEWIRE_SERVER__GRPC_HOST=first_host, TRADEWIRE_SERVER__HTTP_HOST=first_host)).start()
    own_store = redis_server.url.rsplit("/", 1)[0] + "/7"  # the second service's own store
    redis.Redis.from_url(own_store).flushdb()
    try:
        await eventually(lambda: messages(first.log_text()).count("serving") == 2, timeout=30,
                         what="the first service's two workers serving")
        code, output = await asyncio.to_thread(
            run_until_exit_or_serving, tmp_path / "second", first.grpc_port, first.http_port,
            workers_env(own_store))
        assert_refused_naming(code, output, "tradewire: cannot listen for gRPC on "
                                            f"127.0.0.1:{first.grpc_port}: Address already in use")
        assert redis.Redis.from_url(own_store).dbsize() == 0  # nothing started: its store untouched
        # and the first service has all the traffic
        request_id = unique("first")
        async with httpx.AsyncClient() as http:
            response = await http.post(f"http://127.0.0.1:{first.http_port}/v1/trades",
                                       json={"requestId": request_id, "mode": "TRADING_MODE_PAPER",
                                             "inputMint": SOL, "outputMint": USDC, "amount": "0.01",
                                             "slippageBps": 300},
                                       headers={"authorization": f"Bearer {first.key('alice')}"})
        assert response.status_code == 200, response.text
        assert redis.Redis.from_url(redis_server.url).keys(f"tw:trade:*:{request_id}")
    finally:
        assert first.stop() == 0


def test_a_foreign_reuse_port_listener_on_the_http_port_is_a_taken_port(tmp_path):
    """Anything that listens there (with SO_REUSEPORT, on the wildcard address) refuses the
    service, before it starts anything — its store (a port nothing answers on) is never asked."""
    with socket.socket() as foreign:
        foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        foreign.bind(("0.0.0.0", 0))
        foreign.listen()
        http_port = foreign.getsockname()[1]
        code, output = run_until_exit_or_serving(tmp_path, free_port(), http_port,
                                                 workers_env(f"redis://127.0.0.1:{free_port()}/0"))
    assert_refused_naming(code, output, f"tradewire: cannot listen for HTTP on 127.0.0.1:{http_port}: "
                                        "Address already in use")


async def test_a_worker_whose_metrics_socket_name_is_taken_says_which_without_a_traceback(tmp_path, redis_server):
    gateway = ServiceUnderTest(tmp_path, env=workers_env(redis_server.url))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as squatter:
        squatter.bind(socket_name("127.0.0.1", gateway.http_port, 0))
        try:
            gateway.launch(wait_healthy=False)
            assert await asyncio.to_thread(gateway.wait_exit, 60) == 1
        finally:
            gateway.kill_group()
    output = gateway.log_text()
    parsed, plain = logged(output)
    assert plain == [f"tradewire: worker 0 could not start: cannot listen for the workers' metrics on "
                     f"@tradewire-metrics-127.0.0.1:{gateway.http_port}-0: Address already in use"], output[-3000:]
    assert "Traceback" not in output and not [line for line in parsed if line["level"] == "error"], output[-3000:]


# -- stop signals --------------------------------------------------------------------------------


async def test_sighup_to_the_terminal_s_job_stops_the_gateway_gracefully(tmp_path):
    gateway = ServiceUnderTest(tmp_path, env={"TRADEWIRE_PAPER__REALTIME": "true",
                                              "TRADEWIRE_PAPER__LATENCY_MS": "3000"}).launch()
    clients = {name: make_client(name, gateway) for name in ("grpc", "http")}
    key = gateway.key("alice")
    try:
        request_id = unique("hup")
        call = asyncio.create_task(clients["http"].unary("ExecuteTrade", trade(request_id), key))
        session = clients["grpc"].open_session(key)  # an open stream, with no trade
        await reached(clients["grpc"], key, request_id, pb.TRADE_STATUS_QUOTED)

        gateway.signal_group(signal.SIGHUP)
        result, _ = await asyncio.wait_for(call, 30)  # the running trade finishes for its caller
        assert result.status == pb.TRADE_STATUS_FILLED
        kinds = [response.status.kind async for response in session]
        assert [kind for kind in kinds if kind != pb.STATUS_KIND_HEARTBEAT] == [pb.STATUS_KIND_SHUTDOWN]
        assert await asyncio.to_thread(gateway.wait_exit, 40) == 0, gateway.log_text()[-3000:]
    finally:
        for client in clients.values():
            await client.close()
        gateway.kill_group()
    said = {line["msg"]: line for line in logged(gateway.log_text())[0]}
    assert said["shutting down"]["signal"] == "SIGHUP"
    assert said["stopped"]["trades_left_unfinished"] == 0


class Terminal:
    """A pseudo-terminal the gateway runs in, as scripts/run.sh runs it: its standard streams,
    and its controlling terminal (``setsid --ctty``), so closing it hangs the gateway up (the
    kernel sends it SIGHUP, and every later write to it fails). What it writes is read here
    until then."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.output = bytearray()
        self._open = True
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while self._open:
            if select.select([self.master], [], [], 0.05)[0]:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:  # (the gateway exited: nothing writes to the terminal any more)
                    return

    def close(self) -> None:
        """The terminal window is closed."""
        self._open = False
        self._reader.join(5)
        os.close(self.master)


@pytest.mark.parametrize("workers", [1, 2])
async def test_closing_the_terminal_it_runs_in_stops_the_gateway_gracefully(tmp_path, request, workers):
    env = {"TRADEWIRE_PAPER__REALTIME": "true", "TRADEWIRE_PAPER__LATENCY_MS": "3000"}
    if workers > 1:
        env.update(workers_env(request.getfixturevalue("redis_server").url))
    gateway = GatewayProcess(tmp_path, env=env)
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "tradewire.toml"
    config.write_text(gateway.config_text())
    terminal = Terminal()
    proc = subprocess.Popen(
        [require_tool("setsid"), "--ctty",
         sys.executable, "-m", "tradewire.gateway.cli", "serve", "--config", str(config)],
        stdin=terminal.slave, stdout=terminal.slave, stderr=terminal.slave, env=clean_env(**gateway.env))
    os.close(terminal.slave)
    clients = {name: make_client(name, gateway) for name in ("grpc", "http")}
    key = gateway.key("alice")
    try:
        await eventually(lambda: terminal.output.count(b'"msg":"serving"') == workers or proc.poll() is not None,
                         timeout=30, what="the gateway serving")
        assert proc.poll() is None, terminal.output.decode(errors="replace")
        request_id = unique("closed-terminal")
        call = asyncio.create_task(clients["http"].unary("ExecuteTrade", trade(request_id), key))
        await reached(clients["grpc"], key, request_id, pb.TRADE_STATUS_QUOTED)

        terminal.close()
        result, _ = await asyncio.wait_for(call, 30)  # the running trade finishes for its caller
        assert result.status == pb.TRADE_STATUS_FILLED
        assert await asyncio.to_thread(proc.wait, 40) == 0
    finally:
        for client in clients.values():
            await client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
def test_a_signal_while_the_command_imports_stops_it_cleanly(tmp_path, sig):
    gateway = ServiceUnderTest(tmp_path).launch(wait_healthy=False)
    try:
        wait_until(lambda: importing_the_command(gateway.pid), what="the command importing")
        gateway.proc.send_signal(sig)
        assert gateway.wait_exit(30) == 0, gateway.log_text()[-3000:]
    finally:
        gateway.kill_group()
    output = gateway.log_text()
    parsed, plain = logged(output)
    assert plain == [] and "Traceback" not in output, output
    assert [(line["msg"], line["signal"]) for line in parsed] == [("stopped before serving", sig.name)], output


def test_a_supervisor_signalled_while_it_imports_starts_no_worker(tmp_path):
    # (its store is never asked: a port nothing answers on)
    gateway = ServiceUnderTest(tmp_path, env=workers_env(f"redis://127.0.0.1:{free_port()}/0")).launch(
        wait_healthy=False)
    try:
        wait_until(lambda: importing_the_command(gateway.pid), what="the command importing")
        gateway.proc.send_signal(signal.SIGTERM)
        assert gateway.wait_exit(30) == 0, gateway.log_text()[-3000:]
    finally:
        gateway.kill_group()
    parsed, plain = logged(gateway.log_text())
    assert plain == []
    assert [(line["logger"], line["msg"]) for line in parsed] == [("tradewire.workers", "stopped before serving")]


def test_a_supervisor_stopped_while_its_workers_import_stops_them_cleanly(tmp_path, redis_server):
    gateway = ServiceUnderTest(tmp_path, env=workers_env(redis_server.url)).launch(wait_healthy=False)
    try:
        wait_until(lambda: len(workers := children(gateway.pid)) == 2 and all(map(importing_the_command, workers)),
                   what="two workers importing")
        workers = children(gateway.pid)
        gateway.proc.send_signal(signal.SIGTERM)
        assert gateway.wait_exit(30) == 0, gateway.log_text()[-3000:]
    finally:
        gateway.kill_group()
    parsed, plain = logged(gateway.log_text())
    assert plain == []
    by_workers = sorted((line["pid"], line["msg"]) for line in parsed if "worker" in line)
    assert by_workers == sorted((pid, "stopped before serving") for pid in workers), parsed
    assert not any(line["msg"] == "serving" for line in parsed)


async def test_sighup_to_the_terminal_s_job_stops_every_worker_gracefully(tmp_path, redis_server):
    gateway = ServiceUnderTest(tmp_path, env=workers_env(redis_server.url)).launch()
    try:
        await eventually(lambda: messages(gateway.log_text()).count("serving") == 2, timeout=30,
                         what="two serving workers")
        workers = children(gateway.pid)
        gateway.signal_group(signal.SIGHUP)  # the supervisor and its workers alike
        assert await asyncio.to_thread(gateway.wait_exit, 40) == 0, gateway.log_text()[-3000:]
    finally:
        gateway.kill_group()
    parsed, plain = logged(gateway.log_text())
    assert plain == []
    assert sorted(line["pid"] for line in parsed if line["msg"] == "stopped") == sorted(workers)
    assert "all 2 workers stopped" in messages(gateway.log_text())
    assert not [line for line in parsed if line["level"] == "error"], parsed
