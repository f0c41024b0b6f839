"""Connect (JSON and binary) and gRPC-Web, served by connect-python as an ASGI app.

The adapter maps each RPC onto core exactly as the gRPC adapter does. ``ConnectCompat`` closes
connect-python 0.9's gaps in front of it, so that every bad request gets its protocol's error
form with the right code and a clear message (connect-python answers many with 500 or UNKNOWN
and the exception's text): a header value with a byte that is not UTF-8 (read as Latin-1, as
HTTP/JSON reads it, not a 500); a media type in other letter cases, or with a UTF-8 ``charset``
spelled any way (415 otherwise); a GET's binary message percent-encoded without ``base64=1``
(handed on as base64: connect-python would read its bytes as UTF-8 text); a request message
that does not decode — an unknown, mistyped or repeated JSON field, bad protobuf, a truncated
frame or bytes after it, bad base64 in a GET query — in a unary body, a GET query or a stream's
one message, Connect or gRPC-Web, JSON or binary, which must be INVALID_ARGUMENT naming the
field where there is one (an empty JSON message is ``{}``, as on HTTP/JSON); a body declared
gzip that is not gzip (INVALID_ARGUMENT) or inflates past the size limit (413), and a
compression it does not know (UNIMPLEMENTED); a malformed ``grpc-timeout``, or a
``connect-timeout-ms`` that is not a positive number (INVALID_ARGUMENT); native gRPC sent here
(415: it has its own port); a GET on a method Connect serves no GET for (405); gRPC-Web's text
mode (base64 both ways: grpc-web's JavaScript client's default; 415 otherwise), served as
binary gRPC-Web in between; and a server stream whose client went away (connect-python notices
only when the next message is ready; here the stream is cancelled at once, so it frees what it
holds immediately). A path that names no method goes straight to connect-python (404): a name
the client made up never becomes a metrics label or an audit row.

A call whose request is checked here is authenticated from its headers first (core's
Pipeline.authenticate_first), so a caller without valid credentials, or a peer throttled for
failed authentications, is refused before its body (or GET query) is read or inflated; the
refusal is answered by connect-python through the adapter, as any refused call.

This listener is uvicorn, HTTP/1.1: a request body and its response cannot flow at the same
time, so bidirectional streaming (TradeSession) cannot be full duplex here. It answers
UNIMPLEMENTED (reason DUPLEX_UNSUPPORTED) naming native gRPC as the way, rather than
pretending with a half-duplex session that would only answer after the client stopped sending.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlencode

from connectrpc.errors import ConnectError
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError

from tradewire.core.context import CallContext, Protocol, combine_headers
from tradewire.core.errors import TradewireError, internal_error, shortened
from tradewire.gateway import connect_codec
from tradewire.gateway.calls import RPCS, Rpc
from tradewire.gateway.asgi_scope import scope_headers, scope_peer
from tradewire.gateway.disconnect import ClientGone, until_disconnect
from tradewire.gateway.errors import CONNECT_CODE, duplex_unsupported_error, fitted_to_metadata, http_status
from tradewire.gateway.http_json.codec import gunzip, merge_json, parse_json
from tradewire.gateway.deadlines import until_deadline, within_deadline
from tradewire.v1.service_connect import TradeExecutionServiceASGIApplication

log = logging.getLogger("tradewire.gateway")

# core's Pipeline.record_refused: records a call refused before admission
RecordRefused = Callable[[CallContext, TradewireError], None]
# core's Pipeline.authenticate_first: a call's first steps, from its headers, before its body is read
AuthenticateFirst = Callable[[CallContext], contextlib.AbstractContextManager]


@dataclass
class _FirstSteps:
    """A call ConnectCompat authenticated from its headers before reading its body, handed to
    ConnectAdapter (connect-python runs the handler in the task, or a copy of its context):
    the adapter goes on with this context, or answers ``refusal`` as it answers any error."""

    ctx: CallContext
    refusal: TradewireError | None = None


_FIRST_STEPS: contextvars.ContextVar[_FirstSteps | None] = contextvars.ContextVar("tradewire_first_steps",
                                                                                  default=None)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _protocol(content_type: str) -> Protocol:
    if content_type.startswith("application/grpc-web"):
        return Protocol.GRPC_WEB
    if content_type.startswith("application/grpc"):
        return Protocol.GRPC
    return Protocol.CONNECT


def to_connect_error(error: Exception, ctx: CallContext | None = None) -> ConnectError:
    if not isinstance(error, TradewireError):
        log.error("unexpected error in %s", ctx.method if ctx else "connect call", exc_info=error)
        error = internal_error()
    if ctx is not None and ctx.protocol is Protocol.GRPC_WEB:
        # gRPC-Web carries it as metadata (its trailers), which clients cap as native gRPC's
        error = fitted_to_metadata(error)
    return ConnectError(CONNECT_CODE[error.code], error.message, details=error.details())


class ConnectAdapter:
    """Has one snake_case method per RPC, as the generated ASGI application expects."""

    def __init__(self, service) -> None:
        for rpc in RPCS:
            setattr(self, _snake(rpc.name), self._bind(rpc, getattr(service, rpc.name)))

    @staticmethod
    def _context(rpc: Rpc, request_context) -> tuple[CallContext, TradewireError | None]:
        """The call's context with its deadline (the context ConnectCompat authenticated, when it
        did), and the refusal ConnectCompat found in its headers, for the adapter to answer."""
        first = _FIRST_STEPS.get()
        if first is not None and first.ctx.method == rpc.name:  # (its deadline set from the headers' arrival)
            return first.ctx, first.refusal
        timeout_ms = request_context.timeout_ms()
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        headers = request_context.request_headers()
        ctx = CallContext(
            protocol=_protocol(headers.get("content-type", "")),
            method=rpc.name,
            headers=combine_headers(headers.allitems()),
            peer=request_context.client_address() or "",
            deadline=deadline,
        )
        return ctx, None

    @staticmethod
    def _send_headers(ctx: CallContext, request_context) -> None:
        response_headers = request_context.response_headers()
        for name, value in ctx.response_headers.items():
            response_headers[name] = value

    def _bind(self, rpc: Rpc, method: Callable) -> Callable:
        if rpc.client_streaming:
            async def duplex_unsupported(requests, request_context) -> AsyncIterator:
                ctx, _ = self._context(rpc, request_context)
                raise to_connect_error(duplex_unsupported_error(rpc.name), ctx)
                yield  # pragma: no cover - an async generator, as connect-python expects for streams
            return duplex_unsupported

        if not rpc.server_streaming:
            async def unary(request, request_context):
                ctx, refusal = self._context(rpc, request_context)
                try:
                    if refusal is not None:
                        raise refusal
                    call = method(request, ctx)
                    response = await (call if ctx.deadline is None else within_deadline(call, ctx))
                except Exception as exc:  # noqa: BLE001 - every failure becomes a Connect error
                    self._send_headers(ctx, request_context)
                    raise to_connect_error(exc, ctx) from None
                self._send_headers(ctx, request_context)
                return response
            return unary

        async def stream(request, request_context) -> AsyncIterator:
            ctx, refusal = self._context(rpc, request_context)
            messages = method(request, ctx) if refusal is None else _refusing(refusal)
            try:
                first = True
                async for message in messages if ctx.deadline is None else until_deadline(messages, ctx):
                    if first:
                        self._send_headers(ctx, request_context)
                        first = False
                    yield message
            except Exception as exc:  # noqa: BLE001
                self._send_headers(ctx, request_context)
                raise to_connect_error(exc, ctx) from None
            finally:
                await messages.aclose()
        return stream


async def _refusing(error: TradewireError) -> AsyncIterator:
    raise error
    yield  # pragma: no cover - an async generator, as a stream's messages are


# -- connect-python 0.9 gaps -----------------------------------------------------------------

_UTF8 = ("utf-8", "utf8")
_GRPC_TIMEOUT = re.compile(rb"[0-9]{1,8}[HMSmun]")  # gRPC's spec: at most 8 digits and a unit
_CONNECT_TIMEOUT = re.compile(rb"(?!0+$)[0-9]{1,10}")  # Connect's spec: positive, at most 10 digits
_GRPC_TIMEOUT_UNIT_S = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_ENCODINGS = ("identity", "gzip")  # what connect-python inflates
_NO_SIDE_EFFECTS = descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS


def decode_json(body: bytes, input_cls):
    """The transcoder's decoder: errors name the offending field, as on HTTP/JSON."""
    message = input_cls()
    merge_json(parse_json(body or b"{}"), message)
    return message


