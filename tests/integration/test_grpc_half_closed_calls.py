"""Native gRPC calls whose stream is half-closed before a whole request message came — HEADERS
with END_STREAM and no DATA, or a message cut short (its length prefix promises more than is
sent, or the prefix itself is cut) — are answered at once, like any undecodable message: no
credentials UNAUTHENTICATED; with valid ones INVALID_ARGUMENT MALFORMED_REQUEST with its
ErrorInfo; counted, audited and logged. Thousands of them on one connection leave nothing
behind while it stays open. Sent with h2: grpcio's own client always sends a message."""

from __future__ import annotations

import struct
import uuid

import pytest

from support.gateway_process import GatewayProcess
from support.raw_grpc import RawGrpcConnection, access_lines, credentials, error_reason
from support.trading import eventually, metric

METHODS = ["GetMarket", "ExecuteTrade", "StreamExecutionStatus"]
# The DATA frames sent after the HEADERS frame (none: END_STREAM on the HEADERS frame itself).
BODIES = {
    "no message": [],
    "message cut short": [struct.pack(">BI", 0, 10) + b"\x0a\x03"],
    "length prefix cut short": [b"\x00\x00"],
}


@pytest.fixture
def connection(gateway):
    raw = RawGrpcConnection(gateway.grpc_target)
    yield raw
    raw.close()


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
@pytest.mark.parametrize("method", METHODS)
async def test_a_call_without_a_whole_message_is_refused_as_malformed(gateway, connection, method, body):
    correlation_id = f"half-closed-{uuid.uuid4().hex}"
    labels = dict(method=method, protocol="grpc", code="INVALID_ARGUMENT")
    before = await metric(gateway, "tradewire_requests_total", **labels)

    answer = connection.call(method, credentials(gateway, correlation_id), body)

    assert answer.get("grpc-status") == "3", answer  # INVALID_ARGUMENT
    assert error_reason(answer) == "MALFORMED_REQUEST", answer
    assert answer.get("x-correlation-id") == correlation_id
    rows = await eventually(lambda: gateway.audit_rows("tw_requests", correlation_id=correlation_id),
                            what="the call's audit row")
    assert [(r["method"], r["protocol"], r["code"], r["reason"]) for r in rows] == [
        (method, "grpc", "INVALID_ARGUMENT", "MALFORMED_REQUEST")]
    [line] = await eventually(lambda: access_lines(gateway, correlation_id), what="the call's access log line")
    assert (line["code"], line["reason"], line["principal"]) == ("INVALID_ARGUMENT", "MALFORMED_REQUEST", "trader")
    assert await metric(gateway, "tradewire_requests_total", **labels) == before + 1


@pytest.mark.parametrize("method", METHODS)
async def test_credentials_are_checked_before_the_missing_message(gateway, connection, method):
    correlation_id = f"half-closed-anon-{uuid.uuid4().hex}"

    answer = connection.call(method, [("x-correlation-id", correlation_id)], [])

    assert answer.get("grpc-status") == "16", answer  # UNAUTHENTICATED
    assert error_reason(answer) == "AUTH_MISSING", answer
    rows = await eventually(lambda: gateway.audit_rows("tw_requests", correlation_id=correlation_id),
                            what="the call's audit row")
    assert [(r["method"], r["code"]) for r in rows] == [(method, "UNAUTHENTICATED")]


@pytest.mark.parametrize("method", METHODS)
async def test_a_call_whose_deadline_passes_before_its_message_is_recorded_as_such(gateway, connection, method):
    """Not half-closed, no message: grpcio ends the read when the deadline comes, as it does for
    a half-closed stream, but the call is recorded DEADLINE_EXCEEDED, not as a malformed one."""
    correlation_id = f"no-message-deadline-{uuid.uuid4().hex}"
    headers = [*credentials(gateway, correlation_id), ("grpc-timeout", "300m")]

    answer = connection.call(method, headers, [], half_close=False)

    assert answer.get("grpc-status") == "4", answer  # DEADLINE_EXCEEDED
    rows = await eventually(lambda: gateway.audit_rows("tw_requests", correlation_id=correlation_id),
                            what="the call's audit row")
    assert [(r["method"], r["code"], r["reason"]) for r in rows] == [
        (method, "DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED")]


async def test_many_half_closed_calls_on_one_connection_leave_nothing_behind(tmp_path):
    """Every call is answered while the connection stays open, and the tasks serving them end.
    (A gateway of its own: a rate limit that lets every call through, a task count no other
    test moves.)"""
    calls, batch_size = 2000, 200
    gateway = GatewayProcess(tmp_path / "gw", env={"TRADEWIRE_LIMITS__REQUESTS_PER_S": "100000",
                                                   "TRADEWIRE_LIMITS__BURST": str(2 * calls)}).start()
    connection = RawGrpcConnection(gateway.grpc_target)
    try:
        headers = credentials(gateway, f"half-closed-many-{uuid.uuid4().hex}")
        tasks_before = await metric(gateway, "tradewire_event_loop_tasks")
        answered: dict[int, dict] = {}
        for first in range(0, calls, batch_size):  # each batch's answers are read before the next is sent
            sent = {connection.send(METHODS[n % len(METHODS)], headers, [])
                    for n in range(first, first + batch_size)}
            answered.update(connection.answers(sent))

        assert len(answered) == calls
        assert {(answer.get("grpc-status"), error_reason(answer)) for answer in answered.values()} == {
            ("3", "MALFORMED_REQUEST")}
        await eventually(lambda: _tasks_at_most(gateway, tasks_before + 50),
                         what="the event loop's tasks back near where they were")
    finally:
        connection.close()
        assert gateway.stop() == 0, gateway.log_text()[-3000:]


async def _tasks_at_most(gateway, limit: float) -> bool:
    return await metric(gateway, "tradewire_event_loop_tasks") <= limit
