"""Native gRPC request streams that are not one message then END_STREAM.

- A call that takes one message (unary, server-streaming) and sends more than one is refused
  INVALID_ARGUMENT MALFORMED_REQUEST, recorded like any malformed request, and runs nothing
  (gRPC-Web refuses the same bytes after its one frame; grpc-java answers "Too many requests").
  A call is served once its client half-closes: one that keeps its stream open after its
  message runs nothing, and ends at its deadline.
- A call grpcio refuses itself — a message flagged compressed without a grpc-encoding, one
  declared gzip that does not inflate, an unknown grpc-encoding, a malformed grpc-timeout — is
  answered INTERNAL by grpcio, whatever the gateway does; the gateway does not record it as a
  call it answered (it recorded INVALID_ARGUMENT MALFORMED_REQUEST for the first two), nor does
  it a call whose caller reset its stream before sending its message.

Sent with h2 as raw frames (grpcio's own client sends neither), and with grpcio's client
calling a unary method as request-streaming.
"""

from __future__ import annotations

import struct
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from support.raw_grpc import SERVICE, RawGrpcConnection, access_lines, credentials, error_reason
from support.trading import SOL, USDC, eventually, metric, trade
from tradewire.v1 import service_pb2 as spb


def frame(message: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">BI", 1 if compressed else 0, len(message)) + message


def get_trade(request_id: str) -> bytes:
    return spb.GetTradeRequest(request_id=request_id).SerializeToString()


async def recorded_once(gateway, correlation_id: str, method: str, code: str, reason: str) -> None:
    """The call has one audit row and one access log line, with ``code`` and ``reason``."""
    rows = await eventually(lambda: gateway.audit_rows("tw_requests", correlation_id=correlation_id),
                            what="the call's audit row")
    assert [(r["method"], r["protocol"], r["code"], r["reason"]) for r in rows] == [(method, "grpc", code, reason)]
    [line] = await eventually(lambda: access_lines(gateway, correlation_id), what="the call's access log line")
    assert (line["method"], line["code"], line["reason"], line["principal"]) == (method, code, reason, "trader")


async def assert_never_ran(gateway, request_id: str) -> None:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        get = channel.unary_unary(SERVICE + "GetTrade", request_serializer=bytes, response_deserializer=bytes)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await get(get_trade(request_id), metadata=credentials(gateway, f"check-{uuid.uuid4().hex}"), timeout=10)
    assert failed.value.code() is grpc.StatusCode.NOT_FOUND, failed.value


# -- more than one message ------------------------------------------------------------------


