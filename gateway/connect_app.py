"""Connect (JSON and binary) and gRPC-Web, served by connect-python as an ASGI app.

The adapter maps each RPC onto core exactly as the gRPC adapter does. ``ConnectCompat``
closes connect-python 0.9's gaps in front of it: a ``charset=utf-8`` parameter spelled any
other way than ``; charset=utf-8`` (415 otherwise); a request message that does not decode —
an unknown, mistyped or repeated JSON field, bad protobuf, a truncated frame, bad base64 in a
GET query — in a unary body, a GET query or a server stream's one message (500 or UNKNOWN
otherwise, with protobuf's internals in the message), which must be INVALID_ARGUMENT naming
the field where there is one; gRPC-Web's text mode (base64 both ways: grpc-web's JavaScript
client's default; 415 otherwise), served as binary gRPC-Web in between; and a server stream
whose client went away (connect-python notices only when the next message is ready; here the
stream is cancelled at once, so it frees what it holds immediately).

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
import json
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qs, quote

from connectrpc.errors import ConnectError
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from tradewire.core.context import CallContext, Protocol, combine_headers
from tradewire.core.errors import TradewireError, internal_error
from tradewire.gateway.calls import RPCS, Rpc
from tradewire.gateway.disconnect import ClientGone, until_disconnect
from tradewire.gateway.errors import CONNECT_CODE, duplex_unsupported_error
from tradewire.gateway.http_json.codec import merge_json, parse_json
from tradewire.v1.service_connect import TradeExecutionServiceASGIApplication

log = logging.getLogger("tradewire.gateway")

# core's Pipeline.record_refused: records a call refused before admission
RecordRefused = Callable[[CallContext, TradewireError], None]


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
    return ConnectError(CONNECT_CODE[error.code], error.message, details=error.details())


class ConnectAdapter:
    """Has one snake_case method per RPC, as the generated ASGI application expects."""

    def __init__(self, service) -> None:
        for rpc in RPCS:
            setattr(self, _snake(rpc.name), self._bind(rpc, getattr(service, rpc.name)))

    @staticmethod
    def _context(rpc: Rpc, request_context) -> tuple[CallContext, float | None]:
        headers = request_context.request_headers()
        timeout_ms = request_context.timeout_ms()
        timeout = None if timeout_ms is None else timeout_ms / 1000
        ctx = CallContext(
            protocol=_protocol(headers.get("content-type", "")),
            method=rpc.name,
            headers=combine_headers(headers.allitems()),
            peer=request_context.client_address() or "",
            deadline=None if timeout is None else time.monotonic() + timeout,
        )
        return ctx, timeout

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
                ctx, timeout = self._context(rpc, request_context)
                try:
                    async with asyncio.timeout(timeout):  # connect-python parses but does not enforce it
                        response = await method(request, ctx)
                except TimeoutError:
                    raise to_connect_error(TradewireError("DEADLINE_EXCEEDED", "deadline exceeded"), ctx) from None
                except Exception as exc:  # noqa: BLE001 - every failure becomes a Connect error
                    self._send_headers(ctx, request_context)
                    raise to_connect_error(exc, ctx) from None
                self._send_headers(ctx, request_context)
                return response
            return unary

        async def stream(request, request_context) -> AsyncIterator:
            ctx, timeout = self._context(rpc, request_context)
            messages = method(request, ctx)
            try:
                async with asyncio.timeout(timeout):
                    first = True
                    async for message in messages:
                        if first:
                            self._send_headers(ctx, request_context)
                            first = False
                        yield message
            except TimeoutError:
                raise to_connect_error(TradewireError("DEADLINE_EXCEEDED", "deadline exceeded"), ctx) from None
            except Exception as exc:  # noqa: BLE001
                self._send_headers(ctx, request_context)
                raise to_connect_error(exc, ctx) from None
            finally:
                await messages.aclose()
        return stream


# -- connect-python 0.9 gaps -----------------------------------------------------------------

_CHARSET_UTF8 = re.compile(r"^(application/(?:connect\+)?json)\s*;\s*charset\s*=\s*\"?utf-8\"?\s*$", re.I)


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


def _enveloped(decode: Callable) -> Callable:
    """A decoder of the one message a request stream carries (gRPC-Web, and Connect's server
    streams): a flags byte, a 4-byte length, the message. Compressed messages are left to
    connect-python (it inflates them)."""
    def decode_frame(body: bytes, input_cls):
        if body[:1] and body[0] & 0x01:
            return None
        size = int.from_bytes(body[1:5], "big")
        if len(body) < 5 or size > len(body) - 5:
            raise TradewireError("MALFORMED_REQUEST", "the request does not hold a complete message frame")
        return decode(body[5:5 + size], input_cls)
    return decode_frame


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


def _gunzip(body: bytes, limit: int) -> bytes | None:
    """The decompressed body, or None to let connect-python answer (bad or oversized gzip)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error:
        return None
    return None if len(plain) > limit else plain


