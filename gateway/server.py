"""One process serving every protocol: grpcio on its port, uvicorn (HTTP/1.1) on the other.

SIGTERM, SIGINT and SIGHUP start a graceful shutdown that ends within ``shutdown.deadline_s``
(one that comes while the gateway starts stops it as soon as it serves; before it began to
start, it does not start at all):

1. health goes NOT_SERVING (grpc.health.v1 and HealthCheck), then every new call is refused
   with UNAVAILABLE (reason SHUTTING_DOWN) on every protocol — the listeners stay open so
   callers get that clear answer rather than a refused connection;
2. running trades may finish until ``deadline_s - final_s``; those still running then are
   stored unfinished (they resume, or are reconciled, at the next start);
3. every stream still open gets its final SHUTDOWN message (status streams first deliver
   the events of trades that ended during step 2) and ends; grpc.health.v1 Watch streams end
   after their NOT_SERVING update;
4. the listeners stop (calls still open get a quarter of the time left, at most); webhooks
   due now are delivered (the rest stay in the durable outbox), the audit trail is flushed,
   the store closed; the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import socket
import time

import uvicorn
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tradewire.core.config import Settings
from tradewire.gateway.assembly import Core, StartupError, build_core
from tradewire.gateway.grpc_server import GrpcServer
from tradewire.gateway.http_app import build_http_app
from tradewire.gateway.http_limits import HttpLimits, protocol_class
from tradewire.gateway.worker_metrics import WorkerMetrics, socket_name

log = logging.getLogger("tradewire.server")


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: this process owns the stop signals (serve)."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class Gateway:
    def __init__(self, settings: Settings, core: Core | None = None, worker: int | None = None) -> None:
        """``worker``: this process's index among the supervisor's workers (gateway/workers.py)."""
        self.settings = settings
        self.worker = worker
        self.core = core or build_core(settings)
        server = settings.server
        # Several workers share the ports (gateway/workers.py); alone, a taken port is an error.
        self.reuse_port = server.workers > 1
        try:
            self.grpc = GrpcServer(self.core.service, server.grpc_host, server.grpc_port, server.max_body_bytes,
                                   reuse_port=self.reuse_port, max_header_bytes=server.max_header_bytes,
                                   max_headers=server.max_headers)
        except OSError as exc:  # "cannot listen for gRPC on <address>: ...", as it is
            raise StartupError(str(exc)) from None
        registry = self.core.metrics.registry
        # With several workers a scrape of the shared port answers for all of them.
        self.worker_metrics = (WorkerMetrics(registry, worker, server.workers, server.http_host, server.http_port)
                               if worker is not None and server.workers > 1 else None)
        app = build_http_app(self.core.service, registry, server, self.core.service.pipeline.record_refused,
                             metrics_text=self.worker_metrics.exposition if self.worker_metrics else None)
        if server.trusted_proxies:
            app = ForwardedFor(app, list(server.trusted_proxies))
        config = uvicorn.Config(
            app, host=server.http_host, port=server.http_port, loop="none",
            http=protocol_class(HttpLimits.from_server_config(server), self.core.service.pipeline.recorder),
            lifespan="off", access_log=False, log_config=None,
            timeout_graceful_shutdown=max(1, int(min(server.shutdown_grace_s, settings.shutdown.final_s))),
            # A caller is the socket's peer (its failed authentications are counted, and audited,
            # under it) unless it is a proxy the operator trusts (ForwardedFor, above): uvicorn's
            # default believes any loopback client's X-Forwarded-For.
            proxy_headers=False,
        )
        self.http = _UvicornServer(config)
        # Bound here, by us: a taken port is one clear error (uvicorn logs it and exits the process).
        self._http_socket = _listening_socket(server.http_host, server.http_port, self.reuse_port)
        self._http_task: asyncio.Task | None = None

    @property
    def grpc_port(self) -> int:
        return self.grpc.port

    @property
    def http_port(self) -> int:
        return self.http.servers[0].sockets[0].getsockname()[1]

    async def start(self) -> None:
        if self.worker_metrics is not None:  # first: its name taken ends the start before the core starts
            try:
                await self.worker_metrics.start()
            except OSError as exc:
                server = self.settings.server
                name = socket_name(server.http_host, server.http_port, self.worker).replace("\0", "@", 1)  # (abstract)
                raise StartupError(f"cannot listen for the workers' metrics on {name}: {exc.strerror or exc}") from None
        await self.core.start()
        store = self.core.store
        await self.grpc.start(store_ok=lambda: store.health()[0])
        self._http_task = asyncio.create_task(self.http.serve(sockets=[self._http_socket]), name="uvicorn")
        while not self.http.started:
            if self._http_task.done():
                try:
                    self._http_task.result()  # raises what stopped it
                except OSError as exc:  # the port is taken (bound, it failed to listen): say which
                    server = self.settings.server
                    raise StartupError(f"cannot listen for HTTP on {server.http_host}:{server.http_port}: "
                                       f"{exc.strerror or exc}") from None
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        log.info("serving", extra={"grpc_port": self.grpc_port, "http_port": self.http_port})

    async def abandon(self) -> None:
        """After a failed start: the gRPC listener stops (else it is shut down once the event
        loop is gone, an error logged with a traceback)."""
        with contextlib.suppress(Exception):
            await self.grpc.stop(0)
        if self.worker_metrics is not None:
            with contextlib.suppress(Exception):
                await self.worker_metrics.stop()

    async def stop(self) -> None:
        """The graceful shutdown (module docstring), bounded by ``shutdown.deadline_s``."""
        config = self.settings.shutdown
        started = time.monotonic()
        deadline = started + config.deadline_s
        final_at = deadline - config.final_s

        def left(until: float) -> float:
            return max(0.0, until - time.monotonic())

        await self.grpc.not_serving()  # 1. health first ...
        self.core.begin_drain()  # ... then no new calls
        interrupted = await self.core.drain_trades(left(final_at))  # 2.
        open_streams = self.core.hub.open_streams if self.core.hub is not None else 0
        self.grpc.end_health_watches()  # 3. (else they run until the listener's grace period is out)
        cut = await self.core.close_streams(min(left(deadline), config.final_s * 0.4))
        listener_grace = min(self.settings.server.shutdown_grace_s, left(deadline) * 0.25)
        # uvicorn's own wait (set when built) would not know how much of the deadline is left.
        self.http.config.timeout_graceful_shutdown = listener_grace
        self.http.should_exit = True  # 4.
        await asyncio.gather(self.grpc.stop(listener_grace), self._http_task if self._http_task else asyncio.sleep(0))
        if self.worker_metrics is not None:
            await self.worker_metrics.stop()
        await self.core.close(flush_timeout=max(0.0, left(deadline) - 0.5))
        log.info("stopped", extra={"shutdown_s": round(time.monotonic() - started, 3),
                                   "trades_left_unfinished": interrupted,
                                   "streams_ended": open_streams - cut,  # with their SHUTDOWN message
                                   "streams_cut": cut})


class ForwardedFor(ProxyHeadersMiddleware):
    """uvicorn's X-Forwarded-For handling with its trust rules unchanged (only a connection from a
    trusted proxy is believed, and the client is the last entry that is not a trusted proxy),
    except that the entry taken must be an IP address: anything else (a name, junk, text a
    client wrote) would become the caller's address — logged, audited, and the key its failed
    authentications are limited under. Then the connection's address stays the peer."""

    def __init__(self, app, trusted_hosts: list[str]) -> None:
        super().__init__(app, trusted_hosts)
        choose = self.trusted_hosts.get_trusted_client_address

        def client_address(x_forwarded_for: str) -> tuple[str, int]:
            host, port = choose(x_forwarded_for)
            if host and not _is_ip_address(host):
                # (what was sent is not repeated: it may be anything, a credential too)
                log.debug("X-Forwarded-For from a trusted proxy names no IP address for the client "
                          "(%d characters); the connection's address is the caller's", len(host))
                return "", 0  # uvicorn then leaves the connection's address in place
            return host, port

        self.trusted_hosts.get_trusted_client_address = client_address


