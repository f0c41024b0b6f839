"""X-Server-Timeout: an HTTP/JSON call's deadline, as grpc-timeout and connect-timeout-ms are
the other protocols'. A trade whose deadline passes before it is sent is stopped (EXPIRED) and
the call answered DEADLINE_EXCEEDED (504), as on Connect; a stream is cut off at its deadline;
a bad value is 400 naming the header, once the credentials are known good; browsers may send it.

Trades run on slow_gateway (conftest), whose paper trades take wall-clock time; refusals on
the session's gateway."""

import asyncio
import json

import httpx
import pytest
from connectrpc.errors import ConnectError
from google.protobuf import json_format

from support.clients import HttpJsonClient, RpcFailure, StreamHandle, make_client
from support.trading import eventually, metric, trade, unique
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

HEADER = "x-server-timeout"
BAD_KEY = "tw_nobody01_" + "z" * 40
# Not a positive decimal number of seconds within 7 digits before the point and 9 after
MALFORMED = ["", "abc", "-1", "-0.5", "0", "0.000", "+1", "1e3", "inf", "nan", "NaN", "Infinity", "1.", ".5",
             "1s", "0x10", "1 2", "1, 2", "10000000", "99999999999", "1.0000000001", "9" * 5000]


@pytest.fixture
async def http_client(slow_gateway):
    client = make_client("http", slow_gateway)
    yield client
    await client.close()


def post_trade(gateway, request_id: str, headers, key: str | None) -> httpx.Response:
    """An HTTP/JSON ExecuteTrade; ``headers`` a dict or (name, value) pairs (a name sent twice)."""
    auth = [] if key is None else [("authorization", f"Bearer {key}")]
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    with httpx.Client(base_url=gateway.http_url, timeout=30) as http:
        return http.post("/v1/trades", json=json_format.MessageToDict(trade(request_id)), headers=[*auth, *pairs])


def _access_line(gateway, correlation_id: str) -> dict | None:
    for line in gateway.log_text().splitlines():
        if correlation_id in line and '"msg":"call"' in line:
            return json.loads(line)
    return None


async def recorded(gateway, correlation_id: str) -> tuple[dict, dict]:
    """The call's access line and its one tw_requests audit row."""
    line = await eventually(lambda: _access_line(gateway, correlation_id), what=f"access line of {correlation_id}")
    rows = await eventually(lambda: gateway.audit_rows("tw_requests", correlation_id=correlation_id),
                            what=f"audit row of {correlation_id}")
    assert len(rows) == 1, rows
    return line, rows[0]


async def final_events(client, gateway, request_id: str) -> list[pb.ExecutionStatus]:
    """Every status of the trade, once it has ended."""
    watcher = StreamHandle(client, "StreamExecutionStatus", spb.StreamExecutionStatusRequest(request_id=request_id),
                           gateway.key("alice"))
    return await watcher.finished()


async def ended_unsent(client, gateway, request_id: str) -> tuple[int, str]:
    """(status, error reason) of a trade that must have ended without being sent."""
    events = await final_events(client, gateway, request_id)
    assert events[-1].terminal, events[-1]
    assert pb.TRADE_STATUS_SUBMITTED not in [e.stage for e in events], request_id
    stored, _ = await client.unary("GetTrade", spb.GetTradeRequest(request_id=request_id), gateway.key("alice"))
    assert stored.fees.total_lamports == 0
    return stored.status, stored.error.reason


# -- the deadline ------------------------------------------------------------------------------


