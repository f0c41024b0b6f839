"""The pieces behind tests/integration/test_operations_ports_and_signals.py, in this process: the
supervisor's check that its addresses are free, the command's stop signals, what a worker's
exit code means once stopped, and what a gateway whose start failed says and leaves behind."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import pytest

from tradewire.core.config import Settings
from tradewire.gateway.assembly import StartupError
from tradewire.gateway.cli import StopSignals
from tradewire.gateway.server import Gateway
from tradewire.gateway.workers import STOPPED_BEFORE_SERVING, _stopped_code, check_listening_addresses_free


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def workers_settings(grpc: tuple[str, int], http: tuple[str, int]) -> Settings:
    return Settings.model_validate({
        "server": {"workers": 2, "grpc_host": grpc[0], "grpc_port": grpc[1], "http_host": http[0],
                   "http_port": http[1]},
        "shared": {"redis_url": "redis://127.0.0.1:1/0"},
    })


def reuse_port_listener(host: str) -> socket.socket:
    """A listener as another service's worker holds one: SO_REUSEADDR and SO_REUSEPORT."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("theirs", ["0.0.0.0", "127.0.0.1"])
@pytest.mark.parametrize("which", ["gRPC", "HTTP"])
def test_an_address_another_reuse_port_listener_covers_is_taken(theirs, which):
    with reuse_port_listener(theirs) as taken:
        port = taken.getsockname()[1]
        addresses = {"gRPC": ("127.0.0.1", free_port()), "HTTP": ("127.0.0.1", free_port())}
        addresses[which] = ("127.0.0.1", port)
        with pytest.raises(StartupError) as refused:
            check_listening_addresses_free(workers_settings(addresses["gRPC"], addresses["HTTP"]))
    assert str(refused.value) == f"cannot listen for {which} on 127.0.0.1:{port}: Address already in use"


def test_free_addresses_pass_and_stay_free_for_the_workers():
    grpc_port = free_port()
    # The HTTP port was served until just now: a connection the server closed is in TIME_WAIT
    # there (as after a restart), which is no listener.
    with reuse_port_listener("127.0.0.1") as served, socket.create_connection(served.getsockname()) as client:
        http_port = served.getsockname()[1]
        accepted, _ = served.accept()
        accepted.close()  # the server's side closes first: its end waits, on the port
        assert client.recv(1) == b""
    check_listening_addresses_free(workers_settings(("127.0.0.1", grpc_port), ("127.0.0.1", http_port)))
    workers = [reuse_port_listener_on(("127.0.0.1", port)) for port in (grpc_port, http_port) for _ in range(2)]
    for sock in workers:
        sock.close()


def reuse_port_listener_on(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen()
    return sock


def test_a_worker_stopped_before_it_began_to_start_stopped_cleanly_unless_it_was_down():
    assert _stopped_code(STOPPED_BEFORE_SERVING, start_failures=0) == 0  # its first start: nothing lost
    assert _stopped_code(-signal.SIGTERM, start_failures=0) == 0  # (in the interpreter's first moments)
    assert _stopped_code(STOPPED_BEFORE_SERVING, start_failures=2) != 0  # a restart after failed ones: down
    assert _stopped_code(0, start_failures=0) == 0
    assert _stopped_code(1, start_failures=0) == 1


@pytest.fixture
def restored_stop_signals():
    before = {sig: signal.getsignal(sig) for sig in StopSignals.signals}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def test_stop_signals_are_noted_until_handed_over(restored_stop_signals):
    signals = StopSignals()
    signals.note()
    os.kill(os.getpid(), signal.SIGHUP)  # (the handler runs before the next line)
    os.kill(os.getpid(), signal.SIGTERM)
    assert signals.received == [signal.SIGHUP, signal.SIGTERM] and signals.first == "SIGHUP"
    signals.forget()
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


async def test_the_event_loop_takes_the_stop_signals_over_and_stops_at_once_for_a_noted_one(restored_stop_signals):
    loop = asyncio.get_running_loop()
    signals = StopSignals()
    try:
        stop = asyncio.Event()
        signals.hand_over(loop, stop.set)
        assert not stop.is_set() and signals.first is None
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.wait_for(stop.wait(), 5)
        assert signals.first == "SIGHUP"
        again = asyncio.Event()
        signals.hand_over(loop, again.set)  # one came already: stopped at once
        assert again.is_set()
    finally:
        for sig in StopSignals.signals:
            loop.remove_signal_handler(sig)


async def test_a_gateway_whose_http_port_is_taken_at_listen_says_which_and_leaves_no_listener(tmp_path):
    grpc_port, http_port = free_port(), free_port()
    settings = Settings.model_validate({
        "server": {"grpc_host": "127.0.0.1", "grpc_port": grpc_port, "http_host": "127.0.0.1",
                   "http_port": http_port},
        "storage": {"data_dir": str(tmp_path)},
        "webhooks": {"enabled": False},
    })
    gateway = Gateway(settings)  # binds its HTTP port (SO_REUSEADDR), listens when it starts
    try:
        with socket.socket() as rival:  # another bound socket listens there first
            rival.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            rival.bind(("127.0.0.1", http_port))
            rival.listen()
            with pytest.raises(StartupError) as refused:
                await gateway.start()
        assert str(refused.value) == f"cannot listen for HTTP on 127.0.0.1:{http_port}: Address already in use"
        await gateway.abandon()
        with socket.socket() as caller:  # its gRPC listener stopped with it
            assert caller.connect_ex(("127.0.0.1", grpc_port)) != 0
    finally:
        await gateway.core.close(flush_timeout=1)
