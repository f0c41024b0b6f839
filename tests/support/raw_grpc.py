"""A raw HTTP/2 client for the native gRPC port: calls sent as frames grpcio's own client never
sends (no message, several, cut short, reset, malformed headers), with what the gateway
records of them."""

from __future__ import annotations

import base64
import json
import socket

import h2.config
import h2.connection
import h2.errors
import h2.events
from google.rpc import error_details_pb2, status_pb2

SERVICE = "/tradewire.v1.TradeExecutionService/"
ANSWER_TIMEOUT_S = 10.0


class RawGrpcConnection:
    """One HTTP/2 connection to the gRPC port, on which calls are sent as raw frames."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._sock = socket.create_connection((host, int(port)), timeout=ANSWER_TIMEOUT_S)
        # (header values as given: grpcio itself is what refuses the malformed ones)
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False))
        self._h2.initiate_connection()
        self._flush()

    def send(self, method: str, headers: list[tuple[str, str]], data: list[bytes],
             half_close: bool = True, reset: bool = False) -> int:
        """Open a call to ``method`` and send each of ``data`` as one DATA frame, the last with
        END_STREAM when ``half_close`` (or the HEADERS frame, without data); then RST_STREAM
        (CANCEL) when ``reset``. Its stream id."""
        stream_id = self._h2.get_next_available_stream_id()
        self._h2.send_headers(stream_id, [
            (":method", "POST"), (":scheme", "http"), (":path", SERVICE + method), (":authority", "x"),
            ("content-type", "application/grpc"), ("te", "trailers"), *headers],
            end_stream=half_close and not data and not reset)
        for n, chunk in enumerate(data):
            self._h2.send_data(stream_id, chunk, end_stream=half_close and not reset and n == len(data) - 1)
        if reset:
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        self._flush()
        return stream_id

    def answers(self, stream_ids: set[int]) -> dict[int, dict]:
        """Each stream's response headers and trailers (one dict) and the DATA it got ("data"),
        once every one has ended."""
        answers: dict[int, dict] = {stream_id: {"data": b""} for stream_id in stream_ids}
        open_ids = set(stream_ids)
        while open_ids:
            received = self._sock.recv(1 << 16)
            assert received, "the gateway closed the connection"
            for event in self._h2.receive_data(received):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    answers[event.stream_id].update((k.decode(), v.decode()) for k, v in event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    answers[event.stream_id]["data"] += event.data
                    self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    open_ids.discard(event.stream_id)
            self._flush()
        return answers

    def call(self, method: str, headers: list[tuple[str, str]], data: list[bytes], half_close: bool = True) -> dict:
        stream_id = self.send(method, headers, data, half_close)
        return self.answers({stream_id})[stream_id]

    def _flush(self) -> None:
        self._sock.sendall(self._h2.data_to_send())

    def close(self) -> None:
        self._sock.close()


def error_reason(answer: dict) -> str:
    """The ErrorInfo reason in the answer's grpc-status-details-bin ("" without one)."""
    encoded = answer.get("grpc-status-details-bin", "")
    status = status_pb2.Status.FromString(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
    reasons = [error_details_pb2.ErrorInfo.FromString(d.value).reason for d in status.details
               if d.type_url.endswith("/google.rpc.ErrorInfo")]
    return (reasons or [""])[0]


def access_lines(gateway, correlation_id: str) -> list[dict]:
    lines = [json.loads(text) for text in gateway.log_text().splitlines() if text.startswith("{")]
    return [line for line in lines
            if line.get("logger") == "tradewire.access" and line.get("correlation_id") == correlation_id]


def credentials(gateway, correlation_id: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {gateway.key('trader')}"), ("x-correlation-id", correlation_id)]
