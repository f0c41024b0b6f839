"""The HTTP/JSON adapter: an ASGI app generated at start-up from ``google.api.http``.

Build time does everything that depends only on the contract (templates → regexes, query
name tables, message classes, handlers, the OpenAPI document and docs page). A request
then does: match → the core's first steps from its headers (Pipeline.authenticate_first: a
caller without valid credentials is refused before its body is read) → its deadline
(X-Server-Timeout, deadline.py) → decode (body, query, path) → call the core → encode. The
adapter holds no policy: auth, validation, rate limits and the rest run in the core for
every protocol.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor

from tradewire.core.audit.events import redacted
from tradewire.core.context import CallContext, Protocol
from tradewire.core.errors import REASONS, TradewireError, internal_error, invalid, shortened
from tradewire.gateway.asgi_scope import scope_headers, scope_peer
from tradewire.gateway.disconnect import ClientGone, until_disconnect
from tradewire.gateway.errors import duplex_unsupported_error
from tradewire.v1 import service_pb2

from . import codec
from tradewire.gateway.deadlines import within_deadline

from .deadline import requested_deadline
from .docs import render_docs
from .fields import RANGES, BindError, INTEGER_TYPES, assign_leaf, is_leaf, resolve_field_path
from .openapi import default_descriptor_set_path, openapi_document
from .query import QueryBinder
from .responses import JSON, header_list, send_bytes, send_error
from .routes import Binding, PathTemplate, RouteTable, method_bindings, parse_template
from .streaming import Framer, serve_stream, wants_sse

log = logging.getLogger("tradewire.gateway")

OnError = Callable[[TradewireError, "CallContext | None"], None]
ASGIApp = Callable[..., Any]

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
_METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED" if "METHOD_NOT_ALLOWED" in REASONS else "UNIMPLEMENTED"


class Kind(enum.Enum):
    UNARY = "unary"
    SERVER_STREAM = "server_stream"
    CLIENT_STREAM = "client_stream"  # client or bidi streaming: needs full duplex


@dataclass(frozen=True)
class Route:
    """Everything one binding needs per request, resolved at build time."""

    binding: Binding
    rpc: str
    kind: Kind
    input_class: type
    output_name: str
    handler: Callable[..., Any] | None
    body: str  # "", "*" or a top-level field name
    body_field: FieldDescriptor | None
    path_fields: tuple[tuple[str, tuple[FieldDescriptor, ...]], ...]
    query: QueryBinder
    resume_field: FieldDescriptor | None  # from_sequence, set from Last-Event-ID
    response_field: str  # JSON name of response_body, or ""
    has_sequence: bool


class _Static:
    """A fixed GET document (/openapi.json, /docs)."""

    def __init__(self, body: bytes, content_type: bytes) -> None:
        self.body = body
        self.content_type = content_type


def _build_route(service: object, binding: Binding) -> Route:
    method = binding.method
    desc: Descriptor = method.input_type
    path_fields = []
    for var in binding.template.variables:
        chain = resolve_field_path(desc, var)
        if not is_leaf(chain[-1]) or chain[-1].is_repeated:
            raise ValueError(f"{method.full_name}: path variable {var!r} must be a singular scalar field")
        path_fields.append((var, chain))
    body_field = None
    if binding.body and binding.body != "*":
        body_field = desc.fields_by_name.get(binding.body)
        if body_field is None:
            raise ValueError(f"{method.full_name}: body field {binding.body!r} does not exist")
    if method.client_streaming:
        kind = Kind.CLIENT_STREAM
    elif method.server_streaming:
        kind = Kind.SERVER_STREAM
    else:
        kind = Kind.UNARY
    handler = getattr(service, method.name, None)
    if handler is None and kind is not Kind.CLIENT_STREAM:
        log.warning("HTTP/JSON: the service has no %s method; its routes answer UNIMPLEMENTED", method.name)
    resume = desc.fields_by_name.get("from_sequence")
    if resume is not None and (resume.type not in INTEGER_TYPES or resume.is_repeated):
        resume = None
    response_field = ""
    if binding.response_body:
        rf = method.output_type.fields_by_name.get(binding.response_body)
        if rf is None:
            raise ValueError(f"{method.full_name}: response_body {binding.response_body!r} does not exist")
        response_field = rf.json_name
    seq = method.output_type.fields_by_name.get("sequence")
    return Route(
        binding=binding,
        rpc=method.name,
        kind=kind,
        input_class=message_factory.GetMessageClass(desc),
        output_name=method.output_type.full_name,
        handler=handler,
        body=binding.body,
        body_field=body_field,
        path_fields=tuple(path_fields),
        query=QueryBinder(desc, set(binding.template.variables), binding.body),
        resume_field=resume if kind is Kind.SERVER_STREAM else None,
        response_field=response_field,
        has_sequence=seq is not None and seq.type in INTEGER_TYPES and not seq.is_repeated,
    )


def _http_status(result) -> int:
    """200; but a health answer saying NOT_SERVING is 503 (with the same body), so a load
    balancer that reads only the status takes this replica out."""
    if isinstance(result, service_pb2.HealthCheckResponse) and \
            result.status == service_pb2.SERVING_STATUS_NOT_SERVING:
        return 503
    return 200


class HttpJsonApp:
    """ASGI app serving every ``google.api.http`` binding, /openapi.json and /docs.

    Unmatched paths answer 404 ROUTE_NOT_FOUND (405 when another method matches) as
    google.rpc.Status JSON; with ``fallback`` set, unmatched GET and HEAD requests outside the
    API's prefixes (e.g. ``/v1``) go to ``fallback`` instead (static files of the dashboard),
    and requests of other methods there too where a GET would find something (for its 405).
    """

    def __init__(
        self,
        service: object,
        service_descriptor: ServiceDescriptor,
        *,
        max_body_bytes: int,
        on_error: OnError | None = None,
        descriptor_set_path: str | Path | None = None,
        fallback: ASGIApp | None = None,
        serve_docs: bool = True,
    ) -> None:
        if max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be positive")
        self.service_descriptor = service_descriptor
        self.max_body_bytes = max_body_bytes
        # core's Pipeline.authenticate_first (a service without a pipeline: none, calls as they come)
        self._authenticate_first = getattr(getattr(service, "pipeline", None), "authenticate_first", None) \
            or _no_first_steps
        self._recorder = getattr(getattr(service, "pipeline", None), "recorder", None)  # for unrouted requests
        self.on_error = on_error
        self.fallback = fallback
        entries: list[tuple[PathTemplate, str, object]] = []
        self.routes: list[Route] = []
        prefixes: set[str] = set()
        for method in service_descriptor.methods:
            for binding in method_bindings(method):
                route = _build_route(service, binding)
                self.routes.append(route)
                entries.append((binding.template, binding.http_method, route))
                first = binding.template.openapi_path.split("/")[1].split(":")[0]
                prefixes.add("" if first.startswith("{") else "/" + first)
        if serve_docs:
            path = descriptor_set_path if descriptor_set_path is not None else default_descriptor_set_path()
            self.openapi = openapi_document(service_descriptor, path)
            entries.append((parse_template(OPENAPI_PATH), "GET", _Static(orjson.dumps(self.openapi), JSON)))
            html = render_docs(self.openapi, OPENAPI_PATH).encode()
            entries.append((parse_template(DOCS_PATH), "GET", _Static(html, b"text/html; charset=utf-8")))
        self.table = RouteTable.build(entries)
        self.api_prefixes = frozenset(prefixes)

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":  # only when run standalone; a mounted app gets none
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket" and self.fallback is not None:
            await self.fallback(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    def _head_too(self, path: str, allowed) -> set[str]:
        """{"HEAD"} when the path's GET is a unary call: HEAD is answered there too (a stream's is not)."""
        if "GET" not in allowed:
            return set()
        target, _, _ = self.table.match("GET", path)
        return {"HEAD"} if isinstance(target, Route) and target.kind is Kind.UNARY else set()

    def _is_api_path(self, path: str) -> bool:
        for prefix in self.api_prefixes:
            if not prefix or path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + ":"):
                return True
        return False

    def _report(self, error: TradewireError, ctx: CallContext | None, cause: BaseException | None = None) -> None:
        if cause is not None:
            error.__cause__ = cause
        if self.on_error is not None:
            try:
                self.on_error(error, ctx)
            except Exception:
                log.exception("on_error hook failed")

    async def _http(self, scope: dict, receive, send) -> None:
        raw = scope.get("raw_path")
        path = raw.decode("latin-1").split("?", 1)[0] if raw else scope.get("path", "/")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        http_method = scope["method"]
        # HEAD is GET without the body (uvicorn drops it); a stream has no HEAD.
        head = http_method == "HEAD"
        try:
            target, values, allowed = self.table.match("GET" if head else http_method, path)
            if head and isinstance(target, Route) and target.kind is not Kind.UNARY:
                target, allowed = None, ["GET"]  # 405: GET opens the stream
        except UnicodeDecodeError:
            err = TradewireError("MALFORMED_REQUEST", "the URL path is not valid percent-encoded UTF-8")
            self._report(err, None)
            self._record_unrouted(scope, 400, path)
            await send_error(send, err)
            return
        if target is None:
            if allowed:
                allow = ", ".join(sorted(set(allowed) | self._head_too(path, allowed)))
                err = TradewireError(
                    _METHOD_NOT_ALLOWED, f"method {http_method} is not allowed for {path}; allowed: {allow}"
                )
                self._report(err, None)
                self._record_unrouted(scope, 405, path)
                await send_error(send, err, status=405, extra_headers={"allow": allow})
                return
            if self.fallback is not None and not self._is_api_path(path) and await self._fallback_serves(scope):
                await self.fallback(scope, receive, self._noting_unrouted(send, scope, path))
                return
            err = TradewireError("ROUTE_NOT_FOUND", f"no route for {http_method} {redacted(shortened(path, 256))}")
            self._report(err, None)
            self._record_unrouted(scope, 404, path)
            await send_error(send, err)
            return
        if isinstance(target, _Static):
            await send_bytes(send, 200, target.body, content_type=target.content_type)
            return
        route: Route = target
        headers = scope_headers(scope)
        ctx = CallContext(protocol=Protocol.HTTP_JSON, method=route.rpc, headers=headers, peer=scope_peer(scope))
        try:
            if route.handler is None:
                raise TradewireError("UNIMPLEMENTED", f"{route.rpc} is not implemented")
            with self._authenticate_first(ctx):  # from the headers: no body is read for a bad caller
                # a bad X-Server-Timeout is refused here: after the credentials, as any bad header
                ctx.deadline = requested_deadline(headers, ctx.started)
                if route.kind is Kind.CLIENT_STREAM:
                    raise duplex_unsupported_error(route.rpc)
                # the deadline counts from the headers: a stalled upload spends it too
                request = await within_deadline(self._decode(route, scope, receive, values, headers), ctx)
                if route.kind is Kind.SERVER_STREAM:
                    framer = Framer(wants_sse(headers.get("accept")), route.has_sequence, route.response_field)
                    handler = route.handler
                    await serve_stream(
                        lambda: handler(request, ctx),
                        framer,
                        send,
                        receive,
                        ctx.response_headers,
                        lambda err, exc: self._report(err, ctx, exc),
                        timeout=ctx.time_remaining(),
                    )
                    return
                call = route.handler(request, ctx)
                if ctx.deadline is not None:
                    call = within_deadline(call, ctx)
                result = await until_disconnect(call, receive)  # (its body is read)
            if getattr(getattr(result, "DESCRIPTOR", None), "full_name", None) != route.output_name:
                raise TypeError(f"{route.rpc} returned {type(result).__name__}, expected {route.output_name}")
            if route.response_field:
                body = orjson.dumps(codec.to_dict(result).get(route.response_field))
            else:
                body = codec.encode_message(result)
        except ClientGone:
            return  # recorded by the pipeline as the caller's cancellation; nobody is listening
        except TradewireError as err:
            self._report(err, ctx)
            await self._send_error_safely(send, err, ctx)
            return
        except Exception as exc:
            log.exception("HTTP/JSON %s %s failed", http_method, route.rpc)
            err = internal_error()
            self._report(err, ctx, exc)
            await self._send_error_safely(send, err, ctx)
            return
        await send_bytes(send, _http_status(result), body, header_list(ctx.response_headers))

    async def _fallback_serves(self, scope: dict) -> bool:
        """Whether the request is the fallback's (the dashboard's files) to answer: a GET or HEAD
        is (a file, or its 404); another method only at a path where a GET finds something (its
        405). Elsewhere no route nor file matches, whatever the method: the API's 404."""
        if scope["method"] in ("GET", "HEAD"):
            return True
        return await _status_of(self.fallback, {**scope, "method": "HEAD"}) != 404

    def _record_unrouted(self, scope: dict, status: int, path: str) -> None:
        """A request no route took: counted and logged as such (core's Recorder.unrouted), since
        no method's call records it."""
        if self._recorder is not None:
            self._recorder.unrouted(Protocol.HTTP_JSON, str(status), scope["method"], path, scope_peer(scope))

    def _noting_unrouted(self, send, scope: dict, path: str):
        """``send``, recording the fallback's 404 or 405: a path the dashboard has no file for
        (or a method its files do not take) is no route's either."""
        if self._recorder is None:
            return send

        async def noting(message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (404, 405):
                self._record_unrouted(scope, message["status"], path)
            await send(message)
        return noting

    async def _send_error_safely(self, send, err: TradewireError, ctx: CallContext) -> None:
        try:
            await send_error(send, err, ctx.response_headers)
        except Exception:  # the response had already started, or the client is gone
            log.debug("could not send the error response", exc_info=True)

    async def _refuse_a_body(self, route: Route, receive, headers: dict[str, str]) -> None:
        """A binding without a body (a GET's) reads nothing but its path and query: a request
        that sends a body anyway is refused rather than answered as if it had none (past the
        size limit, 413 as any body)."""
        if await codec.read_body(receive, headers.get("content-length"), self.max_body_bytes):
            raise _takes_no_body(route.binding)

    async def _decode(self, route: Route, scope: dict, receive, values: dict[str, str], headers: dict[str, str]):
        """Body first, then the query string, then the path; a field the path sets may come in the
        body too only with the same value (grpc-gateway lets the path win silently)."""
        message = route.input_class()
        given: set[str] = set()
        if route.body:
            content_type = headers.get("content-type")
            if content_type is not None:
                codec.check_json_content_type(content_type)
            gzipped = codec.is_gzipped(headers.get("content-encoding"))
            raw = await codec.read_body(receive, headers.get("content-length"), self.max_body_bytes)
            if raw and gzipped:
                raw = codec.gunzip(raw, self.max_body_bytes)
            if raw:
                if content_type is None:
                    codec.check_json_content_type(None)
                document = codec.parse_json(raw)
                codec.merge_json(document, message, route.body_field)
                if route.body == "*" and isinstance(document, dict):
                    given.update(document)
        else:
            await self._refuse_a_body(route, receive, headers)
        given |= route.query.apply(message, scope.get("query_string", b""))
        for var, chain in route.path_fields:
            container = message
            for fd in chain[:-1]:
                container = getattr(container, fd.name)
            from_body = getattr(container, chain[-1].name)
            try:
                assign_leaf(container, chain[-1], values[var])
            except BindError as exc:
                raise invalid(var, f"path parameter {var}: {exc}", reason="MALFORMED_REQUEST") from None
            if from_body and from_body != getattr(container, chain[-1].name):
                # a client that built the body from the whole request must not act on another id
                raise invalid(var, f"set by the URL path to {shortened(values[var])!r} and by the body to "
                              f"{shortened(str(from_body))!r}: leave it out of the body", reason="MALFORMED_REQUEST")
            given.add(var)
        resume = route.resume_field
        if resume is not None and headers.get("last-event-id", "").strip():
            # An EventSource reconnects to the URL it opened, fromSequence and all: the events it
            # has seen since are not sent again. (An empty Last-Event-ID is none: nothing seen.)
            after = _resume_after(headers["last-event-id"], resume)
            if after > getattr(message, resume.name):  # (0 when the URL named none)
                setattr(message, resume.name, after)
        return message


async def _status_of(app: ASGIApp, scope: dict) -> int:
    """The status ``app`` answers ``scope`` with (a request without a body), the answer dropped."""
    status = 0
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if requested:
            return {"type": "http.disconnect"}
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def _takes_no_body(binding: Binding) -> TradewireError:
    return TradewireError("MALFORMED_REQUEST", f"{binding.http_method} {binding.template.openapi_path} takes its "
                          "fields from the URL path and query string: send no request body")


def _no_first_steps(ctx: CallContext) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def _resume_after(last_event_id: str, resume: FieldDescriptor) -> int:
    """``from_sequence`` for an EventSource reconnecting with ``Last-Event-ID``: the event
    after the last one it saw. The id is one we sent, a sequence number; the next one must
    still fit the field (uint64), so the largest id is one below its maximum."""
    last = last_event_id.strip()
    highest = RANGES[resume.type][1] - 1
    if not (last.isascii() and last.isdigit() and len(last) <= 20 and int(last) <= highest):
        raise invalid("Last-Event-ID", f"must be the id of an event received: a sequence number from 0 to "
                      f"{highest}, got {last[:40]!r}", reason="MALFORMED_REQUEST")
    return int(last) + 1


def build_http_json_app(
    service: object,
    service_descriptor: ServiceDescriptor,
    *,
    max_body_bytes: int,
    on_error: OnError | None = None,
    descriptor_set_path: str | Path | None = None,
    fallback: ASGIApp | None = None,
) -> HttpJsonApp:
    """The HTTP/JSON ASGI app for ``service`` (one async method per RPC, named like it).

    ``on_error(error, ctx)`` is called for every error answered (ctx is None before a route
    matched); for an unexpected exception ``error`` is the generic INTERNAL one and the
    original exception is its ``__cause__``. ``descriptor_set_path`` defaults to
    gen/descriptors/tradewire.binpb (proto comments for the OpenAPI document). ``fallback``
    (an ASGI app, e.g. StaticFiles) receives unmatched paths outside the API prefixes (see HttpJsonApp).
    """
    return HttpJsonApp(
        service,
        service_descriptor,
        max_body_bytes=max_body_bytes,
        on_error=on_error,
        descriptor_set_path=descriptor_set_path,
        fallback=fallback,
    )
