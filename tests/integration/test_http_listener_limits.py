"""The HTTP/1.1 listener's own limits (gateway/http_limits.py), seen from raw sockets against
a real gateway: header size and count (431), header and body timeouts (408, or a silent close
when nothing was sent), and pipelining that cannot grow the process — while keep-alive,
pipelined answers in order, slow-but-timely and chunked bodies, and long streams still work.

The limits are made small (``[server]`` settings through TRADEWIRE_SERVER__* variables) so
every case takes about a second."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from pathlib import Path

import pytest

from support.gateway_process import GatewayProcess
from support.trading import eventually, metric

MAX_HEADER_BYTES = 4096
MAX_HEADERS = 20
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
MAX_PIPELINED = 4
AWAIT_TRADE_S = 2.5  # a stream opened for an unknown trade lasts this long: longer than the timeouts
LIMITS = {
    "TRADEWIRE_SERVER__MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
    "TRADEWIRE_SERVER__MAX_HEADERS": str(MAX_HEADERS),
    "TRADEWIRE_SERVER__HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "TRADEWIRE_SERVER__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
    "TRADEWIRE_SERVER__MAX_PIPELINED_REQUESTS": str(MAX_PIPELINED),
}
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
HEALTH = b"GET /v1/health HTTP/1.1\r\nhost: t\r\n\r\n"


def start_gateway(workdir: Path) -> GatewayProcess:
    return GatewayProcess(workdir, env=LIMITS,
                          streams_config=f"[streams]\nawait_trade_s = {AWAIT_TRADE_S}\n").start()


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    process = start_gateway(tmp_path_factory.mktemp("http-limits"))
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


@pytest.fixture
def fresh_gw(tmp_path):
    """A gateway of its own, for the memory measurements."""
    process = start_gateway(tmp_path)
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


# -- a raw HTTP/1.1 connection ---------------------------------------------------------------------

class Conn:
    def __init__(self, gateway: GatewayProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", gateway.http_port), timeout=10)
        self.buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Reads what comes before ``deadline``; False at the end of the stream."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer in time")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        except socket.timeout:
            raise TimeoutError("no answer in time") from None
        self.buf += data
        return bool(data)

    def _line(self, deadline: float) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill(deadline):
                raise EOFError("connection closed")
        line, _, rest = bytes(self.buf).partition(b"\r\n")
        self.buf = bytearray(rest)
        return line

    def _exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise EOFError("connection closed")
        data, self.buf = bytes(self.buf[:n]), self.buf[n:]
        return data

    def response(self, timeout_s: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """The next response: (status, headers, body), chunked or with a Content-Length."""
        deadline = time.monotonic() + timeout_s
        status = int(self._line(deadline).split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while line := self._line(deadline):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._line(deadline).split(b";")[0], 16):
                body += self._exact(size, deadline)
                self._exact(2, deadline)
            while self._line(deadline):  # trailers
                pass
        else:
            body = self._exact(int(headers.get("content-length", "0")), deadline)
        return status, headers, body

    def wait_closed(self, timeout_s: float = 10.0) -> bytes:
        """Waits for the server to close; returns what came before the end."""
        deadline = time.monotonic() + timeout_s
        while self._fill(deadline):
            pass
        data, self.buf = bytes(self.buf), bytearray()
        return data

    def quiet_for(self, seconds: float) -> bool:
        """True if nothing (neither data nor a close) comes for ``seconds``."""
        readable, _, _ = select.select([self.sock], [], [], seconds)
        return not readable


def assert_error(status: int, headers: dict[str, str], body: bytes, expected: int, code: int, reason: str) -> None:
    assert status == expected, body
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    doc = json.loads(body)
    assert doc["code"] == code, doc
    assert doc["details"][0]["reason"] == reason, doc


def rss_kib(gateway: GatewayProcess, field: str = "VmRSS") -> int:
    """The gateway's resident set size (VmRSS), or its peak so far (VmHWM), in KiB."""
    for line in Path(f"/proc/{gateway.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} line")


