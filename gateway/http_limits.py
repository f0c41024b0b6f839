"""Limits on what one HTTP/1.1 connection may make the gateway hold: a hardened httptools protocol.

Why: uvicorn's httptools protocol (uvicorn 0.54, ``HttpToolsProtocol``) enforces none of them.

* Header size and count: httptools (llhttp) hands over a header only once it is complete and,
  until then, concatenates its pieces in Python — a header value that never ends is buffered
  without bound; uvicorn appends every header to the scope, so 300,000 headers are parsed and
  stored before the application even sees the request.
* Pipelining: uvicorn queues every request parsed from what it has read (``self.pipeline``);
  it pauses reading when a request is queued, but the running request's ``receive()`` resumes
  it, and one read of pipelined GETs is thousands of queued requests (scope, cycle, event):
  a client that sends requests and never reads the answers grows the process without bound.
* Timeouts: uvicorn has a keep-alive timeout only (armed after a response). A connection that
  never sends a byte, that drips its headers, or that declares a body and never finishes it
  is held until the file-descriptor limit.

What this protocol does (``[server]`` settings, core/config.py ServerConfig):

* ``max_header_bytes`` (URL + every header name and value) and ``max_headers``: a request over
  either is answered 431 and the connection closed; the excess is not buffered. Completed
  headers are counted exactly in the callbacks httptools calls anyway; a header still being
  received is bounded by counting the bytes read while its headers are incomplete (plus an
  allowance for the framing: ``: ``, CRLF, the request line), so at most ~8 KiB beyond the
  limit is ever held.
* ``header_timeout_s``: the request headers must be complete within it after the connection
  opened or after the previous response: otherwise 408 and close (closed silently if no byte
  of a request arrived). Idle keep-alive connections are closed after
  min(keep-alive timeout, header_timeout_s).
* ``body_timeout_s``: a request body must be complete within it after its headers: otherwise
  408 and close. Only the request body is timed: responses (SSE, NDJSON, Connect and gRPC-Web
  streams) may run as long as they like.
* ``max_pipelined_requests``: at most that many parsed-but-unanswered requests per connection
  (``room`` below: how many more it may take). httptools cannot stop in the middle of a buffer, so a read is fed whole only when it cannot
  complete more than ``room`` requests (a short read with fewer CRLFCRLF — every header
  section ends so — or a body of known length); otherwise it is fed in slices no longer than
  ``18 * room`` bytes (18 bytes is the shortest request llhttp accepts on a keep-alive
  connection: ``GET / HTTP/1.1\\r\\n\\r\\n``). When there is no room left, the rest of the read is
  kept (one read at most) and the transport paused until answers drain — uvicorn's own
  ``resume_reading()`` calls are then ignored.

A refusal (431/408) is a small JSON google.rpc.Status, as every HTTP error of the gateway; it
is written after the answers to the requests before it, then the connection is half-closed
and what the client still sends is read and discarded for a moment (``LINGER_S``, at most
``LINGER_BYTES``) so that the client gets the answer rather than a reset. An application answer
that closes the connection (``connection: close``: the client asked, or the gateway is draining)
before the request's body has all arrived lingers the same way: uvicorn closes at once, and a
socket closed with unread data is reset — the client loses the answer it was reading.

Normal requests cost a few attribute updates and length additions in callbacks httptools
already makes, and a timer only when headers or a body span several reads.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from tradewire.core.context import Protocol
from tradewire.gateway.asgi_scope import scope_peer

log = logging.getLogger("tradewire.http")

# The shortest request llhttp completes on a keep-alive connection (b"GET / HTTP/1.1\r\n\r\n");
# an HTTP/0.9 request line is shorter, but it ends the connection's requests.
MIN_REQUEST_BYTES = 18
# After a refusal: how long, and how much, of what the client still sends is read and dropped.
LINGER_S = 2.0
LINGER_BYTES = 1 << 20
# Allowance for the framing bytes of a header section counted as read (request line, ": ",
# CRLFs), which max_header_bytes does not count.
_FRAMING_PER_HEADER = 4
_FRAMING_FIXED = 1024

_IDLE, _HEADERS, _BODY = 0, 1, 2
_END_OF_HEADERS = b"\r\n\r\n"
_SCAN_MAX = 8192  # reads up to this long (past a known body) are searched for it rather than sliced


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_pipelined_requests: int = 16

    @classmethod
    def from_server_config(cls, server: Any) -> HttpLimits:
        return cls(max_header_bytes=server.max_header_bytes, max_headers=server.max_headers,
                   header_timeout_s=server.header_timeout_s, body_timeout_s=server.body_timeout_s,
                   max_pipelined_requests=server.max_pipelined_requests)


def protocol_class(limits: HttpLimits, recorder: Any = None) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` enforcing ``limits``; ``recorder``
    (core's Recorder) counts and logs the requests it refuses, which never reach the app."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,),
                {"limits": limits, "_bodies": _refusal_bodies(limits), "recorder": recorder})


def _refusal_bodies(limits: HttpLimits) -> dict[str, bytes]:
    """The JSON bodies of the refusals, google.rpc.Status as every HTTP error of the gateway."""
    from tradewire.core.errors import TradewireError
    from tradewire.gateway.errors import status_json

    def body(reason: str, message: str) -> bytes:
        return orjson.dumps(status_json(TradewireError(reason, message)))

    return {
        "headers_too_large": body(
            "PAYLOAD_TOO_LARGE", f"request header fields too large: at most {limits.max_headers} headers "
                                 f"and {limits.max_header_bytes} bytes of URL and headers"),
        "headers_timeout": body(
            "DEADLINE_EXCEEDED", f"request headers not received within {limits.header_timeout_s:g}s"),
        "body_timeout": body(
            "DEADLINE_EXCEEDED", f"request body not received within {limits.body_timeout_s:g}s"),
    }


class _TooLarge(Exception):
    """Raised in a parser callback to stop parsing a request whose headers are too large."""


class _Flow(FlowControl):
    """uvicorn's flow control, whose ``resume_reading()`` (called by every ``receive()`` and
    after every response) does nothing while the protocol holds reading back."""

    held = False

    def resume_reading(self) -> None:
        if not self.held:
            super().resume_reading()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: HttpLimits = HttpLimits()
    _bodies: dict[str, bytes] | None = None
    recorder: Any = None  # core's Recorder (see protocol_class)

    def __init__(self, config, server_state, app_state, _loop=None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = self.limits
        self._max_header_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        self._raw_header_cap = (limits.max_header_bytes + _FRAMING_PER_HEADER * limits.max_headers
                                + _FRAMING_FIXED)
        self._header_timeout = limits.header_timeout_s
        self._body_timeout = limits.body_timeout_s
        self._max_pipelined = limits.max_pipelined_requests
        # An idle keep-alive connection is one whose next request has not come: no longer
        # than the header timeout.
        self.timeout_keep_alive = min(self.timeout_keep_alive, limits.header_timeout_s)
        # the request being parsed
        self._phase = _IDLE
        self._seq = 0  # counts requests begun, to tell a read that stayed in one request's headers
        self._header_size = 0  # URL + names + values of the completed headers
        self._header_count = 0
        self._raw_header_bytes = 0  # bytes read while its headers stayed incomplete
        self._body_left = 0  # of a Content-Length body
        self._chunked = False
        # timers
        self._anchor = 0.0  # when the connection opened / the last response ended
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        # holding back, refusing
        self._stash: bytes | None = None  # read but not parsed (pipelining limit); not None = held
        self._refusal: str | None = None  # set by a callback that stopped the parser
        self._deferred: tuple[int, str] | None = None  # a refusal answered after earlier requests
        self._discarding = False
        self._discarded = 0
        self._running = None  # the request whose ASGI task was started last

    # -- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _Flow(transport)
        self._anchor = self.loop.time()
        self._header_timer = self.loop.call_at(self._anchor + self._header_timeout, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._stash = None
        super().connection_lost(exc)
        # uvicorn tells only the newest request (self.cycle) that the client is gone; with
        # pipelining the one being answered is an earlier one, which would then write to the
        # closed transport ("Exception in ASGI application"). It is told too: its answer is
        # dropped, and a receive() waiting in it returns http.disconnect.
        running = self._running
        if running is not None and running is not self.cycle and not running.response_complete:
            running.disconnected = True
            running.message_event.set()

    def shutdown(self) -> None:
        if self._discarding:
            self.transport.close()
        else:
            super().shutdown()

    def data_received(self, data: bytes) -> None:
        if self._discarding or self._deferred is not None:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            return
        if self.timeout_keep_alive_task is not None:
            self._unset_keepalive_if_required()
        if self._stash is not None:  # a read already under way when reading was paused
            self._stash += data
            return
        self._feed(data)
        if self._phase != _IDLE:
            self._arm_timers()

    # -- feeding the parser ---------------------------------------------------------------------

    def _unanswered(self) -> int:
        """Requests parsed (headers complete) whose response is not complete."""
        running = self._running
        return len(self.pipeline) + (0 if running is None or running.response_complete else 1)

    def _start_asgi_task(self, cycle, app) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def _feed(self, data: bytes) -> None:
        n, off, view = len(data), 0, None
        while off < n:
            running = self._running
            room = self._max_pipelined - len(self.pipeline) - (
                0 if running is None or running.response_complete else 1)
            if room <= 0:
                self._hold(data if off == 0 else bytes(view[off:]))
                return
            # A body of known length completes no request; after it, at most `room` requests
            # can complete in 18 * room bytes, and at most one per CRLFCRLF that ends in the
            # bytes (every header section ends so), plus one begun by the previous read.
            body = self._body_left if self._phase == _BODY and self._body_left > 0 else 0  # chunked: < 0
            step = body + MIN_REQUEST_BYTES * room
            if off == 0 and (n <= step or n <= body or (
                    n - body <= _SCAN_MAX and data.count(_END_OF_HEADERS, body) < room)):
                piece = data
            else:
                if view is None:
                    view = memoryview(data)
                piece = view[off:off + step]
            seq, phase = self._seq, self._phase
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                self._cancel_timers()
                self._phase = _IDLE  # the connection is no longer HTTP/1.1's: nothing to time
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            except httptools.HttpParserError:
                if self._refusal is not None:
                    self._refuse(431, self._refusal)
                    return
                msg = "Invalid HTTP request received."
                # at debug, as the other refusals here: any client can send these, as many as it likes
                log.debug("HTTP request refused", extra={"status": 400, "why": "not HTTP/1.1", "client": self.client})
                self._cancel_timers()
                self.send_400_response(msg)
                return
            off += len(piece)
            if phase == _HEADERS and self._phase == _HEADERS and seq == self._seq:
                # All of it belonged to a header section still incomplete (e.g. one endless value).
                self._raw_header_bytes += len(piece)
                if self._raw_header_bytes > self._raw_header_cap:
                    self._refuse(431, "headers_too_large")
                    return
            if self._deferred is not None or self._discarding or self.transport.is_closing():
                return

    def _hold(self, rest: bytes) -> None:
        """No room for another request: keep the rest of the read, stop reading."""
        self._stash = rest
        self.flow.held = True
        self.flow.pause_reading()
        if self._body_timer is not None:  # a body we are not reading is not late
            self._body_timer.cancel()
            self._body_timer = None

    def _unhold(self) -> None:
        rest, self._stash = self._stash, None
        self.flow.held = False
        if rest:
            self._feed(rest)
        if self._stash is None and not (self._discarding or self._deferred is not None
                                        or self.transport.is_closing()):
            self.flow.resume_reading()
            self._arm_timers()

    # -- parser callbacks (counting only) -------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEADERS
        self._seq += 1
        self._header_size = self._header_count = self._raw_header_bytes = self._body_left = 0
        self._chunked = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._header_size += len(url)
        if self._header_size > self._max_header_bytes:
            self._refusal = "headers_too_large"
            raise _TooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        elif name == b"content-length" and value.isdigit():
            self._body_left = int(value)
        elif name == b"transfer-encoding":
            self._chunked = True
        self.headers.append((name, value))
        self._header_count += 1
        self._header_size += len(name) + len(value)
        if self._header_count > self._max_headers or self._header_size > self._max_header_bytes:
            self._refusal = "headers_too_large"
            raise _TooLarge()

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()
        if self._body_left or self._chunked:  # its answer may come before its body has all arrived
            self.cycle.transport = _LingeringClose(self, self.cycle)

    def on_body(self, body: bytes) -> None:
        self._body_left -= len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # uvicorn's, plus: the refusal waiting for this answer, reading held back, timers.
        self.server_state.total_requests += 1
        if self.transport.is_closing() or self._discarding:
            return
        self._unset_keepalive_if_required()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        if self._deferred is not None:
            if not self._unanswered():
                self._send_refusal(*self._deferred)
            return
        if self._stash is not None:
            self._unhold()
            if self._discarding or self._deferred is not None or self.transport.is_closing():
                return
        else:
            self.flow.resume_reading()
        if not self._unanswered():
            self._anchor = self.loop.time()
            if self._phase == _IDLE:
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler)
            elif self._phase == _HEADERS:  # the next request has begun: its headers are due
                if self._header_timer is not None:
                    self._header_timer.cancel()
                self._header_timer = self.loop.call_at(self._anchor + self._header_timeout,
                                                       self._header_timed_out)

    # -- timers ---------------------------------------------------------------------------------

    def _arm_timers(self) -> None:
        """After a read: time a body or a header section left incomplete by it."""
        phase = self._phase
        if phase == _BODY:
            if self._body_timer is None and self._stash is None and self.cycle is not None \
                    and not self._discarding and self._deferred is None:
                self._body_timer = self.loop.call_later(self._body_timeout, self._body_timed_out)
        elif phase == _HEADERS:
            # Due header_timeout_s after the previous response: armed then if one was running.
            if self._header_timer is None and not self._unanswered() and not self._discarding:
                self._header_timer = self.loop.call_at(self._anchor + self._header_timeout,
                                                       self._header_timed_out)

    def _cancel_timers(self) -> None:
        for name in ("_header_timer", "_body_timer"):
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)
        self._unset_keepalive_if_required()

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._discarding or self.transport.is_closing():
            return
        if self._phase == _HEADERS:
            self._refuse(408, "headers_timeout")
        elif self._phase == _IDLE and not self._unanswered() and self._stash is None:
            log.debug("closing an HTTP connection that sent no request", extra={"client": self.client})
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self._phase != _BODY or self._discarding or self.transport.is_closing():
            return
        cycle = self.cycle
        if self.pipeline and self.pipeline[0][0] is cycle:  # queued: answered after the others
            self.pipeline.popleft()
            self._refuse(408, "body_timeout")
        elif cycle.response_started:  # answered already (or answering): nothing more can be said
            self._cancel_timers()
            self.transport.close()
        else:  # the application is waiting for the body: it is told the client is gone
            cycle.disconnected = True
            cycle.message_event.set()
            self._send_refusal(408, "body_timeout")

    # -- refusing -------------------------------------------------------------------------------

    def _refuse(self, status: int, what: str) -> None:
        """Answer ``status`` (after the answers to the requests before, if any) and close."""
        self._refusal = None
        self._cancel_timers()
        self._stash = None
        if self._unanswered():
            self._deferred = (status, what)
            self.flow.held = True
            self.flow.pause_reading()
        else:
            self._send_refusal(status, what)

    def _send_refusal(self, status: int, what: str) -> None:
        log.debug("HTTP request refused", extra={"status": status, "why": what, "client": self.client})
        self._deferred = None
        self._stop_parsing()
        transport = self.transport
        if transport.is_closing():
            return
        bodies = self._bodies if self._bodies is not None else _refusal_bodies(self.limits)
        body = bodies[what]
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
                        b"\r\nconnection: close\r\n\r\n", body])
        transport.write(b"".join(content))
        self._linger()
        if what == "headers_too_large":  # (once answered: nothing may stand between the refusal and its answer)
            self._record_unrouted(status)

    def _record_unrouted(self, status: int) -> None:
        """Counted and logged as a request no route took: the app never sees it."""
        recorder = self.recorder
        if recorder is None:
            return
        # (headers are refused only once the request line began: its method is known, its URL
        # as far as it was read)
        try:
            method = self.parser.get_method().decode("latin-1")
            path = self.url.split(b"?", 1)[0].decode("latin-1")
            recorder.unrouted(Protocol.HTTP_JSON, str(status), method, path, scope_peer({"client": self.client}))
        except Exception:  # the refusal stands (it is answered): only its record is missing
            log.exception("could not record a refused request")

    def _close_answered(self, cycle) -> None:
        """uvicorn closing the connection after ``cycle``'s answer: at once when its request has
        all arrived, else only once the client has stopped sending (see :meth:`_linger`)."""
        if cycle.more_body and not self.transport.is_closing():
            self._stop_parsing()
            self._linger()
        else:
            self.transport.close()

    def _stop_parsing(self) -> None:
        """What the client sends from now on is read and dropped: the connection is ending."""
        self._discarding = True
        self._stash = None
        self._cancel_timers()

    def _linger(self) -> None:
        """Half-close, and drop what still comes for a moment: closing with unread data would
        reset the connection, and the client might lose the answer."""
        transport = self.transport
        if not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except (OSError, RuntimeError):
            transport.close()
            return
        self.flow.held = False
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_S, transport.close)


class _LingeringClose:
    """A request's transport as uvicorn's cycle uses it (``write``, ``is_closing``, ``close``),
    whose ``close()`` is the protocol's :meth:`LimitedHttpToolsProtocol._close_answered`."""

    __slots__ = ("write", "is_closing", "_protocol", "_cycle")

    def __init__(self, protocol: LimitedHttpToolsProtocol, cycle) -> None:
        self.write = protocol.transport.write
        self.is_closing = protocol.transport.is_closing
        self._protocol = protocol
        self._cycle = cycle

    def close(self) -> None:
        self._protocol._close_answered(self._cycle)
