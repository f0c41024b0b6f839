"""Native gRPC (grpcio aio): the service, server reflection and grpc.health.v1.

A thin adapter: metadata → CallContext, core call, core error → status with
``grpc-status-details-bin``. Handlers are built from the service descriptor, one per RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import unquote

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from tradewire.core.context import CallContext, Protocol, combine_headers
from tradewire.core.errors import TradewireError, deadline_exceeded, internal_error
from tradewire.gateway.calls import RPCS, SERVICE_NAME, Rpc
from tradewire.gateway.errors import GRPC_STATUS, fitted_to_metadata, grpc_status_details_bin
from tradewire.gateway.http_limits import HttpLimits
from tradewire.gateway.reflection import enable_reflection

log = logging.getLogger("tradewire.gateway")


def peer_of(context: grpc.aio.ServicerContext) -> str:
    # "ipv4:127.0.0.1:5000" → "127.0.0.1:5000" and "ipv6:%5B::1%5D:5000" (grpc's URI form) →
    # "[::1]:5000", as the HTTP listener names its peers
    return unquote(context.peer().removeprefix("ipv4:").removeprefix("ipv6:"))


def _context(rpc: Rpc, context: grpc.aio.ServicerContext) -> CallContext:
    remaining = context.time_remaining()
    headers = combine_headers((k, v) for k, v in context.invocation_metadata() if isinstance(v, str))
    return CallContext(
        protocol=Protocol.GRPC,
        method=rpc.name,
        headers=headers,
        peer=peer_of(context),
        deadline=None if remaining is None else time.monotonic() + remaining,
    )


async def _abort(context: grpc.aio.ServicerContext, ctx: CallContext, error: Exception) -> None:
    if not isinstance(error, TradewireError):
        log.error("unexpected error in %s", ctx.method, exc_info=error)
        error = internal_error()
    error = fitted_to_metadata(error)
    context.set_trailing_metadata((
        *ctx.response_headers.items(),
        ("grpc-status-details-bin", grpc_status_details_bin(error)),
    ))
    await context.abort(GRPC_STATUS[error.code], error.message)


_terminations: set[asyncio.Task] = set()


def _terminate_later(context: grpc.aio.ServicerContext, ctx: CallContext, error: TradewireError) -> None:
    """End a call from outside its handler (the slow-consumer watchdog): its status goes out
    after the messages the client has not read yet; the handler itself is then cancelled."""

    async def terminate() -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(_abort(context, ctx, error), 2.0)

    task = asyncio.ensure_future(terminate())
    _terminations.add(task)
    task.add_done_callback(_terminations.discard)


def _decoder(rpc: Rpc, max_message_bytes: int) -> Callable[[bytes], object]:
    """Bytes → request; undecodable bytes are the caller's error (INVALID_ARGUMENT), not ours.

    grpcio would answer INTERNAL for a request its deserializer rejects, so requests reach
    the handlers as raw bytes and are decoded here. The size limit is checked here too:
    grpcio's own (set higher, see GrpcServer) refuses without ErrorInfo and before the call
    is counted, audited or logged.
    """
    request_cls = message_factory.GetMessageClass(rpc.descriptor.input_type)

    def decode(raw: bytes):
        if len(raw) > max_message_bytes:
            raise TradewireError("PAYLOAD_TOO_LARGE",
                                 f"request message of {len(raw)} bytes exceeds the limit of {max_message_bytes} bytes")
        try:
            return request_cls.FromString(raw)
        except DecodeError:
            raise TradewireError("MALFORMED_REQUEST", f"request is not a valid {request_cls.DESCRIPTOR.name}") from None

    return decode


async def _one_message(context: grpc.aio.ServicerContext, ctx: CallContext, decode: Callable[[bytes], object]):
    """The request of a call that takes one message, read by the handler (after the credentials)
    and decoded, with the end of the request stream after it.

    grpcio reads it itself for a unary-request handler, and when the stream is half-closed
    before a whole message came (no DATA frame, or one cut short) it ends the handler without
    sending any status: the call then hangs, unanswered and unrecorded, until the connection
    closes; and it ignores whatever the client sends after that message. So every handler is
    registered as request-streaming (see _handlers) and the stream is read here to its end: a
    call without a complete message, or with more than one, is refused like any undecodable one
    (MALFORMED_REQUEST), before anything runs. A client half-closes with its one message
    (grpcio's and grpc-go's on the same DATA frame), so that end is there at once: one read more
    per call, one completion-queue round trip. A call that keeps its stream open after its
    message is served once it half-closes (as grpc-java serves one), or ends at its deadline.
    (A partial frame after the message is dropped by grpcio itself: it cannot be seen here.)

    A call grpcio ends itself — its caller reset it, its deadline passed, grpcio refused it (a
    message flagged compressed that does not inflate with its grpc-encoding or has none, an
    unknown grpc-encoding, a malformed grpc-timeout: INTERNAL) — has its handler cancelled; the
    read that was waiting may answer EOF first, the next one is cancelled. Before the whole
    request is read, such a call is recorded DEADLINE_EXCEEDED when its deadline has come (what
    grpcio answered), and otherwise not at all, as grpcio's other refusals are not: the handler
    cannot tell a caller that left (CANCELLED) from grpcio's refusal (INTERNAL), and must claim
    neither. (One that grpcio ends right after its one message — refusing a second one it cannot
    inflate — looks well-formed here: it runs until its next await, as a call whose caller
    leaves then does; telling it apart would cost every call one more read.)
    """
    try:
        raw = await context.read()
        if raw is grpc.aio.EOF:
            # Half-closed without a whole message, or ended by grpcio: the next read tells which.
            await context.read()
            if ctx.ended_by_deadline():
                raise deadline_exceeded()
            raise TradewireError("MALFORMED_REQUEST", "the request does not hold a complete message")
        request = decode(raw)
        if await context.read() is not grpc.aio.EOF:
            raise TradewireError("MALFORMED_REQUEST",
                                 f"the request holds more than one message: {ctx.method} takes one")
        return request
    except asyncio.CancelledError:
        if not ctx.ended_by_deadline():
            raise  # (not recorded: see above)
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # (it is answered, and recorded, as the deadline's end instead)
        raise deadline_exceeded() from None


def _first_steps(service) -> Callable[[CallContext], contextlib.AbstractContextManager]:
    """core's Pipeline.authenticate_first when the service has one: the call is authenticated
    from its metadata before its message is read (as on the HTTP listener), and a message
    refused then is recorded as a call, under the caller's ids."""
    first = getattr(getattr(service, "pipeline", None), "authenticate_first", None)
    return first if first is not None else (lambda ctx: contextlib.nullcontext())