async def test_a_trade_not_sent_by_its_deadline_expires_as_on_connect(slow_gateway, http_client):
    key = slow_gateway.key("alice")
    http_id, connect_id, correlation_id = unique("http-deadline"), unique("connect-deadline"), unique("deadline")
    with pytest.raises(RpcFailure) as failure:
        await http_client.unary("ExecuteTrade", trade(http_id), key,
                                headers={HEADER: "0.25", "x-correlation-id": correlation_id})
    answer = failure.value
    assert (answer.http_status, answer.code, answer.reason) == (504, "DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED")
    assert answer.headers["x-correlation-id"] == correlation_id and answer.headers["x-request-id"]

    connect = make_client("connect-proto", slow_gateway)
    try:
        with pytest.raises(ConnectError) as connect_failure:
            await connect.client.execute_trade(trade(connect_id), headers={"authorization": f"Bearer {key}"},
                                               timeout_ms=250)
        assert connect_failure.value.code.name == "DEADLINE_EXCEEDED"
    finally:
        await connect.close()

    ended = {protocol: await ended_unsent(http_client, slow_gateway, request_id)
             for protocol, request_id in (("http", http_id), ("connect", connect_id))}
    assert ended["http"] == ended["connect"] == (pb.TRADE_STATUS_EXPIRED, "DEADLINE_EXCEEDED"), ended

    line, row = await recorded(slow_gateway, correlation_id)
    assert (line["code"], line["reason"]) == ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED")
    assert (row["code"], row["protocol"], row["method"]) == ("DEADLINE_EXCEEDED", "http", "ExecuteTrade")
    assert row["request_id"] == answer.headers["x-request-id"]
    assert await metric(slow_gateway, "tradewire_requests_total", method="ExecuteTrade", protocol="http",
                        code="DEADLINE_EXCEEDED") >= 1


@pytest.mark.parametrize("seconds", ["30", "12.5", "9999999.999999999"])  # the last: the largest
async def test_a_deadline_the_trade_meets_lets_it_fill(slow_gateway, http_client, seconds):
    result, headers = await http_client.unary("ExecuteTrade", trade(unique("in-time")), slow_gateway.key("alice"),
                                              headers={HEADER: seconds})
    assert result.status == pb.TRADE_STATUS_FILLED and headers["x-request-id"]


async def test_a_stream_is_cut_off_at_its_deadline(slow_gateway, http_client):
    key = slow_gateway.key("alice")
    request_id, correlation_id = unique("stream-deadline"), unique("stream-deadline")
    status = spb.StreamExecutionStatusRequest(request_id=request_id)
    execution = asyncio.create_task(http_client.unary("ExecuteTrade", trade(request_id), key))
    follower = StreamHandle(http_client, "StreamExecutionStatus", status, key)  # to the trade's end
    await follower.wait_for(lambda stream: stream.messages, what="the trade's first status")
    cut = StreamHandle(http_client, "StreamExecutionStatus", status, key,
                       {HEADER: "0.4", "x-correlation-id": correlation_id})
    await cut.finished()
    assert cut.error is not None and (cut.error.code, cut.error.reason) == ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED")
    assert cut.messages and not any(m.terminal for m in cut.messages)  # it was open, and cut before the end
    result, _ = await execution
    assert result.status == pb.TRADE_STATUS_FILLED  # the stream's deadline is not the trade's
    assert (await follower.finished())[-1].stage == pb.TRADE_STATUS_FILLED
    line, row = await recorded(slow_gateway, correlation_id)
    assert (line["code"], row["code"], row["method"]) == ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED",
                                                          "StreamExecutionStatus")


async def test_a_stream_past_its_deadline_before_its_first_message_is_504(gateway):
    """The trade is unknown: the stream waits await_trade_s (0.3 s) for it, past the deadline."""
    with httpx.Client(base_url=gateway.http_url, timeout=30) as http:
        response = http.get(f"/v1/trades/{unique('nowhere')}/status", headers={
            "authorization": f"Bearer {gateway.key('alice')}", "accept": "text/event-stream", HEADER: "0.05"})
    failure = HttpJsonClient.failure(response)
    assert (failure.http_status, failure.code, failure.reason) == (504, "DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED")