def trade_body() -> bytes:
    return json.dumps({"requestId": f"lim-{time.monotonic_ns()}", "mode": "TRADING_MODE_PAPER", "inputMint": SOL,
                       "outputMint": USDC, "amount": "0.01", "slippageBps": 50}).encode()


def push_until_answered(gateway: GatewayProcess, head: bytes, filler: bytes, cap: int) -> tuple[int, bytes]:
    """Sends ``head`` then ``filler`` over and over (a request that never ends) until the server
    answers or closes, or ``cap`` bytes went; returns (bytes sent, what the server sent)."""
    sock = socket.create_connection(("127.0.0.1", gateway.http_port), timeout=10)
    sock.setblocking(False)
    sent, got, pending = 0, bytearray(), head
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if sent < cap and not got else [], [], 1.0)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                got += data
                continue
            if not writable:
                if got or sent >= cap:
                    break  # answered and nothing more comes, or cap reached and not answered
                continue
            try:
                n = sock.send(pending or filler)
            except (BrokenPipeError, ConnectionResetError):
                break
            except BlockingIOError:
                continue
            sent += n
            pending = pending[n:] if pending else b""
    finally:
        sock.close()
    return sent, bytes(got)


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


# -- header size and count ----------------------------------------------------------------------------

def test_headers_up_to_the_byte_limit_pass_and_one_byte_more_is_431(gw):
    # URL + names + values: "/v1/health" (10) + "host" "t" (5) + "x-pad" (5) + the value
    fits = MAX_HEADER_BYTES - 20
    conn = Conn(gw)
    conn.send(b"GET /v1/health HTTP/1.1\r\nhost: t\r\nx-pad: " + b"a" * fits + b"\r\n\r\n")
    assert conn.response()[0] == 200
    conn.send(b"GET /v1/health HTTP/1.1\r\nhost: t\r\nx-pad: " + b"a" * (fits + 1) + b"\r\n\r\n")
    assert_error(*conn.response(), 431, 8, "PAYLOAD_TOO_LARGE")
    assert conn.wait_closed() == b""
    conn.close()