def _decode_proto(body: bytes, input_cls):
    try:
        return input_cls.FromString(body)
    except DecodeError:
        raise TradewireError("MALFORMED_REQUEST", f"request is not a valid {input_cls.DESCRIPTOR.name}") from None


def _one_frame(body: bytes) -> tuple[int, bytes]:
    """The one message a request stream carries (gRPC-Web, and Connect's server streams): a
    flags byte, a 4-byte length, the message, and nothing after it (connect-python would
    silently drop a partial second frame)."""
    size = int.from_bytes(body[1:5], "big")
    if len(body) < 5 or size > len(body) - 5:
        raise TradewireError("MALFORMED_REQUEST", "the request does not hold a complete message frame")
    if len(body) > 5 + size:
        raise TradewireError("MALFORMED_REQUEST",
                             f"the request holds {len(body) - 5 - size} bytes after its one message frame")
    return body[0], body[5:]


def _frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def _b64_chunks(body: bytes) -> bytes:
    """A gRPC-Web text body: base64, possibly several padded chunks one after the other."""
    text = b"".join(body.split())
    if len(text) % 4:
        raise TradewireError("MALFORMED_REQUEST", "the gRPC-Web text body is not valid base64")
    try:
        return b"".join(base64.b64decode(text[i:i + 4], validate=True) for i in range(0, len(text), 4))
    except binascii.Error:
        raise TradewireError("MALFORMED_REQUEST", "the gRPC-Web text body is not valid base64") from None