async def test_a_second_message_to_a_unary_call_is_refused_and_its_trade_never_runs(gateway):
    """grpcio's client calling ExecuteTrade as request-streaming, with two trades: the first
    used to run and be answered, the second was ignored."""
    correlation_id = f"two-messages-{uuid.uuid4().hex}"
    first, second = (f"two-messages-{n}-{uuid.uuid4().hex[:12]}" for n in (1, 2))
    labels = dict(method="ExecuteTrade", protocol="grpc", code="INVALID_ARGUMENT")
    before = await metric(gateway, "tradewire_requests_total", **labels)

    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        execute = channel.stream_unary(SERVICE + "ExecuteTrade", request_serializer=bytes,
                                       response_deserializer=bytes)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await execute(iter([trade(first).SerializeToString(), trade(second).SerializeToString()]),
                          metadata=credentials(gateway, correlation_id), timeout=10)

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, refused.value
    assert refused.value.details() == "the request holds more than one message: ExecuteTrade takes one"
    trailers = dict(refused.value.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    [info] = [error_details_pb2.ErrorInfo.FromString(d.value) for d in status.details
              if d.type_url.endswith("/google.rpc.ErrorInfo")]
    assert info.reason == "MALFORMED_REQUEST"
    assert trailers["x-correlation-id"] == correlation_id
    await recorded_once(gateway, correlation_id, "ExecuteTrade", "INVALID_ARGUMENT", "MALFORMED_REQUEST")
    assert await metric(gateway, "tradewire_requests_total", **labels) == before + 1
    await assert_never_ran(gateway, first)
    await assert_never_ran(gateway, second)


# What a call that takes one message is sent: each item one DATA frame, the last with END_STREAM.
EXTRA_MESSAGES = {
    "two messages in one DATA frame": [frame(get_trade("x")) + frame(get_trade("y"))],
    "two DATA frames": [frame(get_trade("x")), frame(get_trade("y"))],
    "an empty second message": [frame(get_trade("x")) + frame(b"")],
    "a second message that does not decode": [frame(get_trade("x")) + frame(b"\xff\xff")],
    "three messages": [frame(get_trade("x")), frame(get_trade("y")), frame(get_trade("z"))],
}
ONE_MESSAGE_METHODS = {"GetTrade": spb.GetTradeRequest, "StreamExecutionStatus": spb.StreamExecutionStatusRequest}


@pytest.fixture
def connection(gateway):
    raw = RawGrpcConnection(gateway.grpc_target)
    yield raw
    raw.close()


@pytest.mark.parametrize("data", EXTRA_MESSAGES.values(), ids=EXTRA_MESSAGES.keys())
@pytest.mark.parametrize("method", ONE_MESSAGE_METHODS)
async def test_more_than_one_message_is_invalid_argument_and_recorded(gateway, connection, method, data):
    correlation_id = f"extra-messages-{uuid.uuid4().hex}"
    labels = dict(method=method, protocol="grpc", code="INVALID_ARGUMENT")
    before = await metric(gateway, "tradewire_requests_total", **labels)

    answer = connection.call(method, credentials(gateway, correlation_id), data)

    assert answer.get("grpc-status") == "3", answer  # INVALID_ARGUMENT
    assert error_reason(answer) == "MALFORMED_REQUEST", answer
    assert "more than one message" in answer.get("grpc-message", ""), answer
    assert answer["data"] == b"", answer  # (a stream: no message before its status)
    assert answer.get("x-correlation-id") == correlation_id
    await recorded_once(gateway, correlation_id, method, "INVALID_ARGUMENT", "MALFORMED_REQUEST")
    assert await metric(gateway, "tradewire_requests_total", **labels) == before + 1


async def test_credentials_are_checked_before_the_extra_message(gateway, connection):
    correlation_id = f"extra-messages-anon-{uuid.uuid4().hex}"
    answer = connection.call("GetTrade", [("x-correlation-id", correlation_id)],
                             [frame(get_trade("x")) + frame(get_trade("y"))])
    assert answer.get("grpc-status") == "16", answer  # UNAUTHENTICATED
    assert error_reason(answer) == "AUTH_MISSING", answer


async def test_a_message_then_an_empty_data_frame_with_end_stream_is_one_message(gateway, connection):
    """The well-behaved shapes still answer: END_STREAM on the message's frame (everywhere in
    the suite), or on an empty DATA frame after it."""
    answer = connection.call("GetMarket", credentials(gateway, f"one-message-{uuid.uuid4().hex}"),
                             [frame(spb.GetMarketRequest().SerializeToString()), b""])
    assert answer.get("grpc-status") == "0", answer
    market = spb.GetMarketResponse.FromString(answer["data"][5:])
    assert {mint.address for mint in market.mints} >= {SOL, USDC}


async def test_a_trade_whose_stream_stays_open_never_runs_and_ends_at_its_deadline(gateway, connection):
    """Its one message came, but not the end of its stream: nothing runs until then (it used
    to run and be answered at once, whatever came after)."""
    correlation_id = f"never-half-closed-{uuid.uuid4().hex}"
    request_id = f"never-half-closed-{uuid.uuid4().hex[:12]}"
    headers = [*credentials(gateway, correlation_id), ("grpc-timeout", "500m")]

    answer = connection.call("ExecuteTrade", headers, [frame(trade(request_id).SerializeToString())],
                             half_close=False)

    assert answer.get("grpc-status") == "4", answer  # DEADLINE_EXCEEDED
    await recorded_once(gateway, correlation_id, "ExecuteTrade", "DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED")
    await assert_never_ran(gateway, request_id)


# -- calls grpcio ends itself -----------------------------------------------------------------

GET_TRADE_FRAME = frame(get_trade("grpcio-refused"))
# headers, DATA: what grpcio answers INTERNAL before (or instead of) giving the handler a message
REFUSED_BY_GRPCIO = {
    "compressed flag without grpc-encoding": ([], [frame(get_trade("x"), compressed=True)]),
    "declared gzip, not gzip": ([("grpc-encoding", "gzip")], [frame(get_trade("x"), compressed=True)]),
    "grpc-encoding br": ([("grpc-encoding", "br")], [frame(get_trade("x"), compressed=True)]),
    "grpc-timeout 1x": ([("grpc-timeout", "1x")], [GET_TRADE_FRAME]),
}
# (Not here: a whole message, then one grpcio refuses. The handler reads the message, then the
# end of the stream as it does for every call, and the call runs: grpcio's cancellation comes
# only at its next read, which would cost every call one more.)


async def no_line_after_a_later_call(gateway, connection, correlation_ids: list[str]) -> None:
    """None of ``correlation_ids`` has an access log line or an audit row once a call sent after
    their answers (on the same connection) has its own: each would have been written first."""
    marker = f"marker-{uuid.uuid4().hex}"
    answer = connection.call("GetMarket", credentials(gateway, marker), [frame(b"")])
    assert answer.get("grpc-status") == "0", answer
    await eventually(lambda: access_lines(gateway, marker), what="the later call's access log line")
    await eventually(lambda: gateway.audit_rows("tw_requests", correlation_id=marker), what="its audit row")
    for correlation_id in correlation_ids:
        assert access_lines(gateway, correlation_id) == [], correlation_id
        assert gateway.audit_rows("tw_requests", correlation_id=correlation_id) == [], correlation_id


@pytest.mark.parametrize(("headers", "data"), REFUSED_BY_GRPCIO.values(), ids=REFUSED_BY_GRPCIO.keys())
@pytest.mark.parametrize("method", ONE_MESSAGE_METHODS)
async def test_a_call_grpcio_refuses_is_not_recorded_as_one_the_gateway_answered(
        gateway, connection, method, headers, data):
    correlation_id = f"grpcio-refused-{uuid.uuid4().hex}"
    counted = {code: await metric(gateway, "tradewire_requests_total", method=method, protocol="grpc", code=code)
               for code in ("INVALID_ARGUMENT", "INTERNAL", "CANCELLED")}

    answer = connection.call(method, [*credentials(gateway, correlation_id), *headers], data)

    assert answer.get("grpc-status") == "13", answer  # grpcio's INTERNAL, not the gateway's
    assert "grpc-status-details-bin" not in answer, answer
    await no_line_after_a_later_call(gateway, connection, [correlation_id])
    for code, before in counted.items():
        assert await metric(gateway, "tradewire_requests_total", method=method, protocol="grpc", code=code) == before


@pytest.mark.parametrize("data", [[], [frame(get_trade("x"))[:6]], [frame(get_trade("x"))]],
                         ids=["headers only", "part of a message", "a whole message"])
async def test_a_call_its_caller_resets_before_half_closing_is_not_claimed_malformed(gateway, connection, data):
    correlation_id = f"reset-{uuid.uuid4().hex}"
    connection.send("GetTrade", credentials(gateway, correlation_id), data, half_close=False, reset=True)
    await no_line_after_a_later_call(gateway, connection, [correlation_id])


async def test_many_refused_and_half_closed_calls_at_once_are_each_told_apart(gateway, connection):
    """On one connection, at once: calls grpcio refuses (not recorded) between calls half-closed
    without a message (MALFORMED_REQUEST, recorded): every one is told apart."""
    calls = 120
    labels = dict(method="GetTrade", protocol="grpc", code="INVALID_ARGUMENT")
    before = await metric(gateway, "tradewire_requests_total", **labels)
    tag = uuid.uuid4().hex
    refused = {connection.send("GetTrade", [*credentials(gateway, f"many-refused-{tag}-{n}"),
                                            ("grpc-encoding", "gzip")], [frame(get_trade("x"), compressed=True)]): n
               for n in range(0, calls, 2)}
    empty = {connection.send("GetTrade", credentials(gateway, f"many-empty-{tag}-{n}"), []): n
             for n in range(1, calls, 2)}

    answers = connection.answers(set(refused) | set(empty))

    assert {answers[stream_id].get("grpc-status") for stream_id in refused} == {"13"}
    assert {(answers[stream_id].get("grpc-status"), error_reason(answers[stream_id]))
            for stream_id in empty} == {("3", "MALFORMED_REQUEST")}
    await eventually(lambda: all(access_lines(gateway, f"many-empty-{tag}-{n}") for n in empty.values()),
                     what="every half-closed call's access log line")
    await no_line_after_a_later_call(gateway, connection, [f"many-refused-{tag}-{n}" for n in refused.values()])
    assert await metric(gateway, "tradewire_requests_total", **labels) == before + len(empty)
