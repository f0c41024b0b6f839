"""A client that half-closes its connection once its request is sent (shutdown(SHUT_WR)) still
gets its answer on the HTTP/1.1 listener — a unary call, a trade, and pipelined requests — and
the gateway closes the connection after the last answer; a request cut off mid-way by the
half-close is not answered."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from support.gateway_process import GatewayProcess
from support.trading import SOL, unique

USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
HEALTH = b"GET /v1/health HTTP/1.1\r\nhost: t\r\n\r\n"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    process = GatewayProcess(tmp_path_factory.mktemp("half-close")).start()
    yield process
    assert process.stop() == 0, process.log_text()[-3000:]


def half_closed_exchange(gw: GatewayProcess, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send ``request``, half-close, and read until the gateway closes (bounded by a deadline)."""
    host, port = gw.http_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        deadline, received = time.monotonic() + timeout_s, b""
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
        raise AssertionError(f"the connection was not closed after the answer: {received[:300]!r}")


def statuses(raw: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]


def test_a_unary_call_half_closed_after_its_request_is_answered(gw):
    raw = half_closed_exchange(gw, HEALTH)
    assert statuses(raw) == [200], raw[:300]
    assert b'"status"' in raw


def test_a_trade_half_closed_after_its_request_is_answered_and_not_cancelled(gw):
    request_id = unique("half-close")
    body = json.dumps({"requestId": request_id, "mode": "TRADING_MODE_PAPER", "inputMint": SOL, "outputMint": USDC,
                       "amount": "0.001", "slippageBps": 100}).encode()
    raw = half_closed_exchange(gw, b"POST /v1/trades HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
                               + f"authorization: Bearer {gw.key('trader')}\r\n".encode()
                               + f"content-length: {len(body)}\r\n\r\n".encode() + body)
    assert statuses(raw) == [200], raw[:600]
    answer = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert answer["requestId"] == request_id and answer["status"] == "TRADE_STATUS_FILLED"


def test_pipelined_requests_half_closed_are_all_answered_in_order(gw):
    assert statuses(half_closed_exchange(gw, HEALTH * 3)) == [200, 200, 200]


def test_a_request_cut_off_by_the_half_close_is_not_answered(gw):
    cut_off = (b"POST /v1/trades HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
               + f"authorization: Bearer {gw.key('trader')}\r\ncontent-length: 100\r\n\r\n{{".encode())
    assert half_closed_exchange(gw, cut_off) == b""