async def test_without_the_header_a_call_has_no_deadline(slow_gateway, http_client):
    result, _ = await http_client.unary("ExecuteTrade", trade(unique("no-deadline")), slow_gateway.key("alice"))
    assert result.status == pb.TRADE_STATUS_FILLED


# -- refusals ----------------------------------------------------------------------------------


def refused_naming_the_header(response: httpx.Response) -> str:
    """Asserts a 400 INVALID_ARGUMENT MALFORMED_REQUEST naming the header; its message."""
    failure = HttpJsonClient.failure(response)
    assert (failure.http_status, failure.code, failure.reason) == (400, "INVALID_ARGUMENT", "MALFORMED_REQUEST"), \
        response.text
    assert failure.fields == [HEADER] and failure.message.startswith(f"{HEADER}: "), response.text
    assert len(failure.message) < 400  # a long value is shown shortened
    return failure.message


@pytest.mark.parametrize("value", MALFORMED, ids=lambda v: repr(v[:20]))
def test_a_malformed_deadline_is_400_naming_the_header(gateway, value):
    request_id = unique("malformed")
    message = refused_naming_the_header(post_trade(gateway, request_id, {HEADER: value}, gateway.key("alice")))
    assert "positive decimal number of seconds" in message
    with httpx.Client(base_url=gateway.http_url, timeout=30) as http:  # nothing ran
        assert http.get(f"/v1/trades/{request_id}",
                        headers={"authorization": f"Bearer {gateway.key('alice')}"}).status_code == 404


def test_the_header_sent_twice_is_400(gateway):
    refused_naming_the_header(post_trade(gateway, unique("twice"), [(HEADER, "5"), (HEADER, "5")],
                                         gateway.key("alice")))


def test_a_stream_with_a_malformed_deadline_is_400(gateway):
    with httpx.Client(base_url=gateway.http_url, timeout=30) as http:
        response = http.get(f"/v1/trades/{unique('any')}/status", headers={
            "authorization": f"Bearer {gateway.key('alice')}", "accept": "text/event-stream", HEADER: "soon"})
    refused_naming_the_header(response)


async def test_a_refused_deadline_is_recorded_as_any_refused_call(gateway):
    correlation_id = unique("refused-deadline")
    response = post_trade(gateway, unique("refused"), {HEADER: "-1", "x-correlation-id": correlation_id},
                          gateway.key("alice"))
    refused_naming_the_header(response)
    assert response.headers["x-correlation-id"] == correlation_id
    line, row = await recorded(gateway, correlation_id)
    assert (line["code"], line["reason"]) == ("INVALID_ARGUMENT", "MALFORMED_REQUEST")
    assert (row["code"], row["method"], row["protocol"]) == ("INVALID_ARGUMENT", "ExecuteTrade", "http")
    assert row["principal"] == "alice" and row["request_id"] == response.headers["x-request-id"]
    assert await metric(gateway, "tradewire_requests_total", method="ExecuteTrade", protocol="http",
                        code="INVALID_ARGUMENT") >= 1


@pytest.mark.parametrize("key,reason", [(BAD_KEY, "AUTH_INVALID"), (None, "AUTH_MISSING")], ids=["bad", "none"])
def test_credentials_are_checked_before_the_header(gateway, key, reason):
    response = post_trade(gateway, unique("unauthenticated"), {HEADER: "abc"}, key=key)
    failure = HttpJsonClient.failure(response)
    assert (failure.http_status, failure.code, failure.reason) == (401, "UNAUTHENTICATED", reason), response.text
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_browser_may_send_the_header(gateway):
    with httpx.Client(base_url=gateway.http_url, timeout=30) as http:
        response = http.options("/v1/trades", headers={
            "origin": "https://dashboard.example", "access-control-request-method": "POST",
            "access-control-request-headers": f"authorization,content-type,{HEADER}"})
    assert response.status_code == 200, response.text
    assert HEADER in response.headers["access-control-allow-headers"].lower().replace(" ", "").split(",")