def _unary_handler(rpc: Rpc, service, max_message_bytes: int) -> Callable:
    method = getattr(service, rpc.name)
    decode = _decoder(rpc, max_message_bytes)
    first_steps = _first_steps(service)

    async def handle(_requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext):
        ctx = _context(rpc, context)  # (the request is read with context.read(): _one_message)
        try:
            with first_steps(ctx):
                response = await method(await _one_message(context, ctx, decode), ctx)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            await _abort(context, ctx, exc)
        await context.send_initial_metadata(tuple(ctx.response_headers.items()))
        return response

    return handle


def _stream_handler(rpc: Rpc, service, max_message_bytes: int) -> Callable:
    method = getattr(service, rpc.name)
    decode = _decoder(rpc, max_message_bytes)
    # (A session's messages are its trades, each answered in the session: only its own call is checked first.)
    first_steps = (lambda ctx: contextlib.nullcontext()) if rpc.client_streaming else _first_steps(service)

    async def decoded(raw_requests: AsyncIterator[bytes]) -> AsyncIterator:
        # A message of a session that does not decode (or is too large) is that message's error,
        # answered in the session, which goes on: the messages around it are whole.
        async for raw in raw_requests:
            try:
                message = decode(raw)
            except TradewireError as exc:
                message = exc
            yield message

    hub = getattr(service, "hub", None)  # core's StatusHub: drops slow consumers
    hub = hub if hasattr(hub, "on_drop") else None

    async def handle(raw_requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator:
        ctx = _context(rpc, context)
        sent_headers = False
        try:
            with first_steps(ctx):
                request = decoded(raw_requests) if rpc.client_streaming else await _one_message(context, ctx, decode)
                stream = method(request, ctx)
                task = asyncio.current_task()
                forget = (hub.on_drop(task, lambda error: _terminate_later(context, ctx, error))
                          if hub and task else None)
                try:
                    async for message in stream:
                        if not sent_headers:
                            await context.send_initial_metadata(tuple(ctx.response_headers.items()))
                            sent_headers = True
                        yield message
                finally:
                    if forget is not None:
                        forget()
                    await stream.aclose()
        except Exception as exc:  # noqa: BLE001
            await _abort(context, ctx, exc)
        context.set_trailing_metadata(tuple(ctx.response_headers.items()))

    return handle


def _handlers(service, max_message_bytes: int) -> grpc.GenericRpcHandler:
    """One handler per RPC, each request-streaming whatever the RPC's kind: a handler reads its
    request itself (_one_message), so that a call without one is answered (the wire is the same)."""
    table = {}
    for rpc in RPCS:
        response_cls = message_factory.GetMessageClass(rpc.descriptor.output_type)
        codec = dict(request_deserializer=None, response_serializer=response_cls.SerializeToString)
        if rpc.server_streaming:
            table[rpc.name] = grpc.stream_stream_rpc_method_handler(_stream_handler(rpc, service, max_message_bytes),
                                                                    **codec)
        else:
            table[rpc.name] = grpc.stream_unary_rpc_method_handler(_unary_handler(rpc, service, max_message_bytes),
                                                                   **codec)
    return grpc.method_handlers_generic_handler(SERVICE_NAME, table)


class _Unrouted(grpc.GenericRpcHandler):
    """The handler of last resort: a call to a method the server does not have (another contract
    version's, a scanner's) is counted and logged, then answered as grpcio answers it alone.
    grpcio asks its registered methods first, then each generic handler in the order added, so
    this one must be added last: after the service's, health's and reflection's."""

    def __init__(self, recorder) -> None:
        self._recorder = recorder

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method, recorder = handler_call_details.method, self._recorder

        async def refuse(requests, context: grpc.aio.ServicerContext) -> None:
            recorder.unrouted(Protocol.GRPC, "UNIMPLEMENTED", "POST", method, peer_of(context))
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")

        # (stream-stream whatever the call's kind: nothing is read before the answer)
        return grpc.stream_stream_rpc_method_handler(refuse)


class _MethodSymbols:
    """The process's descriptor pool for reflection, answering method names too: protobuf's
    upb pool finds the file of a message or a service but not of "Service.Method", which
    is what ghz (and ``grpcurl describe Service.Method``) ask for."""

    def __init__(self, pool) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, symbol: str):  # noqa: N802 - the pool's interface
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                raise KeyError(symbol) from None
            if method not in service.methods_by_name:
                raise KeyError(symbol) from None
            return service.file

    def __getattr__(self, name: str):
        return getattr(self._pool, name)


