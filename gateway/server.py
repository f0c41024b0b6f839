"""One process serving every protocol: grpcio on its port, uvicorn (HTTP/1.1) on the other.

SIGTERM/SIGINT: health goes NOT_SERVING, listeners stop accepting, in-flight calls get the
configured grace period, then the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn

from tradewire.core.config import Settings
from tradewire.gateway.assembly import Core, build_core
from tradewire.gateway.grpc_server import GrpcServer
from tradewire.gateway.http_app import build_http_app

log = logging.getLogger("tradewire.server")


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: this process owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class Gateway:
    def __init__(self, settings: Settings, core: Core | None = None) -> None:
        self.settings = settings
        self.core = core or build_core(settings)
        server = settings.server
        self.grpc = GrpcServer(self.core.service, server.grpc_host, server.grpc_port, server.max_body_bytes)
        config = uvicorn.Config(
            build_http_app(self.core.service, self.core.metrics.registry, server), host=server.http_host, port=server.http_port, loop="none",
            http="httptools", lifespan="off", access_log=False, log_config=None,
            timeout_graceful_shutdown=max(1, int(server.shutdown_grace_s)),
        )
        self.http = _UvicornServer(config)
        self._http_task: asyncio.Task | None = None

    @property
    def grpc_port(self) -> int:
        return self.grpc.port

    @property
    def http_port(self) -> int:
        return self.http.servers[0].sockets[0].getsockname()[1]

    async def start(self) -> None:
        await self.core.start()
        await self.grpc.start()
        self._http_task = asyncio.create_task(self.http.serve(), name="uvicorn")
        while not self.http.started:
            if self._http_task.done():
                self._http_task.result()  # raises what stopped it (e.g. the port is taken)
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        log.info("serving", extra={"grpc_port": self.grpc_port, "http_port": self.http_port})

    async def stop(self) -> None:
        grace = self.settings.server.shutdown_grace_s
        await self.grpc.not_serving()
        self.http.should_exit = True
        await asyncio.gather(self.grpc.stop(grace), self._http_task if self._http_task else asyncio.sleep(0))
        await self.core.close()
        log.info("stopped")


async def serve(settings: Settings) -> None:
    gateway = Gateway(settings)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await gateway.stop()