def _decode_base64(text: str) -> bytes:
    """A GET request's ``message`` with ``base64=1`` (URL-safe or standard, padding optional)."""
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise TradewireError("MALFORMED_REQUEST", "the message query parameter is not valid base64") from None


def _compression(value: str, where: str) -> str:
    """A request's compression by name; one connect-python does not know is UNIMPLEMENTED (a
    Connect stream's would be taken as identity, and its compressed message answered INTERNAL)."""
    name = value.strip().lower()
    if name not in _ENCODINGS:
        raise TradewireError("UNIMPLEMENTED", f"unsupported {where} {value!r}: send {' or '.join(_ENCODINGS)}")
    return name


def _inflated(data: bytes, compression: str, limit: int, what: str = "the request body") -> bytes:
    return gunzip(data, limit, what) if compression == "gzip" and data else data


_GRPC_WEB_PROTO = (b"application/grpc-web", b"application/grpc-web+proto")
_GRPC_WEB_JSON = b"application/grpc-web+json"
_GRPC_WEB = (*_GRPC_WEB_PROTO, _GRPC_WEB_JSON)
_GRPC_WEB_TEXT = (b"application/grpc-web-text", b"application/grpc-web-text+proto")
_TEXT_CONTENT_TYPE = b"application/grpc-web-text+proto"
_GRPC_WEB_DECODERS = {**dict.fromkeys(_GRPC_WEB_PROTO, _decode_proto), _GRPC_WEB_JSON: decode_json}
_BODY_DECODERS = {b"application/json": decode_json, b"application/proto": _decode_proto, **_GRPC_WEB_DECODERS}
_STREAM_DECODERS = {b"application/connect+json": decode_json, b"application/connect+proto": _decode_proto,
                    **_GRPC_WEB_DECODERS}
_ENVELOPED = frozenset((b"application/connect+json", b"application/connect+proto", *_GRPC_WEB))
_QUERY_DECODERS = {"json": lambda raw, input_cls: decode_json(raw or b"null", input_cls), "proto": _decode_proto}
_ACCEPT_POST = (b"accept-post", b"application/json, application/proto")  # as connect-python's 415s
_TEXT_AS_BINARY = b"application/grpc-web+proto"


@dataclass(frozen=True)
class _Plan:
    """A call whose request ConnectCompat checks, as its headers describe it."""

    input_cls: type
    decode: Callable | None  # None for a GET (its query is checked)
    content_type: bytes
    encoding_header: bytes  # where its compression is named
    compression: str
    # A call that cannot be read: refused once its credentials are checked, as HTTP/JSON does
    refusal: TradewireError | None = None
    timeout_s: float | None = None  # its timeout header's: the deadline covers reading its body


def _encoding_header(content_type: bytes) -> bytes:
    """Where a request names its compression: per message for gRPC-Web and Connect streams."""
    if content_type in _GRPC_WEB:
        return b"grpc-encoding"
    return b"connect-content-encoding" if content_type in _ENVELOPED else b"content-encoding"


