"""A call's deadline counts from its headers' arrival and covers receiving its body, on every
HTTP protocol: a client that sends a short deadline and then stalls its body is answered
DEADLINE_EXCEEDED once the deadline passes — in the form the protocol gives a deadline that
passes while the call runs — not when the body ends or the listener's body timeout fires.

Raw sockets: the headers and half of the body are sent, the rest never is."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from support.gateway_process import GatewayProcess
from support.ports import wait_until
from support.trading import trade, unique
from tradewire.v1 import service_pb2 as spb

DEADLINE_S = 0.2
BODY_TIMEOUT_S = 30.0  # the listener's: far past the deadline
ANSWER_WITHIN_S = 5.0  # the deadline passed long before
SERVICE = "/tradewire.v1.TradeExecutionService/"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    process = GatewayProcess(tmp_path_factory.mktemp("deadline-upload"),
                             env={"TRADEWIRE_SERVER__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


def _frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def _reason(status: status_pb2.Status) -> str:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


def _http_json_answer(status: int, headers: dict[str, str], body: bytes) -> tuple:
    answer = json_format.ParseDict(json.loads(body), status_pb2.Status(), ignore_unknown_fields=True)
    return status, answer.code, _reason(answer)  # google.rpc.Status: code 4 is DEADLINE_EXCEEDED


def _connect_error(error: dict) -> tuple:
    reasons = [d["debug"].get("reason") for d in error.get("details", ()) if d["type"].endswith("ErrorInfo")]
    return error["code"], reasons[0] if reasons else ""


def _connect_unary_answer(status: int, headers: dict[str, str], body: bytes) -> tuple:
    return (status, *_connect_error(json.loads(body)))


def _connect_stream_answer(status: int, headers: dict[str, str], body: bytes) -> tuple:
    """A Connect stream ends with its error in the end-of-stream frame (flags 0x02)."""
    assert body[:1] == b"\x02", body
    end = json.loads(body[5:5 + int.from_bytes(body[1:5], "big")])
    return (status, *_connect_error(end["error"]))


def _grpc_web_answer(status: int, headers: dict[str, str], body: bytes) -> tuple:
    """Trailers-only: the status in the headers."""
    raw = headers.get("grpc-status-details-bin", "")
    details = status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    return status, headers.get("grpc-status"), _reason(details)


@dataclass(frozen=True)
class Case:
    protocol: str  # as the call is recorded
    method: str
    path: str
    headers: dict[str, str]
    body: Callable[[str], bytes]  # from the call's request id
    answer: Callable[[int, dict[str, str], bytes], tuple]
    expected: tuple


CASES = {
    "http-json": Case("http", "ExecuteTrade", "/v1/trades",
                      {"content-type": "application/json", "x-server-timeout": str(DEADLINE_S)},
                      lambda rid: json_format.MessageToJson(trade(rid)).encode(),
                      _http_json_answer, (504, 4, "DEADLINE_EXCEEDED")),
    "connect-unary": Case("connect", "ExecuteTrade", SERVICE + "ExecuteTrade",
                          {"content-type": "application/proto", "connect-timeout-ms": str(int(DEADLINE_S * 1000))},
                          lambda rid: trade(rid).SerializeToString(),
                          _connect_unary_answer, (504, "deadline_exceeded", "DEADLINE_EXCEEDED")),
    "connect-stream": Case("connect", "StreamExecutionStatus", SERVICE + "StreamExecutionStatus",
                           {"content-type": "application/connect+proto",
                            "connect-timeout-ms": str(int(DEADLINE_S * 1000))},
                           lambda rid: _frame(spb.StreamExecutionStatusRequest(request_id=rid).SerializeToString()),
                           _connect_stream_answer, (200, "deadline_exceeded", "DEADLINE_EXCEEDED")),
    "grpc-web": Case("grpc-web", "ExecuteTrade", SERVICE + "ExecuteTrade",
                     {"content-type": "application/grpc-web+proto", "grpc-timeout": f"{int(DEADLINE_S * 1000)}m"},
                     lambda rid: _frame(trade(rid).SerializeToString()),
                     _grpc_web_answer, (200, "4", "DEADLINE_EXCEEDED")),
    "grpc-web-text": Case("grpc-web", "ExecuteTrade", SERVICE + "ExecuteTrade",
                          {"content-type": "application/grpc-web-text", "grpc-timeout": f"{int(DEADLINE_S * 1000)}m"},
                          lambda rid: base64.b64encode(_frame(trade(rid).SerializeToString())),
                          _grpc_web_answer, (200, "4", "DEADLINE_EXCEEDED")),
}


class Reader:
    """One HTTP/1.1 response off a raw socket, each read bounded by what is left of a deadline."""

    def __init__(self, sock: socket.socket, timeout_s: float) -> None:
        self.sock, self.buf = sock, bytearray()
        self.deadline = time.monotonic() + timeout_s

    def _fill(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer in time")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no answer in time") from None
        if not data:
            raise EOFError("connection closed before the answer")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, rest = bytes(self.buf).partition(b"\r\n")
        self.buf = bytearray(rest)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = bytes(self.buf[:n]), self.buf[n:]
        return data

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status = int(self._line().split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._line().split(b";")[0], 16):
                body += self._exact(size)
                self._exact(2)
            while self._line():  # trailers
                pass
        else:
            body = self._exact(int(headers.get("content-length", "0")))
        return status, headers, body


def _access_line(gateway: GatewayProcess, correlation_id: str) -> dict | None:
    for line in gateway.log_text().splitlines():
        if correlation_id in line and '"msg":"call"' in line:
            return json.loads(line)
    return None


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_stalled_upload_is_answered_deadline_exceeded_at_the_deadline(gw, name):
    case = CASES[name]
    request_id, correlation_id = unique(f"upload-{name}"), unique(f"upload-{name}")
    body = case.body(request_id)
    head = "".join(f"{k}: {v}\r\n" for k, v in {
        "host": "gateway", **case.headers, "authorization": f"Bearer {gw.key('alice')}",
        "x-correlation-id": correlation_id, "content-length": str(len(body))}.items())
    with socket.create_connection(("127.0.0.1", gw.http_port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(f"POST {case.path} HTTP/1.1\r\n{head}\r\n".encode() + body[:len(body) // 2])
        status, headers, answer = Reader(sock, timeout_s=2 * ANSWER_WITHIN_S).response()  # the rest never sent
        elapsed = time.monotonic() - started
    assert case.answer(status, headers, answer) == case.expected, (status, headers, answer)
    assert DEADLINE_S <= elapsed < ANSWER_WITHIN_S, elapsed
    assert headers.get("x-correlation-id") == correlation_id and headers.get("x-request-id"), headers

    # recorded as any call cut off by its deadline: its access line and its one audit row
    wait_until(lambda: _access_line(gw, correlation_id), what=f"access line of {correlation_id}")
    line = _access_line(gw, correlation_id)
    assert (line["code"], line["reason"]) == ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"), line
    wait_until(lambda: gw.audit_rows("tw_requests", correlation_id=correlation_id),
               what=f"audit row of {correlation_id}")
    rows = gw.audit_rows("tw_requests", correlation_id=correlation_id)
    assert [(r["code"], r["protocol"], r["method"], r["principal"]) for r in rows] == \
        [("DEADLINE_EXCEEDED", case.protocol, case.method, "alice")], rows
    assert rows[0]["request_id"] == headers["x-request-id"]

    if case.method == "ExecuteTrade":  # its request never arrived whole: nothing ran
        response = httpx.get(f"{gw.http_url}/v1/trades/{request_id}", timeout=10,
                             headers={"authorization": f"Bearer {gw.key('alice')}"})
        assert response.status_code == 404, response.text
    assert "Traceback" not in gw.log_text()