def check_port_free(host: str, port: int, protocol: str = "gRPC") -> None:
    """OSError naming the listener when ``host:port`` cannot be bound (taken, or not an address
    here). The probe binds without SO_REUSEPORT, so a listener in a reuse-port group (another
    service's workers) is found too; with SO_REUSEADDR, as the gateway's own sockets, so a closed
    connection in TIME_WAIT is no listener. It never listens, and is closed at once."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot listen for {protocol} on {host}:{port}: {exc.strerror or exc}") from None


class _HealthServicer(health_aio.HealthServicer):
    """grpcio-health-checking's servicer with ``List``, which its health.proto declares (so
    reflection lists it) but the servicer answers UNIMPLEMENTED, and with ``Watch`` streams the
    gateway can end (end_watches): the library's end only when their client leaves, so one open
    Watch held every graceful shutdown until the listener's grace period ran out."""

    def __init__(self) -> None:
        super().__init__()
        self._statuses: dict[str, int] = {"": health_pb2.HealthCheckResponse.SERVING}
        self._watches_ended = False
        self._changed = asyncio.Event()  # set at the next change (then replaced): wakes the watchers

    async def set(self, service: str, status) -> None:
        await super().set(service, status)
        self._statuses[service] = status
        self._announce_change()

    def end_watches(self) -> None:
        """Every Watch stream sends its service's latest status if it has not yet, then ends (OK)."""
        self._watches_ended = True
        self._announce_change()

    def _announce_change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def Watch(self, request, context):  # noqa: N802 - the RPC's name
        sent = None
        while True:
            # (taken before the status is read: a change made while it is sent is not missed)
            changed, ended = self._changed, self._watches_ended
            status = self._statuses.get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            if status != sent:
                yield health_pb2.HealthCheckResponse(status=status)
                sent = status
            if ended:
                return
            await changed.wait()

    async def List(self, request, context):  # noqa: N802 - the RPC's name
        return health_pb2.HealthListResponse(statuses={
            name: health_pb2.HealthCheckResponse(status=status) for name, status in self._statuses.items()})