def test_too_many_headers_is_431_without_parsing_them_all(gw):
    conn = Conn(gw)
    conn.send(b"GET /v1/health HTTP/1.1\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(MAX_HEADERS)) + b"\r\n")
    assert conn.response()[0] == 200  # host-less, exactly MAX_HEADERS headers
    conn.close()

    # 300,000 headers (~4 MB): answered at the first one too many, the rest never read
    many = b"GET /v1/health HTTP/1.1\r\n" + b"x-h: v\r\n" * 300_000
    sent, answer = push_until_answered(gw, many, b"x-h: v\r\n", cap=len(many))
    status, headers, body = parse(answer)
    assert_error(status, headers, body, 431, 8, "PAYLOAD_TOO_LARGE")


def test_a_header_that_never_ends_is_431_and_not_buffered(fresh_gw):
    before = rss_kib(fresh_gw, "VmHWM")
    results: list[tuple[int, bytes]] = []

    def one() -> None:
        results.append(push_until_answered(fresh_gw, b"GET /v1/health HTTP/1.1\r\nhost: t\r\nx-big: ",
                                           b"a" * 65536, cap=40 << 20))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    grown_mib = (rss_kib(fresh_gw, "VmHWM") - before) / 1024  # the peak: what it held at worst
    print(f"endless header x2: peak RSS {before // 1024} MiB -> +{grown_mib:.1f} MiB; "
          f"sent {[s for s, _ in results]}")
    assert len(results) == 2
    for sent, answer in results:
        assert answer.startswith(b"HTTP/1.1 431 "), (sent, answer[:200])
        assert sent < 40 << 20  # the server stopped reading: the client could not send it all
    assert grown_mib < 20


# -- timeouts -------------------------------------------------------------------------------------

def test_a_connection_that_sends_nothing_is_closed_silently(gw):
    conn = Conn(gw)
    started = time.monotonic()
    assert conn.wait_closed(timeout_s=HEADER_TIMEOUT_S + 5) == b""
    assert HEADER_TIMEOUT_S * 0.8 <= time.monotonic() - started
    conn.close()


def test_dripped_headers_get_408_at_the_header_timeout(gw):
    conn = Conn(gw)
    started = time.monotonic()
    conn.send(b"GET /v1/health HTTP/1.1\r\n")
    answer = b""
    while not answer and time.monotonic() - started < HEADER_TIMEOUT_S + 5:
        conn.send(b"x")  # one byte of a header name every 0.2 s, each well within any read timeout
        if not conn.quiet_for(0.2):
            answer = conn.wait_closed()
    assert_error(*parse(answer), 408, 4, "DEADLINE_EXCEEDED")
    assert HEADER_TIMEOUT_S * 0.8 <= time.monotonic() - started < HEADER_TIMEOUT_S + 3
    conn.close()


def test_a_body_never_finished_gets_408_at_the_body_timeout(gw):
    conn = Conn(gw)
    started = time.monotonic()
    conn.send(b"POST /v1/trades HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
              b"authorization: Bearer " + gw.key("bob").encode() + b"\r\ncontent-length: 500\r\n\r\n{\"req")
    assert_error(*conn.response(timeout_s=BODY_TIMEOUT_S + 5), 408, 4, "DEADLINE_EXCEEDED")
    assert BODY_TIMEOUT_S * 0.8 <= time.monotonic() - started < BODY_TIMEOUT_S + 3
    assert conn.wait_closed() == b""
    conn.close()


def test_after_a_response_the_next_headers_are_due_within_the_timeout(gw):
    conn = Conn(gw)
    conn.send(HEALTH)
    assert conn.response()[0] == 200
    started = time.monotonic()
    conn.send(b"GET /v1/health HTTP/1.1\r\nhost:")
    assert_error(*conn.response(timeout_s=HEADER_TIMEOUT_S + 5), 408, 4, "DEADLINE_EXCEEDED")
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 3
    conn.close()

    idle = Conn(gw)  # and an idle keep-alive connection is closed, silently
    idle.send(HEALTH)
    assert idle.response()[0] == 200
    assert idle.wait_closed(timeout_s=HEADER_TIMEOUT_S + 5) == b""
    idle.close()


def test_keep_alive_and_slow_but_timely_requests_still_work(gw):
    conn = Conn(gw)
    for _ in range(3):  # each request well inside the timeouts, the connection kept between them
        conn.send(HEALTH)
        assert conn.response()[0] == 200
        assert conn.quiet_for(HEADER_TIMEOUT_S * 0.4)
    # headers in pieces, then a chunked body in pieces, all within the timeouts
    auth = b"authorization: Bearer " + gw.key("bob").encode() + b"\r\n"
    conn.send(b"POST /v1/trades HTTP/1.1\r\nhost: t\r\n")
    assert conn.quiet_for(HEADER_TIMEOUT_S * 0.3)
    conn.send(auth + b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
    body = trade_body()
    for part in (body[:10], body[10:40], body[40:]):
        assert conn.quiet_for(BODY_TIMEOUT_S * 0.2)
        conn.send(b"%x\r\n%s\r\n" % (len(part), part))
    conn.send(b"0\r\n\r\n")
    status, _, answer = conn.response()
    assert status == 200, answer
    assert json.loads(answer)["status"] == "TRADE_STATUS_FILLED"
    conn.close()


def test_a_large_allowed_body_in_many_reads_is_read_whole(gw):
    # max_body_bytes is 65536 in the test gateway: ~60 KB of JSON sent in slow pieces is read to
    # its end and answered by the application (not 408, not 413)
    body = json.dumps({"requestId": "x" * 60_000}).encode()
    conn = Conn(gw)
    conn.send(b"POST /v1/trades HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\nauthorization: Bearer "
              + gw.key("bob").encode() + b"\r\ncontent-length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), 15_000):
        assert conn.quiet_for(0.1)  # nothing yet: the body is not complete
        conn.send(body[i:i + 15_000])
    status, _, answer = conn.response()
    assert status == 400, answer  # the application's own verdict on a 60 KB request id
    assert json.loads(answer)["details"][0]["reason"] == "VALIDATION_FAILED"
    conn.close()


def test_an_answer_closing_the_connection_before_the_body_arrived_is_not_reset(gw):
    # The client says connection: close and is still sending a 512 KB body the gateway answers
    # without reading (404): the whole answer must arrive, then a clean end — not a reset, which
    # loses what the client had not read yet (a socket closed with unread data is reset).
    size = 512 * 1024
    head = (b"POST /nope HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % size)
    for attempt in range(20):  # the reset came in about one of two attempts
        sock = socket.create_connection(("127.0.0.1", gw.http_port), timeout=10)
        sock.sendall(head)
        pump = threading.Thread(target=_send_ignoring_errors, args=(sock, b"x" * size))
        pump.start()
        got = bytearray()
        try:
            while data := sock.recv(65536):
                got += data
        except ConnectionResetError:
            pytest.fail(f"attempt {attempt}: reset after {bytes(got[:120])!r}")
        finally:
            pump.join()
            sock.close()
        status, headers, answer = parse(bytes(got))
        assert status == 404 and headers["connection"] == "close", got
        assert json.loads(answer)["details"][0]["reason"] == "ROUTE_NOT_FOUND"


def test_requests_that_are_not_http_get_400_and_leave_no_warning_line(gw):
    before = gw.log_text().count('"level":"warning"')
    for garbage in (b"BREW /pot HTCPCP/1.0\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 4,
                    b"GET / HTTP/1.1\r\nbad header line\r\n\r\n"):
        conn = Conn(gw)
        conn.send(garbage)
        status, _, _ = conn.response()
        assert status == 400
        conn.close()
    # a scanner can send any number of these: they must not fill the warnings an operator reads
    assert gw.log_text().count('"level":"warning"') == before


def _send_ignoring_errors(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def test_streams_outlive_the_header_and_body_timeouts(gw):
    auth = b"authorization: Bearer " + gw.key("bob").encode() + b"\r\n"
    sse = Conn(gw)
    started = time.monotonic()
    sse.send(b"GET /v1/trades/never-made/status HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\n" + auth + b"\r\n")
    status, _, body = sse.response(timeout_s=AWAIT_TRADE_S + 10)
    assert time.monotonic() - started >= AWAIT_TRADE_S * 0.8
    assert status in (200, 404) and b"NOT_FOUND" in body.upper(), body
    sse.close()

    # a Connect server stream: its request body is complete at once, its answer takes long
    message = json.dumps({"requestId": "never-made-either"}).encode()
    connect = Conn(gw)
    started = time.monotonic()
    connect.send(b"POST /tradewire.v1.TradeExecutionService/StreamExecutionStatus HTTP/1.1\r\nhost: t\r\n"
                 b"content-type: application/connect+json\r\n" + auth
                 + b"content-length: %d\r\n\r\n" % (5 + len(message)) + b"\0" + len(message).to_bytes(4, "big") + message)
    status, _, body = connect.response(timeout_s=AWAIT_TRADE_S + 10)
    assert time.monotonic() - started >= AWAIT_TRADE_S * 0.8
    assert status == 200 and b"not_found" in body, body
    connect.close()


# -- pipelining -----------------------------------------------------------------------------------------

def test_pipelined_requests_are_all_answered_in_order(gw):
    # far more than max_pipelined_requests in one write: GETs, POSTs with a body (answered 401:
    # no credentials) and chunked POSTs, all answered, in order, on the one connection
    post = (b"POST /v1/trades HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 17\r\n\r\n"
            b'{"requestId":"x"}')
    chunked = (b"POST /v1/trades HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
               b'transfer-encoding: chunked\r\n\r\n8\r\n{"reques\r\n9\r\ntId":"y"}\r\n0\r\n\r\n')
    requests, expected = [], []
    for i in range(300):
        kind = i % 3
        requests.append((HEALTH, post, chunked)[kind])
        expected.append((200, 401, 401)[kind])
    conn = Conn(gw)
    conn.send(b"".join(requests))
    assert [conn.response()[0] for _ in requests] == expected
    conn.send(HEALTH)  # and the connection goes on
    assert conn.response()[0] == 200
    conn.close()


def test_a_pipelining_client_that_never_reads_cannot_grow_the_gateway(fresh_gw):
    before = rss_kib(fresh_gw)
    per_connection = 4 << 20
    payload = HEALTH * (per_connection // len(HEALTH))
    socks = [socket.create_connection(("127.0.0.1", fresh_gw.http_port), timeout=10) for _ in range(4)]
    sent = [0] * len(socks)
    for s in socks:
        s.setblocking(False)
    last_progress = time.monotonic()
    deadline = time.monotonic() + 60
    try:
        # send until everything went or the gateway stopped reading for 2 s (never reading answers)
        while time.monotonic() < deadline and time.monotonic() - last_progress < 2:
            _, writable, _ = select.select([], [s for i, s in enumerate(socks) if sent[i] < len(payload)], [], 0.5)
            if not writable and all(n >= len(payload) for n in sent):
                break
            for s in writable:
                i = socks.index(s)
                try:
                    n = s.send(payload[sent[i]:sent[i] + 262144])
                except BlockingIOError:
                    continue
                sent[i] += n
                last_progress = time.monotonic()
        grown_mib = (rss_kib(fresh_gw) - before) / 1024
        print(f"pipelining x4, {sum(sent) / 2**20:.1f} MiB sent: RSS {before // 1024} MiB -> +{grown_mib:.1f} MiB")
        assert grown_mib < 40
        # still serving other clients meanwhile
        other = Conn(fresh_gw)
        other.send(HEALTH)
        assert other.response()[0] == 200
        other.close()
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("ending", [b"GARBAGE \x00\x01 HTTP/9\r\n\r\n", b""], ids=["malformed", "client-leaves"])
async def test_a_connection_lost_under_pipelined_trades_logs_no_exception(gw, ending):
    # The connection ends (a malformed request after the trades, or the client leaving) while an
    # earlier pipelined request is still being answered: its answer is dropped quietly (uvicorn
    # marked only the newest request as disconnected, so the running one wrote to a closed
    # transport and was logged as "Exception in ASGI application").
    auth = b"authorization: Bearer " + gw.key("bob").encode() + b"\r\n"
    before = gw.log_text().count("Exception in ASGI application")
    for _ in range(6):
        trades = b"".join(b"POST /v1/trades HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n" + auth
                          + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                          for body in (trade_body() for _ in range(3)))
        sock = socket.create_connection(("127.0.0.1", gw.http_port), timeout=10)
        sock.sendall(trades + ending)
        if not ending:
            sock.close()
            continue
        try:
            while sock.recv(65536):  # until the gateway closes the connection
                pass
        finally:
            sock.close()
    # Every call that ran has answered (or tried to): the answer follows its end in the same task.
    await eventually(lambda: _no_http_call_running(gw), what="the pipelined calls' end")
    assert gw.log_text().count("Exception in ASGI application") == before


async def _no_http_call_running(gateway) -> bool:
    return await metric(gateway, "tradewire_requests_in_flight", protocol="http") == 0
