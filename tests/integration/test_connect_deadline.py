"""A Connect or gRPC-Web call whose deadline (connect-timeout-ms, grpc-timeout) passes is
answered DEADLINE_EXCEEDED with the headers every other answer carries: the call's ids and its
rate-limit state, as HTTP/JSON's X-Server-Timeout answer does.

Trades run on slow_gateway (conftest): a 100 ms deadline passes before the trade is sent. The
deadline goes as a plain header, so the client does not enforce it and reads the gateway's answer."""

import httpx
import pytest
from connectrpc.client import ResponseMetadata
from connectrpc.errors import ConnectError

from support.clients import RpcFailure, make_client
from support.trading import trade, unique
from tradewire.v1 import service_pb2 as spb

EXECUTE = "/tradewire.v1.TradeExecutionService/ExecuteTrade"
RATE_LIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
DEADLINE_HEADERS = {"connect-proto": {"connect-timeout-ms": "100"}, "grpc-web": {"grpc-timeout": "100m"}}


def assert_answer_headers(headers, correlation_id: str) -> None:
    """The call's ids and its rate-limit state, as every answer of a call that reached the limit has."""
    assert headers.get("x-correlation-id") == correlation_id and headers.get("x-request-id"), dict(headers)
    for name in RATE_LIMIT_HEADERS:
        assert (headers.get(name) or "").isdigit(), (name, dict(headers))


def test_a_connect_call_past_its_deadline_is_504_with_the_calls_headers(slow_gateway):
    correlation_id = unique("connect-deadline")
    with httpx.Client(base_url=slow_gateway.http_url, timeout=30) as http:
        response = http.post(EXECUTE, content=trade(unique("connect-deadline")).SerializeToString(), headers={
            "authorization": f"Bearer {slow_gateway.key('alice')}", "content-type": "application/proto",
            **DEADLINE_HEADERS["connect-proto"], "x-correlation-id": correlation_id})
    assert (response.status_code, response.json()["code"]) == (504, "deadline_exceeded"), response.text
    assert_answer_headers(response.headers, correlation_id)


async def test_a_grpc_web_call_past_its_deadline_is_deadline_exceeded_with_the_calls_headers(slow_gateway):
    correlation_id = unique("grpc-web-deadline")
    client = make_client("grpc-web", slow_gateway)
    try:
        with pytest.raises(RpcFailure) as failure:
            await client.unary("ExecuteTrade", trade(unique("grpc-web-deadline")), slow_gateway.key("alice"),
                               headers={**DEADLINE_HEADERS["grpc-web"], "x-correlation-id": correlation_id})
    finally:
        await client.close()
    assert (failure.value.code, failure.value.reason) == ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"), failure.value
    assert_answer_headers(failure.value.headers, correlation_id)


@pytest.mark.parametrize("protocol", sorted(DEADLINE_HEADERS))
async def test_a_stream_past_its_deadline_before_its_first_message_carries_the_calls_headers(gateway, protocol):
    """The trade is unknown: the stream waits await_trade_s (0.3 s) for it, past the deadline."""
    correlation_id = unique("stream-deadline")
    client = make_client(protocol, gateway).client
    try:
        with ResponseMetadata() as meta, pytest.raises(ConnectError) as failure:
            async for _ in client.stream_execution_status(
                    spb.StreamExecutionStatusRequest(request_id=unique("nowhere")),
                    headers={**DEADLINE_HEADERS[protocol], "x-correlation-id": correlation_id,
                             "authorization": f"Bearer {gateway.key('alice')}"}):
                pass
    finally:
        await client.close()
    assert failure.value.code.name == "DEADLINE_EXCEEDED", failure.value
    assert_answer_headers({k.lower(): v for k, v in meta.headers().items()}, correlation_id)