def _native_grpc(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip()
    return media == b"application/grpc" or media.startswith(b"application/grpc+")


def _unsupported_media_type(content_type: bytes, streaming: bool) -> TradewireError:
    connect = "application/connect+json or application/connect+proto" if streaming else \
        "application/json or application/proto"
    shown = shortened(content_type.decode("latin-1")) or "none"
    return TradewireError("UNSUPPORTED_MEDIA_TYPE", f"unsupported content type {shown!r}: a Connect call sends "
                          f"{connect}, a gRPC-Web call application/grpc-web+proto or application/grpc-web+json "
                          "(application/grpc-web-text for text mode)")


_NATIVE_GRPC_REFUSED = TradewireError(
    "UNSUPPORTED_MEDIA_TYPE",
    "native gRPC (application/grpc) needs HTTP/2 and is served on the gateway's gRPC port; this HTTP/1.1 "
    "listener serves Connect (application/json, application/proto), gRPC-Web (application/grpc-web) and HTTP/JSON",
)


def _check_timeout(headers: dict[bytes, bytes], content_type: bytes) -> float | None:
    """The call's timeout in seconds (None without one), its header as its protocol spells it:
    connect-python answers a bad grpc-timeout with a 500 and takes a zero or negative
    connect-timeout-ms for no deadline."""
    if content_type.startswith(b"application/grpc-web"):
        name, pattern, form = b"grpc-timeout", _GRPC_TIMEOUT, "1 to 8 digits and a unit (H, M, S, m, u or n)"
    else:
        name, pattern, form = (b"connect-timeout-ms", _CONNECT_TIMEOUT,
                               "a positive whole number of milliseconds, at most 10 digits")
    value = headers.get(name)
    if value is None:
        return None
    if not pattern.fullmatch(value):
        raise TradewireError("MALFORMED_REQUEST",
                             f"invalid {name.decode()} header {shortened(value.decode('latin-1'))!r}: send {form}",
                             metadata={"header": name.decode()})
    if name == b"grpc-timeout":
        return int(value[:-1]) * _GRPC_TIMEOUT_UNIT_S[value[-1:]]
    return int(value) / 1000


def _check_protocol_version(headers: dict[bytes, bytes], content_type: bytes) -> None:
    """Connect's version header, when sent, is 1 (connect-python refused others without details)."""
    value = headers.get(b"connect-protocol-version")
    if value is not None and value.strip() != b"1" and not content_type.startswith(b"application/grpc-web"):
        raise TradewireError("MALFORMED_REQUEST", f"connect-protocol-version must be 1, got "
                             f"{shortened(value.decode('latin-1'))!r}", metadata={"header": "connect-protocol-version"})


def _message(body: bytes, content_type: bytes, compression: str, limit: int) -> bytes | None:
    """The request's one message, unframed and inflated; None for a frame flagged compressed
    with no compression named (connect-python answers INTERNAL, as gRPC's spec says)."""
    if content_type not in _ENVELOPED:
        return _inflated(body, compression, limit)
    flags, message = _one_frame(body)
    if not flags & 0x01:
        return message
    return None if compression == "identity" else _inflated(message, compression, limit, "the request message")


def _forwarded(message: bytes, content_type: bytes) -> bytes:
    """The body connect-python is given: the message as checked, uncompressed; an empty JSON
    message spelled ``{}`` (its parser refuses an empty one; the proto codec, Connect's JSON
    clients and HTTP/JSON take it as the empty message)."""
    if not message and content_type.endswith(b"json"):
        message = b"{}"
    return _frame(message) if content_type in _ENVELOPED else message


def _connect_error_body(error: TradewireError) -> bytes:
    """A Connect error as connect-python writes one (details with their ``debug`` JSON too)."""
    details = [{"type": d.TypeName(), "value": base64.b64encode(d.value).decode().rstrip("="),
                "debug": json_format.MessageToDict(_unpacked(d))} for d in error.details()]
    return json.dumps({"code": CONNECT_CODE[error.code].value, "message": error.message, "details": details}).encode()


def _unpacked(detail: any_pb2.Any):
    message = message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(detail.TypeName()))()
    detail.Unpack(message)
    return message


