"""Server streams over HTTP/1.1: Server-Sent Events or newline-delimited JSON.

- ``Accept: text/event-stream`` → SSE: ``id: <sequence>`` (when the message has a positive
  ``sequence``, so EventSource resumes with ``Last-Event-ID``), ``data: <json>`` per
  message, ``event: error`` with google.rpc.Status JSON for a mid-stream error, and always
  a final ``event: end`` so a client can tell a clean close from a dropped connection (and
  stop EventSource from reconnecting).
- otherwise NDJSON, grpc-gateway's shape: ``{"result": <msg>}`` lines, ``{"error": <Status>}``
  for a mid-stream error.

The first message is awaited before the response starts, so an error raised before it is
an ordinary HTTP error. A client disconnect cancels the pump and closes the service's
async iterator (``aclose``) at once; nothing outlives the request. The call's deadline
(X-Server-Timeout) ends the stream with DEADLINE_EXCEEDED: a 504 before the first message,
a mid-stream error after it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from tradewire.core.errors import TradewireError, deadline_exceeded, internal_error
from tradewire.gateway.disconnect import ClientGone, wait_disconnect

from .codec import encode_message
from .responses import Send, error_body, header_list, send_error

log = logging.getLogger("tradewire.gateway")

SSE = b"text/event-stream"
NDJSON = b"application/x-ndjson"
_END = object()


def wants_sse(accept: str | None) -> bool:
    """True when ``Accept`` lists text/event-stream (with a non-zero q). Media types and
    parameter names are case-insensitive (RFC 9110): "Text/Event-Stream;Q=0" is one too."""
    if not accept or "text/event-stream" not in accept.lower():
        return False
    for item in accept.split(","):
        media, _, params = item.partition(";")
        if media.strip().lower() == "text/event-stream":
            for p in params.split(";"):
                name, _, value = p.partition("=")
                if name.strip().lower() == "q":
                    try:
                        return float(value) > 0
                    except ValueError:
                        return True
            return True
    return False


class Framer:
    """Bytes for each message / error / end, in one framing."""

    def __init__(self, sse: bool, has_sequence: bool, response_field: str = "") -> None:
        self.sse = sse
        self.has_sequence = has_sequence
        self.response_field = response_field  # JSON name of the binding's response_body, or ""
        self.content_type = SSE if sse else NDJSON

    def message(self, msg) -> bytes:
        data = encode_message(msg)
        if self.response_field:  # each message is that field, as a unary answer is
            data = orjson.dumps(orjson.loads(data).get(self.response_field))
        if not self.sse:
            return b'{"result":' + data + b"}\n"
        if self.has_sequence and msg.sequence > 0:
            return b"id: " + str(msg.sequence).encode() + b"\ndata: " + data + b"\n\n"
        return b"data: " + data + b"\n\n"

    def error(self, err: TradewireError) -> bytes:
        if not self.sse:
            return b'{"error":' + error_body(err) + b"}\n"
        return b"event: error\ndata: " + error_body(err) + b"\n\n"

    def end(self) -> bytes:
        return b"event: end\ndata: {}\n\n" if self.sse else b""


async def _close(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # a broken iterator must not turn a finished stream into an error
            log.exception("closing a stream iterator failed")


async def serve_stream(
    open_stream: Callable[[], Any],
    framer: Framer,
    send: Send,
    receive: Callable[[], Awaitable[dict]],
    response_headers: Mapping[str, str],
    report_error: Callable[[TradewireError, BaseException | None], None],
    timeout: float | None = None,
) -> None:
    """Runs one server stream until it ends, fails, the client goes away or ``timeout``
    (seconds: what is left of the call's deadline) passes."""
    pump = asyncio.ensure_future(_pump(open_stream, framer, _Response(send), response_headers, report_error, timeout))
    watcher = asyncio.ensure_future(wait_disconnect(receive))
    try:
        await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, watcher):
            task.cancel()
        await asyncio.gather(pump, watcher, return_exceptions=True)
    if not pump.cancelled() and pump.exception() is not None:
        raise pump.exception()


class _Response:
    """The stream's HTTP response: started once its 200 and headers are sent, ended once its
    last body message is (the stream's end, or an error answered in its place)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.ended = False

    async def send(self, message: dict) -> None:
        # noted first: a deadline that comes while the last message is written must not add another
        self.ended = message["type"] == "http.response.body" and not message.get("more_body", False)
        await self._send(message)

    async def start(self, headers: list[tuple[bytes, bytes]]) -> None:
        await self.send({"type": "http.response.start", "status": 200, "headers": headers})
        self.started = True

    async def emit(self, chunk: bytes, more: bool = True) -> None:
        try:
            await self.send({"type": "http.response.body", "body": chunk, "more_body": more})
        except OSError as exc:  # some servers raise once the peer is gone
            raise ClientGone() from exc


async def _pump(open_stream, framer: Framer, response: _Response, response_headers, report_error,
                timeout: float | None) -> None:
    """The stream, cut off when ``timeout`` passes (the service's iterator is cancelled or
    closed, so the call records DEADLINE_EXCEEDED) and ended with that error."""
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            await _relay(open_stream, framer, response, response_headers, report_error)
    except TimeoutError:
        if not deadline.expired():
            raise
        if response.ended:
            return
        err = deadline_exceeded()
        report_error(err, None)
        if response.started:
            await _finish_with_error(framer, response.emit, err)
        else:
            await send_error(response.send, err, response_headers)


async def _relay(open_stream, framer: Framer, response: _Response, response_headers, report_error) -> None:
    """Every message of the stream to the client, then its end (or its error)."""
    iterator = None
    send, emit = response.send, response.emit
    try:
        try:
            iterator = open_stream()
            if inspect.isawaitable(iterator):
                iterator = await iterator
            try:
                first = await iterator.__anext__()
            except StopAsyncIteration:
                first = _END
        except TradewireError as err:
            report_error(err, None)
            await send_error(send, err, response_headers)
            return
        except Exception as exc:
            log.exception("stream failed before its first message")
            err = internal_error()
            report_error(err, exc)
            await send_error(send, err, response_headers)
            return
        headers = [
            (b"content-type", framer.content_type),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *header_list(response_headers),
        ]
        await response.start(headers)
        msg = first
        while msg is not _END:
            await emit(framer.message(msg))
            try:
                msg = await iterator.__anext__()
            except StopAsyncIteration:
                msg = _END
        await emit(framer.end(), more=False)
    except ClientGone:
        return
    except TradewireError as err:
        report_error(err, None)
        await _finish_with_error(framer, emit, err)
    except Exception as exc:
        if not response.started:
            raise
        log.exception("stream failed mid-way")
        err = internal_error()
        report_error(err, exc)
        await _finish_with_error(framer, emit, err)
    finally:
        if iterator is not None:
            await _close(iterator)


async def _finish_with_error(framer: Framer, emit, err: TradewireError) -> None:
    try:
        await emit(framer.error(err) + framer.end(), more=False)
    except ClientGone:
        pass
