"""Findings of a security review of a running gateway, each a test that failed before its fix.

* A correlation id ending in a newline was taken as given (``re.match`` with ``$`` matches before
  a trailing newline): grpcio lets such a value in (HTTP/2 has no line framing) but refuses to send
  it back, so the caller got INTERNAL "Invalid metadata" for a call that had run — a trade that
  filled — and the newline reached the access log and the audit trail.
"""

from __future__ import annotations

import socket
import struct
import uuid

import h2.config
import h2.connection
import h2.events
import pytest

from support.ports import wait_until
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
SERVICE = "/tradewire.v1.TradeExecutionService/"


def raw_grpc_call(target: str, method: str, message: bytes, headers: list[tuple[bytes, bytes]],
                  timeout_s: float = 10.0) -> dict[bytes, bytes]:
    """One native gRPC call sent with h2, whose header values grpcio's own client would refuse
    to send: the response's headers and trailers together."""
    host, port = target.rsplit(":", 1)
    config = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                       normalize_outbound_headers=False, validate_inbound_headers=False)
    connection = h2.connection.H2Connection(config)
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        connection.initiate_connection()
        stream_id = connection.get_next_available_stream_id()
        connection.send_headers(stream_id, [
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", (SERVICE + method).encode()),
            (b":authority", b"x"), (b"content-type", b"application/grpc"), (b"te", b"trailers"), *headers])
        connection.send_data(stream_id, struct.pack(">BI", 0, len(message)) + message, end_stream=True)
        sock.sendall(connection.data_to_send())
        answer: dict[bytes, bytes] = {}
        while True:
            data = sock.recv(1 << 16)
            assert data, "the gateway closed the connection"
            for event in connection.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    answer.update(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    return answer
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {event.error_code}")
            sock.sendall(connection.data_to_send())


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_a_correlation_id_ending_in_a_newline_is_replaced_not_echoed(gateway, ending):
    request_id = f"sec-{uuid.uuid4().hex[:12]}"
    given = f"corr-{request_id}".encode() + ending
    trade = pb.TradeRequest(request_id=request_id, mode=pb.TRADING_MODE_PAPER, input_mint=SOL, output_mint=USDC,
                            amount="0.01", slippage_bps=100)
    answer = raw_grpc_call(gateway.grpc_target, "ExecuteTrade", trade.SerializeToString(), [
        (b"authorization", f"Bearer {gateway.key('alice')}".encode()), (b"x-correlation-id", given)])
    # the trade's answer reaches its caller (not INTERNAL "Invalid metadata" after it filled) ...
    assert answer.get(b"grpc-status") == b"0", answer
    correlation_id = answer[b"x-correlation-id"].decode()
    assert correlation_id != given.decode() and "\n" not in correlation_id and "\r" not in correlation_id
    # ... and no newline reaches the access log or the audit trail
    wait_until(lambda: gateway.audit_rows("tw_requests", trade_request_id=request_id), what="the audit row")
    rows = gateway.audit_rows("tw_requests", trade_request_id=request_id)
    assert all("\n" not in str(row.get("correlation_id", "")) for row in rows), rows
    assert f"corr-{request_id}\\" not in gateway.log_text()
    # a well-formed one is kept
    answer = raw_grpc_call(gateway.grpc_target, "HealthCheck", spb.HealthCheckRequest().SerializeToString(),
                           [(b"x-correlation-id", b"corr-2")])
    assert answer.get(b"grpc-status") == b"0" and answer[b"x-correlation-id"] == b"corr-2", answer