class ConnectCompat:
    """ASGI middleware in front of the Connect application (see module docstring).

    With ``authenticate_first`` (core's Pipeline.authenticate_first), a call whose request is
    known to be one to check here is authenticated from its headers before its body (or GET
    query) is read: a caller without valid credentials is refused without anything it sent
    being read, inflated or parsed. Its refusal, and the call once admitted, go on with that
    same context (:class:`_FirstSteps`), so connect-python answers them as it answers any call.
    """

    def __init__(self, app, max_body_bytes: int, record_refused: RecordRefused | None = None,
                 authenticate_first: AuthenticateFirst | None = None, recorder=None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.record_refused = record_refused
        self.authenticate_first = authenticate_first
        self.recorder = recorder  # core's Recorder: requests that name no method (Recorder.unrouted)
        self._names = {rpc.path: rpc.name for rpc in RPCS}
        self._inputs = {rpc.name: message_factory.GetMessageClass(rpc.descriptor.input_type)
                        for rpc in RPCS if not rpc.client_streaming and not rpc.server_streaming}
        self._stream_inputs = {rpc.name: message_factory.GetMessageClass(rpc.descriptor.input_type)
                               for rpc in RPCS if rpc.server_streaming and not rpc.client_streaming}
        self._streams = frozenset(rpc.name for rpc in RPCS if rpc.server_streaming)
        # Connect serves GET only for unary methods without side effects (connect-python takes a
        # GET on a server stream, and ends it saying the request carries no message).
        self._gettable = frozenset(rpc.name for rpc in RPCS if not rpc.server_streaming and not rpc.client_streaming
                                   and rpc.descriptor.GetOptions().idempotency_level == _NO_SIDE_EFFECTS)

    def _app(self, scope, receive, send):
        """connect-python, handed the call with its header values as it can read them."""
        return self.app(_headers_for_connect_python(scope), receive, send)

    def _record_unrouted(self, scope, status: int) -> None:
        """A request refused before it reached a method: counted and logged as HTTP/JSON's are."""
        if self.recorder is not None:
            self.recorder.unrouted(Protocol.HTTP_JSON, str(status), scope["method"], scope["path"], scope_peer(scope))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = [(k, self._normalize(v) if k == b"content-type" else v) for k, v in scope["headers"]]
        scope = {**scope, "headers": headers}
        method_name = self._method_name(scope)
        if method_name is None:  # no such method: connect-python answers 404 (and no metrics series is made)
            self._record_unrouted(scope, 404)
            return await self._app(scope, receive, send)
        content_type = dict(headers).get(b"content-type", b"")
        if _native_grpc(content_type):  # connect-python: 500, it needs HTTP trailers
            return await self._send_error(send, _NATIVE_GRPC_REFUSED, 415, [_ACCEPT_POST])
        text = content_type in _GRPC_WEB_TEXT
        if text:  # served as binary gRPC-Web in between: the body is decoded as it is read
            content_type = _TEXT_AS_BINARY
            scope = {**scope, "headers": [(k, content_type if k == b"content-type" else v)
                                          for k, v in headers if k != b"content-length"]}
            send = _text_send(send)
        allowed = ("GET", "POST") if method_name in self._gettable else ("POST",)
        if scope["method"] not in allowed:
            self._record_unrouted(scope, 405)
            return await self._send_status(send, 405, [(b"allow", ", ".join(allowed).encode())])
        streaming = method_name in self._streams
        try:
            plan = self._plan(scope, method_name, content_type, streaming)
        except TradewireError as error:  # refused from its headers: after its credentials, as any call
            plan = _Plan(object, None, content_type, b"", "identity", refusal=error)
        ctx = _call_context(scope, method_name)
        if plan.timeout_s is not None:  # from the headers' arrival, as on gRPC and HTTP/JSON: a slow upload
            ctx.deadline = ctx.started + plan.timeout_s  # spends it too
        first = self.authenticate_first(ctx) if self.authenticate_first is not None else contextlib.nullcontext()
        reading = False
        try:
            with first:  # the credentials, from the headers (a refusal is raised here, recorded)
                reading = True
                if plan.refusal is not None:
                    raise plan.refusal
                scope, body = await within_deadline(self._checked(scope, receive, plan, text), ctx)
                token = _FIRST_STEPS.set(_FirstSteps(ctx) if ctx.authenticated else None)
                try:
                    if scope["method"] == "GET":
                        await self._app(scope, receive, send)
                    elif streaming:
                        await self._stream_until_disconnect(scope, _replaying(body, receive), send)
                    else:
                        await self._unary_until_disconnect(scope, _replaying(body, receive), send, receive)
                finally:
                    _FIRST_STEPS.reset(token)
                return
        except TradewireError as error:
            refusal = error
        except ClientGone:  # it went away: nothing runs, nobody to answer; on record as a cancelled call
            if reading and self.record_refused is not None:  # (record_refused skips a call that recorded itself)
                self.record_refused(ctx, TradewireError("CANCELLED", "client disconnected while sending the request"))
            return
        if reading or plan.refusal is not None:  # the request did not pass its checks (recorded with the call's ids)
            return await self._refuse(scope, send, refusal, content_type, streaming, ctx)
        # Refused from its headers (its body unread): answered by connect-python from an empty
        # request, the adapter raising the refusal, so the answer is a refused call's as ever.
        scope, body = _empty_request(scope, plan)
        token = _FIRST_STEPS.set(_FirstSteps(ctx, refusal))
        try:
            await self._app(scope, _replaying(body, receive), send)
        finally:
            _FIRST_STEPS.reset(token)

    def _method_name(self, scope) -> str | None:
        path = scope["path"]
        return self._names.get(path) or self._names.get(path.removeprefix(scope.get("root_path", "")))

    def _plan(self, scope, method_name: str, content_type: bytes, streaming: bool) -> _Plan:
        """What its headers say of the call: how its request is read, or why it cannot be
        (``refusal``, or a TradewireError raised for a bad header)."""
        headers = dict(scope["headers"])
        timeout_s = _check_timeout(headers, content_type)
        _check_protocol_version(headers, content_type)
        if streaming:
            input_cls, decode = self._stream_inputs.get(method_name), _STREAM_DECODERS.get(content_type)
        else:
            input_cls, decode = self._inputs.get(method_name), _BODY_DECODERS.get(content_type)
        if input_cls is None:  # TradeSession: refused after the credentials, and recorded
            return _Plan(object, None, content_type, b"", "identity", refusal=duplex_unsupported_error(method_name))
        if scope["method"] == "GET":
            query = _query(scope)
            if _QUERY_DECODERS.get(query.get("encoding", [""])[0]) is None or "message" not in query:
                return _Plan(input_cls, None, content_type, b"", "identity", refusal=TradewireError(
                    "MALFORMED_REQUEST", "a Connect GET names its request in the query: encoding=json or "
                    "encoding=proto, and message=<the request, URL-encoded (base64 with base64=1)>"))
            return _Plan(input_cls, None, content_type, b"", "identity")
        if decode is None:  # a content type connect-python would refuse with a bare 415
            return _Plan(input_cls, None, content_type, b"", "identity",
                         refusal=_unsupported_media_type(content_type, streaming))
        encoding_header = _encoding_header(content_type)
        compression = _compression(headers.get(encoding_header, b"identity").decode("latin-1"),
                                   encoding_header.decode())
        return _Plan(input_cls, decode, content_type, encoding_header, compression, timeout_s=timeout_s)

    async def _checked(self, scope, receive, plan: _Plan, text: bool) -> tuple[dict, bytes]:
        """The call's scope and body to hand connect-python once its request is known good
        (TradewireError otherwise)."""
        if scope["method"] == "GET":
            return _checked_query(scope, plan.input_cls, self.max_body_bytes), b""
        body = await self._read_body(receive, text)
        message = _message(body, plan.content_type, plan.compression, self.max_body_bytes)
        if message is None:
            return scope, body
        plan.decode(message, plan.input_cls)
        # handed on uncompressed: connect-python inflates no more
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"]
                                      if k not in (plan.encoding_header, b"content-length")]}
        return scope, _forwarded(message, plan.content_type)

    async def _read_body(self, receive, text: bool = False) -> bytes:
        """The request body; gRPC-Web text's (base64: a third larger) decoded."""
        limit = self.max_body_bytes * 4 // 3 + 4 if text else self.max_body_bytes
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":  # (not the end of the body: nobody to answer)
                raise ClientGone()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                raise TradewireError("PAYLOAD_TOO_LARGE", f"request body exceeds {self.max_body_bytes} bytes")
        return _b64_chunks(body) if text else body

    async def _refuse(self, scope, send, error: TradewireError, content_type: bytes, streaming: bool,
                      ctx: CallContext | None = None) -> None:
        """Answer a call refused here in its protocol's error form; it is recorded as a call of
        its method (``ctx``, when it has one already), and its ids go back in the headers."""
        extra: list[tuple[bytes, bytes]] = []
        if self.record_refused is not None:
            ctx = ctx or _call_context(scope)
            self.record_refused(ctx, error)
            extra = [(name.encode(), value.encode()) for name, value in ctx.response_headers.items()]
        if error.reason == "UNSUPPORTED_MEDIA_TYPE":
            extra.append(_ACCEPT_POST)
        if content_type in _GRPC_WEB:
            await self._send_grpc_web_error(send, error, content_type, extra)
        elif streaming and content_type in _ENVELOPED:
            await self._send_stream_error(send, error, content_type, extra)
        else:
            await self._send_error(send, error, http_status(error), extra)

    async def _unary_until_disconnect(self, scope, app_receive, send, wire_receive) -> None:
        """Run a unary call whose body is already read; cancel it if the client disconnects
        before the response is complete."""
        completed = False

        async def tracking_send(message) -> None:
            nonlocal completed
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                completed = True
            await send(message)

        with contextlib.suppress(ClientGone):
            await until_disconnect(self._app(scope, app_receive, tracking_send), wire_receive, lambda: completed)

    async def _stream_until_disconnect(self, scope, receive, send) -> None:
        """Run a streaming call; the moment the client disconnects, cancel it."""
        gone = False

        async def watched_receive():
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not gone:
                gone = True
                call.cancel()
            return message

        call = asyncio.ensure_future(self._app(scope, watched_receive, send))
        try:
            await asyncio.shield(call)
        except asyncio.CancelledError:
            if call.done():
                return
            call.cancel()  # the server itself cancels this request (shutdown): pass it on
            await asyncio.gather(call, return_exceptions=True)
            raise
        except Exception:  # connect-python turns the cancellation into CANCELED; nobody is listening
            if not gone:
                raise

    @staticmethod
    def _normalize(value: bytes) -> bytes:
        """A media type is case-insensitive, and a JSON one may say its charset, UTF-8 spelled any
        way (connect-python knows only ``application/json`` and ``; charset=utf-8``: 415)."""
        media, _, params = value.decode("latin-1").partition(";")
        media = media.strip().lower()
        name, _, charset = params.partition("=")
        if not params.strip() or (media.endswith("json") and name.strip().lower() == "charset"
                                  and charset.strip().strip('"').lower() in _UTF8):
            return media.encode()
        return f"{media};{params}".encode("latin-1")  # another parameter: connect-python refuses it (415)

    @staticmethod
    async def _send_grpc_web_error(send, error: TradewireError, content_type: bytes,
                                   extra: list[tuple[bytes, bytes]]) -> None:
        """A trailers-only gRPC-Web response: HTTP 200 with the status in the headers."""
        error = fitted_to_metadata(error)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", content_type),
            (b"grpc-status", str(int(error.code)).encode()),
            (b"grpc-message", quote(error.message).encode()),
            (b"grpc-status-details-bin", base64.b64encode(error.to_status().SerializeToString()).rstrip(b"=")),
            *extra,
        ]})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _send_stream_error(send, error: TradewireError, content_type: bytes,
                                 extra: list[tuple[bytes, bytes]]) -> None:
        """A Connect stream that ends before its first message: HTTP 200, and the error in the
        end-of-stream frame (flags 0x02), as connect-python ends a stream."""
        end = json.dumps({"error": json.loads(_connect_error_body(error))}).encode()
        body = b"\x02" + len(end).to_bytes(4, "big") + end
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _send_error(send, error: TradewireError, status: int, extra: list[tuple[bytes, bytes]]) -> None:
        body = _connect_error_body(error)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _send_status(send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """A bare HTTP status, as connect-python answers one (405)."""
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _checked_query(scope, input_cls, limit: int) -> dict:
    """A GET call's scope once its ``message`` query parameter is known to decode as its
    method's input: the message is handed on as checked, inflated and in base64, whatever
    way it came. connect-python reads the query string as UTF-8 (an undecodable byte: a 500)
    and a message not in base64 as UTF-8 text, so the bytes of a binary message that is only
    percent-encoded (Connect allows it: encoding=proto without base64=1) would not reach it."""
    query = _query(scope)
    decode = _QUERY_DECODERS.get(query.get("encoding", [""])[0])
    if decode is None or "message" not in query:
        return scope  # connect-python refuses what it cannot read
    text = query["message"][0]
    raw = _decode_base64(text) if query.get("base64", [""])[0] == "1" else text.encode("latin-1")
    compression = _compression(query.get("compression", ["identity"])[0], "compression query parameter")
    message = _inflated(raw, compression, limit, "the message query parameter")
    if not message and query["encoding"][0] == "json":  # the empty message, as for a POST (_forwarded)
        message = b"{}"
    decode(message, input_cls)
    query.pop("compression", None)
    query.update(message=[base64.urlsafe_b64encode(message).decode()], base64=["1"])
    return {**scope, "query_string": _query_string(query)}


def _call_context(scope, method: str = "") -> CallContext:
    """The call's context from its scope, as ConnectAdapter builds it from connect-python's."""
    headers = scope_headers(scope)
    return CallContext(protocol=_protocol(headers.get("content-type", "")),
                       method=method or scope["path"].rsplit("/", 1)[-1], headers=headers, peer=scope_peer(scope))


def _query(scope) -> dict[str, list[str]]:
    # latin-1: the percent-decoded bytes as they are (a proto message is binary)
    return parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True, encoding="latin-1")