_GRPC_WEB = (b"application/grpc-web", b"application/grpc-web+proto")
_GRPC_WEB_TEXT = (b"application/grpc-web-text", b"application/grpc-web-text+proto")
_TEXT_CONTENT_TYPE = b"application/grpc-web-text+proto"
_BODY_DECODERS = {b"application/json": decode_json, b"application/proto": _decode_proto,
                  **dict.fromkeys(_GRPC_WEB, _enveloped(_decode_proto))}
_STREAM_DECODERS = {b"application/connect+json": _enveloped(decode_json),
                    b"application/connect+proto": _enveloped(_decode_proto),
                    **dict.fromkeys(_GRPC_WEB, _enveloped(_decode_proto))}
_QUERY_DECODERS = {"json": lambda raw, input_cls: decode_json(raw or b"null", input_cls), "proto": _decode_proto}


def _connect_error_body(error: TradewireError) -> bytes:
    details = [{"type": d.TypeName(), "value": base64.b64encode(d.value).decode().rstrip("=")} for d in error.details()]
    return json.dumps({"code": CONNECT_CODE[error.code].value, "message": error.message, "details": details}).encode()


class ConnectCompat:
    """ASGI middleware in front of the Connect application (see module docstring)."""

    def __init__(self, app, max_body_bytes: int, record_refused: RecordRefused | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.record_refused = record_refused
        self._inputs = {rpc.name: message_factory.GetMessageClass(rpc.descriptor.input_type)
                        for rpc in RPCS if not rpc.client_streaming and not rpc.server_streaming}
        self._stream_inputs = {rpc.name: message_factory.GetMessageClass(rpc.descriptor.input_type)
                               for rpc in RPCS if rpc.server_streaming and not rpc.client_streaming}
        self._streams = frozenset(rpc.name for rpc in RPCS if rpc.server_streaming)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = [(k, self._normalize(v) if k == b"content-type" else v) for k, v in scope["headers"]]
        scope = {**scope, "headers": headers}
        method_name = scope["path"].rsplit("/", 1)[-1]  # mounted at the service's path
        content_type = dict(headers).get(b"content-type", b"")
        if content_type in _GRPC_WEB_TEXT:
            return await self._grpc_web_text(scope, receive, send)
        streaming = method_name in self._streams
        if streaming:
            input_cls, decode = self._stream_inputs.get(method_name), _STREAM_DECODERS.get(content_type)
        else:
            input_cls, decode = self._inputs.get(method_name), _BODY_DECODERS.get(content_type)
        run = self._stream_until_disconnect if streaming else self.app
        if input_cls is None:  # TradeSession (the adapter refuses it), or no such method: connect-python answers
            return await run(scope, receive, send)
        try:
            if scope["method"] == "GET" and not streaming:
                _check_query(scope, input_cls)
                return await self.app(scope, receive, send)
            if decode is None:  # a content type connect-python refuses (415)
                return await run(scope, receive, send)
            body = await self._read_body(receive)
            plain = body if streaming else _content_decoded(body, dict(headers), self.max_body_bytes)
            if plain is not None:
                decode(plain, input_cls)
        except TradewireError as error:
            return await self._refuse(scope, send, error, content_type, streaming)
        if streaming:
            await self._stream_until_disconnect(scope, _replaying(body, receive), send)
        else:
            await self._unary_until_disconnect(scope, _replaying(body, receive), send, receive)

    async def _grpc_web_text(self, scope, receive, send) -> None:
        """gRPC-Web's text mode (grpc-web's JavaScript client by default), which connect-python
        does not speak: the body is base64, both ways. Served as binary gRPC-Web in between;
        each response chunk is encoded on its own (padded), which text-mode clients decode."""
        async def text_send(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [
                    (k, _TEXT_CONTENT_TYPE if k == b"content-type" else v)
                    for k, v in message.get("headers", ()) if k != b"content-length"]}
            elif message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": base64.b64encode(message["body"])}
            await send(message)

        binary = b"application/grpc-web+proto"
        try:
            body = _b64_chunks(await self._read_body(receive, limit=self.max_body_bytes * 4 // 3 + 4))
        except TradewireError as error:
            return await self._refuse(scope, text_send, error, binary, streaming=False)
        headers = [(k, binary if k == b"content-type" else v) for k, v in scope["headers"] if k != b"content-length"]
        await self({**scope, "headers": headers}, _replaying(body, receive), text_send)

    async def _read_body(self, receive, limit: int | None = None) -> bytes:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > (limit or self.max_body_bytes):
                raise TradewireError("PAYLOAD_TOO_LARGE", f"request body exceeds {self.max_body_bytes} bytes")
        return body

    async def _refuse(self, scope, send, error: TradewireError, content_type: bytes, streaming: bool) -> None:
        """Answer a call refused here in its protocol's error form; it is recorded as a call of
        its method, and its ids go back in the headers."""
        extra: list[tuple[bytes, bytes]] = []
        if self.record_refused is not None:
            ctx = _call_context(scope)
            self.record_refused(ctx, error)
            extra = [(name.encode(), value.encode()) for name, value in ctx.response_headers.items()]
        if content_type in _GRPC_WEB:
            await self._send_grpc_web_error(send, error, extra)
        elif streaming:
            await self._send_stream_error(send, error, content_type, extra)
        else:
            await self._send_error(send, error, 413 if error.reason == "PAYLOAD_TOO_LARGE" else 400, extra)

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
            await until_disconnect(self.app(scope, app_receive, tracking_send), wire_receive, lambda: completed)

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

        call = asyncio.ensure_future(self.app(scope, watched_receive, send))
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
        match = _CHARSET_UTF8.match(value.decode("latin-1"))
        return match.group(1).lower().encode() if match else value

    @staticmethod
    async def _send_grpc_web_error(send, error: TradewireError, extra: list[tuple[bytes, bytes]]) -> None:
        """A trailers-only gRPC-Web response: HTTP 200 with the status in the headers."""
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/grpc-web+proto"),
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


def _check_query(scope, input_cls) -> None:
    """A GET call's ``message`` query parameter must decode as its method's input."""
    # latin-1: the percent-decoded bytes as they are (a proto message is binary)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    decode = _QUERY_DECODERS.get(query.get("encoding", [""])[0])
    if decode is None or "message" not in query:
        return  # connect-python refuses what it cannot read
    text = query["message"][0]
    decode(_decode_base64(text) if query.get("base64", [""])[0] == "1" else text.encode("latin-1"), input_cls)


def _content_decoded(body: bytes, headers: dict[bytes, bytes], limit: int) -> bytes | None:
    """A unary body without its content encoding; None to leave it to connect-python (an
    encoding it may know, or bad gzip it answers for)."""
    encoding = headers.get(b"content-encoding", b"identity")
    return _gunzip(body, limit) if encoding == b"gzip" else body if encoding == b"identity" else None


def _call_context(scope) -> CallContext:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    client = scope.get("client")
    return CallContext(protocol=_protocol(headers.get("content-type", "")), method=scope["path"].rsplit("/", 1)[-1],
                       headers=headers, peer=f"{client[0]}:{client[1]}" if client else "")


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
    app = TradeExecutionServiceASGIApplication(ConnectAdapter(service), read_max_bytes=max_body_bytes)
    return ConnectCompat(app, max_body_bytes, record_refused)