_GRPC_DEFAULT_MAX_RECEIVE = 4 << 20
# grpcio sizes metadata as HPACK does: 32 bytes per header beyond its name and value (RFC 7541
# 4.1), pseudo-headers included (:method, :scheme, :authority, :path), which the HTTP/1.1
# listener does not count (or counts as its URL).
_HPACK_PER_HEADER = 32
_PSEUDO_HEADERS_BYTES = 1024


def _metadata_limit(max_header_bytes: int, max_headers: int) -> int:
    """The metadata size that carries whatever headers the HTTP listener accepts."""
    return max_header_bytes + _HPACK_PER_HEADER * max_headers + _PSEUDO_HEADERS_BYTES


class GrpcServer:
    """The aio server with the trade service, reflection and health."""

    def __init__(self, service, host: str, port: int, max_message_bytes: int, reuse_port: bool = False,
                 max_header_bytes: int = HttpLimits.max_header_bytes,
                 max_headers: int = HttpLimits.max_headers) -> None:
        """``max_header_bytes``, ``max_headers``: the HTTP listener's header budget ([server])."""
        metadata_bytes = _metadata_limit(max_header_bytes, max_headers)
        options = [
            # One limit, the HTTP listener's: grpcio's defaults (8 KiB soft, 16 KiB hard) refuse
            # at random between the two, and refuse before the call reaches the gateway (a bare
            # RESOURCE_EXHAUSTED, unaudited), so an oversized credential would not get the
            # refusal it gets on every other protocol. (Set alone, the soft limit raises the hard
            # one above it, keeping a band of random refusals: both are set.)
            ("grpc.max_metadata_size", metadata_bytes),
            ("grpc.absolute_max_metadata_size", metadata_bytes),
            # Past max_message_bytes a message is refused by the handler, with ErrorInfo and
            # recorded (_decoder); grpcio refuses only what is past this, its default at least.
            ("grpc.max_receive_message_length", max(2 * max_message_bytes, _GRPC_DEFAULT_MAX_RECEIVE)),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        self.server = grpc.aio.server(options=options)
        self.server.add_generic_rpc_handlers((_handlers(service, max_message_bytes),))
        self.health = _HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        enable_reflection(self.server, (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name),
                          pool=_MethodSymbols(descriptor_pool.Default()))
        recorder = getattr(getattr(service, "pipeline", None), "recorder", None)  # core's Recorder
        if recorder is not None:
            self.server.add_generic_rpc_handlers((_Unrouted(recorder),))  # last of all (see _Unrouted)
        if not reuse_port:
            check_port_free(host, port)  # (grpcio's own failure is a C++ log line and a bare RuntimeError)
        try:
            self.port = self.server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:
            raise OSError(f"cannot listen for gRPC on {host}:{port}") from None
        self._watch: asyncio.Task | None = None

    async def start(self, store_ok: Callable[[], bool] | None = None, every_s: float = 2.0) -> None:
        """Serve; grpc.health.v1 says SERVING, and with ``store_ok`` follows the store's health
        (checked every ``every_s``: every call needs the store, so without it nothing serves)."""
        await self.server.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        if store_ok is not None:
            self._watch = asyncio.create_task(self._follow_store(store_ok, every_s), name="grpc-health")

    async def _follow_store(self, store_ok: Callable[[], bool], every_s: float) -> None:
        serving = True
        while True:
            await asyncio.sleep(every_s)
            now = store_ok()
            if now != serving:
                serving = now
                await self._set_health(health_pb2.HealthCheckResponse.SERVING if now
                                       else health_pb2.HealthCheckResponse.NOT_SERVING)

    async def not_serving(self) -> None:
        """For good (the shutdown): the store's health no longer matters."""
        await self._stop_watching()
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def _stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None

    async def _set_health(self, status) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    def end_health_watches(self) -> None:
        """grpc.health.v1 Watch streams end, after the latest status (NOT_SERVING, in a shutdown)."""
        self.health.end_watches()

    async def stop(self, grace_s: float) -> None:
        await self._stop_watching()
        await self.server.stop(grace_s)