def _query_string(query: dict[str, list[str]]) -> bytes:
    """A query (as ``_query`` reads it) for connect-python, which decodes it as UTF-8: all
    ASCII, each value its Latin-1 reading, as the header values it is given are."""
    return urlencode(query, doseq=True, encoding="utf-8").encode("ascii")


def _headers_for_connect_python(scope) -> dict:
    """The scope with each header value connect-python can decode (it decodes them as UTF-8,
    and answers a byte that is not UTF-8 with a 500 carrying the exception's text): a value
    is read as Latin-1, as the HTTP listener reads it for HTTP/JSON and for the call's context
    here (asgi_scope.scope_headers: bytes 0x80-0xFF are RFC 9110's obs-text), and handed on
    spelled in UTF-8, so connect-python and the adapter see the same text."""
    headers = scope.get("headers", ())
    if all(name.isascii() and value.isascii() for name, value in headers):
        return scope
    return {**scope, "headers": [(name.decode("latin-1").encode(), value.decode("latin-1").encode())
                                 for name, value in headers]}


def _empty_request(scope, plan: _Plan) -> tuple[dict, bytes]:
    """The scope and body connect-python is given for a call refused before its request was
    read: the same call (method, headers, protocol) with an empty message."""
    if scope["method"] == "GET":
        query = {k: v for k, v in _query(scope).items() if k not in ("message", "base64", "compression")}
        query["message"] = ["{}" if query.get("encoding", [""])[0] == "json" else ""]
        return {**scope, "query_string": _query_string(query)}, b""
    headers = [(k, v) for k, v in scope["headers"] if k not in (plan.encoding_header, b"content-length")]
    return {**scope, "headers": headers}, _forwarded(b"", plan.content_type)


def _text_send(send):
    """gRPC-Web's text mode (grpc-web's JavaScript client by default), which connect-python does
    not speak: the body is base64, both ways. It is served as binary gRPC-Web in between; each
    response chunk is encoded on its own (padded), which text-mode clients decode."""
    async def text_send(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [
                (k, _TEXT_CONTENT_TYPE if k == b"content-type" else v)
                for k, v in message.get("headers", ()) if k != b"content-length"]}
        elif message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": base64.b64encode(message["body"])}
        await send(message)
    return text_send


def _replaying(body: bytes, receive):
    """An ASGI receive that hands the app the body read already, then the client's messages."""
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


def build_connect_app(service, max_body_bytes: int, record_refused: RecordRefused | None = None):
    connect_codec.install()
    app = TradeExecutionServiceASGIApplication(ConnectAdapter(service), read_max_bytes=max_body_bytes)
    # core's pipeline, when the service has one: credentials are checked before a body is read
    pipeline = getattr(service, "pipeline", None)
    return ConnectCompat(app, max_body_bytes, record_refused, getattr(pipeline, "authenticate_first", None),
                         getattr(pipeline, "recorder", None))