def _is_ip_address(host: str) -> bool:
    """An IPv4 or IPv6 address — without an IPv6 zone ("fe80::1%eth0"): a zone names an interface
    of the proxy's own host, and may be any text."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return getattr(address, "scope_id", None) is None


def _listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A listening-ready TCP socket for the HTTP listener (uvicorn listens on it); with
    ``reuse_port`` several workers bind the same port. StartupError naming the address when it
    cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen for HTTP on {host}:{port}: {exc.strerror or exc}") from None
    return sock


async def serve(settings: Settings, signals, worker: int | None = None) -> bool:
    """Serve until a stop signal; ``signals``: the command's (cli.StopSignals), noted since the
    process began. False when one came before the start began (nothing was started)."""
    # Handlers first: a signal that arrived while starting still means a clean stop.
    stop = asyncio.Event()
    signals.hand_over(asyncio.get_running_loop(), stop.set)
    if stop.is_set():  # nothing started yet: nothing to stop
        log.info("stopped before serving", extra={"signal": signals.first})
        return False
    gateway: Gateway | None = None
    try:
        gateway = Gateway(settings, worker=worker)
        await gateway.start()
    except Exception as exc:  # whatever keeps it from starting: one line; the traceback at debug level
        if gateway is not None:
            await gateway.abandon()
        if isinstance(exc, StartupError):
            raise
        log.debug("start-up failed", exc_info=True)
        raise StartupError(f"cannot start: {exc or exc.__class__.__name__}") from exc
    # Everything built so far (modules, the core's object graph) lives as long as the process:
    # moved out of the collector's sight, full collections no longer rescan it — each used to
    # pause the loop for tens of milliseconds under load.
    gc.collect()
    gc.freeze()
    await stop.wait()
    log.info("shutting down", extra={"deadline_s": settings.shutdown.deadline_s, "signal": signals.first})
    await gateway.stop()
    return True
